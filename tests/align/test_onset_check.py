"""``onset_check.EventAverage``: the average energy around a recording's mapped sound onsets shows a leading edge
that single onsets under loud background hide; a mapping is moved earlier only where that rise is clearly before
it, and never further than the mapping's own uncertainty allows."""

from __future__ import annotations

import numpy as np
import pytest

from synchub.agent.align.onset_check import Drift, EventAverage

FS = 8000
NS = 1_000_000_000


def _scene(n_events=60, swell_ms=80.0, level=1.0, background=0.3, seed=0, seconds=150.0, swing=0.3, jitter_ms=0.0,
           cue=0.0, lead=0.0):
    """Amplitude-modulated noise (a babble-like background, its level's log drawn every 0.2 s with sd ``swing``:
    1.0 swings its power by 50x) with sounds at ``truth`` that swell linearly in amplitude over ``swell_ms`` (0: a
    step) and last 0.4 s; each played ``jitter_ms`` (one sigma) off its logged time; ``cue``: a 30 ms burst of that
    amplitude 100 ms before each; ``lead``: noise swelling to that amplitude over the 150 ms before each."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    env = np.exp(rng.normal(0, swing, n // 1600 + 2))
    bg = rng.normal(0, 1, n) * np.interp(np.arange(n), np.arange(len(env)) * 1600, env) * background
    truth = np.sort(rng.choice(np.arange(2.0, seconds - 2.0, 1.7), n_events, replace=False)) + rng.uniform(0, 0.5,
                                                                                                        n_events)
    x = bg.copy()
    for t in truth + rng.normal(0.0, jitter_ms * 1e-3, n_events):
        if lead:
            c, m = int((t - 0.15) * FS), int(0.15 * FS)
            x[c:c + m] += lead * np.linspace(0.0, 1.0, m) * rng.normal(0, 1, m)
        if cue:
            c = int((t - 0.1) * FS)
            x[c:c + int(0.03 * FS)] += cue * rng.normal(0, 1, int(0.03 * FS))
        k = int(t * FS)
        m = int(0.4 * FS)
        amp = np.ones(m) if swell_ms <= 0 else np.minimum(np.arange(m) / (swell_ms * 1e-3 * FS), 1.0)
        x[k:k + m] += level * amp * rng.normal(0, 1, m)
    return np.arange(n, dtype=np.int64) * NS // FS, x, (truth * NS).astype(np.int64)


def _average(t, x, onsets, piece=4096):
    avg = EventAverage(onsets)
    for a in range(0, len(t), piece):
        avg.add(t[a:a + piece], x[a:a + piece])
    return avg


def _run(t, x, onsets, piece=4096, **kw):
    return _average(t, x, onsets, piece).departure(**kw)


def test_a_late_mapping_under_loud_background_is_moved_earlier_but_not_past_the_onsets():
    t, x, truth = _scene()
    dep = _run(t, x, truth + 30_000_000)  # every mapped onset 30 ms late, as windows in babble agree on
    assert dep is not None and dep.events == 60
    # to where the swell starts (within 3 ms), not only to where it stood out of the background (10-20 ms later)
    assert -33e6 <= dep.shift_ns <= -27e6 and dep.start_ns == dep.shift_ns and dep.start_sigma_ns < 5e6
    assert dep.latest_ns < -7.5e6 and not dep.beyond_limit and dep.departure_ns > -25e6


@pytest.mark.parametrize(("background", "seed"), [(0.3, 4), (0.6, 4), (0.6, 5)])
def test_the_start_of_a_slow_swell_does_not_depend_on_the_background_s_level(background, seed):
    """Sounds that swell over 80 ms, mapped 40 ms late, under backgrounds of 10 and 4 dB: where the average stands
    out of the background is 8-24 ms after the sounds' start, later the louder the background (a threshold on its
    noise); where the line of its rise starts is not: the mapping is moved to within 4 ms of the start."""
    t, x, truth = _scene(n_events=150, background=background, seed=seed, seconds=300.0)
    dep = _run(t, x, truth + 40_000_000)
    assert dep is not None and dep.start_ns is not None and dep.shift_ns == dep.start_ns
    assert abs(dep.shift_ns + 40e6) <= 4e6 and dep.departure_ns >= -32e6 and dep.start_sigma_ns < 5e6, dep


def test_a_stereo_recording_s_sounds_on_one_side_are_heard():
    """The average takes the power of every channel (the aligner's onsets do too); it took the first only."""
    t, x, truth = _scene()
    quiet = np.random.default_rng(9).normal(0, 0.3, len(x))  # the other side: background alone
    mono = _run(t, x, truth + 30_000_000)
    for stereo in (np.stack([quiet, x], 1), np.stack([x, quiet], 1)):
        dep = _run(t, stereo, truth + 30_000_000)
        assert dep is not None and -33e6 <= dep.shift_ns <= -10e6
        assert abs(dep.departure_ns - mono.departure_ns) <= 5e6


def test_sharp_onsets_stay_where_they_are():
    t, x, truth = _scene(swell_ms=0.0, seed=2)
    dep = _run(t, x, truth)
    assert dep.shift_ns == 0 and -3e6 <= dep.departure_ns <= 1e6  # a step's rise: in its own 1 ms bin


@pytest.mark.parametrize(("swell_ms", "background"), [(0.0, 1.0), (3.0, 0.3), (6.0, 1.0)])
def test_sharp_sounds_mapped_late_move_to_their_departure(swell_ms, background):
    """Sounds that rise within a few ms, mapped 15 ms late: where the average departs is where they start (up
    halfway within ``SHARP_MS``); the line through a rise of a few bins started 2-5 ms before them and moved the
    mapping there (sound effects of the corpus: 1-4 ms early, 13 ms at 0 dB)."""
    t, x, truth = _scene(n_events=80, swell_ms=swell_ms, background=background, seed=2, seconds=180.0)
    dep = _run(t, x, truth + 15_000_000)
    assert dep is not None and dep.start_ns is None and abs(dep.shift_ns + 15e6) <= 3.5e6, dep


def test_sharp_sounds_where_they_are_mapped_confirm_the_mapping():
    """A sharp rise departs where the sounds start, either way: within the gate of the mapped onsets it measures the
    bias the aligner's windows share (``confirmed_sigma_ns``, the engine's 1-sigma in place of one window's sigma:
    sound markers 3.4 -> 2.1 ms on the corpus); a slow swell there, or sharp sounds mapped 8 ms early, confirm
    nothing."""
    t, x, truth = _scene(swell_ms=0.0, seed=2)
    dep = _run(t, x, truth)
    assert dep.shift_ns == 0 and dep.confirmed_sigma_ns is not None and dep.confirmed_sigma_ns <= 2.5e6, dep
    assert _run(t, x, truth - 8_000_000).confirmed_sigma_ns is None  # the rise 8 ms after the mapped onsets
    t, x, truth = _scene(swell_ms=80.0, seed=2)
    slow = _run(t, x, truth)
    assert slow is None or slow.confirmed_sigma_ns is None
    # 20 sounds swelling over 20 ms in loud background, mapped 15 ms late: the average stands out 1 ms after the
    # mapped onsets and, noisy, rises halfway soon after; it confirmed the mapping under a 3.1 ms sigma (a held-out
    # minute of speech at 10 dB: 15 ms late, 5 % within its 1-sigma). Resampling moves it too much to confirm.
    t, x, truth = _scene(n_events=20, background=1.0, swell_ms=20.0, seed=1, seconds=60.0)
    few = _run(t, x, truth + 15_000_000)
    assert few is not None and few.shift_ns == 0 and few.confirmed_sigma_ns is None, few


@pytest.mark.parametrize(("early_ms", "swell_ms", "background"), [(15.0, 0.0, 0.3), (10.0, 3.0, 1.0)])
def test_sharp_sounds_mapped_early_move_later_to_their_departure(early_ms, swell_ms, background):
    """An 8 kHz recording's windows mapped its sounds 17 ms early under a 5 ms sigma (their top octave gone, the
    babble's not), and the check kept it: it saw late mappings only.  A sharp rise clearly after the mapped onsets
    is where the sounds start: the mapping moves later to it; further than the limit (three window sigmas) it
    stays, and the whole distance is its uncertainty."""
    t, x, truth = _scene(n_events=80, swell_ms=swell_ms, background=background, seed=2, seconds=180.0)
    dep = _run(t, x, truth - int(early_ms * 1e6))
    assert dep is not None and abs(dep.shift_ns - early_ms * 1e6) <= 3e6 and not dep.beyond_limit, dep
    far = _run(t, x, truth - int(early_ms * 1e6), limit_ns=early_ms * 1e6 / 2)
    assert far.shift_ns == 0 and far.beyond_limit, far
    assert far.uncertainty() == (far.departure_ns, False) and far.departure_ns >= early_ms * 1e6 - 3e6


def test_a_start_just_past_the_limit_is_moved_to_and_one_further_is_uncertainty():
    """Speech mapped 44 ms late, its line's start 44 +- 4 ms back: past a limit of 41 ms at its point, within it for
    a tenth of its resamplings (a held-out 8 kHz recording in babble, 68 ms late, its start 70 back, the limit 68):
    moved to the start, where it was moved to the departure (29 ms) and left 36 ms late under a 1-sigma of half
    that.  Further back than the limit at its latest tenth: moved to the departure only, the distance to the start
    its uncertainty; with the departure past the limit too, not moved, all of it."""
    t, x, truth = _scene(n_events=150, background=0.6, seed=4, seconds=300.0)
    near = _run(t, x, truth + 40_000_000, limit_ns=41e6)
    assert near.start_ns < -41e6 and near.shift_ns == near.start_ns and near.uncertainty()[1], near
    mid = _run(t, x, truth + 40_000_000, limit_ns=30e6)
    assert mid.shift_ns == mid.departure_ns > mid.start_ns and not mid.beyond_limit, mid
    assert mid.uncertainty()[0] >= mid.departure_ns - mid.start_ns and not mid.uncertainty()[1]
    far = _run(t, x, truth + 40_000_000, limit_ns=20e6)
    assert far.shift_ns == 0 and far.beyond_limit and far.uncertainty()[0] >= -far.start_ns, far


def test_a_slow_rise_after_the_mapped_onsets_moves_nothing():
    """A swell departs after its start wherever it is mapped: after the mapped onsets it says nothing of them."""
    t, x, truth = _scene(swell_ms=80.0, seed=2)
    dep = _run(t, x, truth - 15_000_000)
    assert dep is None or (dep.shift_ns == 0 and not dep.beyond_limit), dep


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fewer_slow_sounds_mapped_late_move_to_the_start_of_their_line(seed):
    """44 sounds swelling over 80 ms, played 5 ms (one sigma) off their lines, mapped 18 ms late (a held-out 150 s of
    speech at 10 dB, its windows 18.7 ms late under a 6 ms sigma): the average departs before the mapped onsets,
    not clearly (the 90th percentile of its resampled departures 4-6 ms before them, inside the lines' gate), and
    was kept where it was; the line of its rise starts clearly before them: moved there.  Mapped right, or 5 ms
    late, nothing moves."""
    t, x, truth = _scene(n_events=44, seed=seed, seconds=100.0, jitter_ms=5.0)
    dep = _run(t, x, truth + 18_000_000, spread_ns=5e6)
    assert dep is not None and dep.latest_ns >= -7.5e6 and dep.departure_ns < 0, dep  # not clearly before them
    assert dep.shift_ns == dep.start_ns and abs(dep.shift_ns + 18e6) <= 7e6, dep
    assert dep.uncertainty()[1]  # the start's uncertainty in place of one window's sigma
    for late_ms in (0, 5):
        assert _run(t, x, truth + late_ms * 1_000_000, spread_ns=5e6).shift_ns == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_log_whose_lines_scatter_is_not_moved_to_its_earliest_sounds(seed):
    """Sharp sounds played 5 ms (one sigma) off their logged times, mapped right (the median): a mean over the
    sounds rose with the earliest few and moved the log 8-9 ms early (the review's case); the average leaves out
    each bin's loudest tenth and the gate counts the lines' spread (the rule's 5 ms)."""
    t, x, truth = _scene(n_events=100, swell_ms=0.0, jitter_ms=5.0, seed=seed, seconds=200.0)
    dep = _run(t, x, truth, spread_ns=5e6)
    assert dep.shift_ns == 0


def test_a_few_sounds_played_early_do_not_move_the_rest():
    t, x, truth = _scene(n_events=100, swell_ms=0.0, seed=3, seconds=200.0, swing=0.0)
    logged = truth.copy()
    logged[::12] += 12_000_000  # 9 of 100 sounds 12 ms before their lines: a mean over the sounds moved all 12 ms
    assert _run(t, x, logged, spread_ns=5e6).shift_ns == 0


def test_a_cue_before_each_sound_is_not_its_start():
    """A 30 ms cue 100 ms before each sound, louder than half of it: the rise is the sound's, nearest its peak."""
    t, x, truth = _scene(swell_ms=0.0, cue=0.8)
    dep = _run(t, x, truth)
    assert dep.shift_ns == 0 and not dep.beyond_limit and dep.departure_ns > -5e6


@pytest.mark.parametrize("late_ms", [0, 10])
def test_a_swell_before_each_sound_is_not_its_start(late_ms):
    """What comes before each sound swells over 150 ms (to 0.06 of it, at 30 dB SNR: a held-out recording's voices
    do that, their average departing 128 ms before the utterances): the average stands out there, far before the
    sounds' own rise.  It was taken for a hidden start: moved 100+ ms early where the limit allowed, else refused
    with half of it (64 ms) added to the link's 1-sigma.  The line of the sounds' own rise starts where they do: a
    mapping there stays, one 10 ms late moves to it."""
    t, x, truth = _scene(n_events=80, swell_ms=20.0, background=0.03, lead=0.06, seed=6, seconds=180.0)
    for limit in (float("inf"), 30e6):
        dep = _run(t, x, truth + late_ms * 1_000_000, limit_ns=limit)
        assert dep is not None and dep.departure_ns < -60e6, dep  # the swell before the sounds stands out
        assert dep.start_ns is not None and abs(dep.start_ns + late_ms * 1e6) <= 4e6 and not dep.beyond_limit, dep
        assert dep.shift_ns == (dep.start_ns if late_ms else 0), dep


def test_no_shift_beyond_what_the_mapping_s_uncertainty_allows():
    t, x, truth = _scene()
    late = truth + 30_000_000
    far = _run(t, x, late, limit_ns=10e6)
    assert far.shift_ns == 0 and far.beyond_limit  # the engine notes it and widens the uncertainty instead
    assert _run(t, x, late, limit_ns=40e6).shift_ns < 0


@pytest.mark.parametrize("what", ["no sounds", "too few", "nothing around the onsets"])
def test_without_a_clear_rise_or_enough_onsets_there_is_no_answer(what):
    # no sounds in a background whose power swings by 50x: a mean of the power followed its loudest few swings
    # and saw a rise 70 ms before the onsets (the log of the power does not)
    t, x, truth = _scene(level=0.0 if what == "no sounds" else 1.0, swing=1.0 if what == "no sounds" else 0.3)
    if what == "too few":
        truth = truth[:8]
    if what == "nothing around the onsets":
        truth = truth + 10**12  # past the recording: no whole window
    assert _run(t, x, truth) is None


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_swinging_background_alone_moves_nothing(seed):
    t, x, truth = _scene(level=0.0, swing=1.0, seed=seed)
    dep = _run(t, x, truth)
    assert dep is None or dep.shift_ns == 0


def test_pieces_of_any_size_give_the_same_answer():
    t, x, truth = _scene(seconds=60.0, n_events=25)
    late = truth + 20_000_000
    a, b = _run(t, x, late, piece=len(t)), _run(t, x, late, piece=777)
    assert a == b


def test_bad_samples_are_left_out_and_a_click_train_is_thinned():
    t, x, truth = _scene(seconds=60.0, n_events=25)
    late = truth + 30_000_000
    clean = _run(t, x, late)
    x = x.copy()
    x[(late[::3] // (NS // FS)) - 800] = np.nan  # 100 ms before every third onset
    assert _run(t, x, late) == clean
    many = EventAverage(np.arange(5000, dtype=np.int64) * 10_000_000)
    assert len(many.onsets) == 2000 and many.sums.dtype == np.float32


def test_the_engine_averages_only_the_markers_its_link_maps(tmp_path, monkeypatch):
    """A log whose clock went back 50 s near its end: the aligner link maps its first timeline only (the second's
    lines are of sounds not heard); the markers of the second, at their raw file times, were averaged with the rest (random audio
    around them: a real bias diluted)."""
    sf = pytest.importorskip("soundfile", reason="soundfile is in the bench extra")
    from synchub.agent.align.files import aligner_links, reference
    from synchub.agent.align.files.engine import FileAlignment

    t, x, truth = _scene(seconds=120.0, n_events=60, swell_ms=20.0, background=0.05)
    sf.write(tmp_path / "mic.wav", x.astype(np.float32), FS, subtype="FLOAT")
    dev = truth + int(1.5 * NS)
    dev[54:] -= 50 * NS  # six lines after the reset, of sounds the microphone did not hear: no tie for them
    dev[54:] += np.random.default_rng(3).uniform(-0.8e9, 0.8e9, 6).astype(np.int64)
    (tmp_path / "log.csv").write_text("time,event\n" + "".join(f"{d // NS}.{d % NS:09d},sound\n" for d in dev.tolist()))
    seen = []

    class Spy(EventAverage):
        def __init__(self, onsets_ns):
            super().__init__(onsets_ns)
            seen.append(len(self.onsets))

    monkeypatch.setattr(aligner_links, "EventAverage", Spy)
    fa = FileAlignment([reference.InputSpec([str(tmp_path / "mic.wav")]), reference.InputSpec([str(tmp_path / "log.csv")])])
    fa.gather()
    assert set(fa.inputs[1].link.models) == {0} and seen == [54]


@pytest.mark.parametrize("piece", [4096, 100])
def test_a_microphone_s_dc_offset_does_not_move_the_check(piece):
    """A cheap microphone's DC offset (here 1 to 100 x the background's level, one per channel, and one wandering
    slowly) added to the power before the onsets held the average's level up: the rise was not found at 10 x."""
    t, x, truth = _scene()
    late = truth + 30_000_000
    clean = _run(t, x, late, piece=piece)
    assert clean is not None and clean.shift_ns < -25e6
    wander = 2.0 * np.sin(2 * np.pi * t / 60e9)  # a minute's period
    offsets = (x + 0.3, x + 3.0, x - 30.0, np.stack([x + 3.0, x - 0.5], axis=1), x + 3.0 + wander)
    for y in offsets if piece > 1000 else offsets[-1:]:  # short pieces: the wandering offset (the blending's case)
        dep = _run(t, y, late, piece=piece)
        assert dep is not None and dep.departure_ns == clean.departure_ns
        assert abs(dep.shift_ns - clean.shift_ns) < 1e6



def test_the_half_step_offset_of_a_truncated_recording_is_taken_out():
    """A quiet recording truncated to 16 bits (libsndfile's float -> PCM_16) flips between 0 and -1 step where it is
    silent: half a step of DC.  The median of such a piece is one of the two (a step's DC left, or none taken out);
    its mean is the offset."""
    step = 1 / 32768
    rng = np.random.default_rng(4)
    x = np.floor(rng.normal(0, 0.3 * step, 65536) / step) * step
    avg = EventAverage(np.array([10**9], dtype=np.int64))
    centred = avg._centred(x[:, None])
    assert abs(float(np.mean(centred))) < 0.01 * step and abs(float(avg.dc[0]) + 0.5 * step) < 0.05 * step


def _drifting(truth, ppm: float, late_ns: int = 0):
    """``truth`` mapped ``late_ns`` late at its middle and drifting ``ppm`` off it (later and later)."""
    mid = (int(truth[0]) + int(truth[-1])) // 2
    return truth + late_ns + np.rint((truth - mid) * (ppm * 1e-6)).astype(np.int64)


@pytest.mark.parametrize(("ppm", "swell_ms", "background"), [(80.0, 0.0, 0.3), (-60.0, 3.0, 1.0), (30.0, 0.0, 0.3)])
def test_a_drift_the_windows_missed_shows_in_the_sharp_rise_over_the_recording(ppm, swell_ms, background):
    """Sharp sounds mapped on a line drifting off theirs (the windows' line through a few smeared onsets: 91 ppm off
    on a held-out recording under mains hum, its sounds mapped 18 ms early): the average of each part of the
    recording departs where that part's sounds start, and the parts' departures lie on the drift the mapping
    missed, clearly, within 3 of its sigmas.  Taken out (weighed against the windows' own 65 ppm), the sounds' rise
    no longer drifts."""
    t, x, truth = _scene(n_events=150, swell_ms=swell_ms, background=background, seed=2, seconds=300.0)
    mapped = _drifting(truth, ppm, 5_000_000)
    d = _average(t, x, mapped).drift()
    assert d is not None and abs(d.ppm) > 3 * d.sigma_ppm and d.parts >= 3 and d.sigma_ppm < 10.0, d
    assert abs(d.ppm + ppm) <= 3 * d.sigma_ppm, d
    fix, sigma = d.fused(65.0)
    assert abs(fix - d.ppm) < 0.05 * abs(d.ppm) and sigma < d.sigma_ppm
    again = _average(t, x, mapped + np.rint((mapped - d.at_ns) * (fix * 1e-6)).astype(np.int64)).drift()
    assert again is not None and abs(again.ppm) < 3 * again.sigma_ppm, again


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_sharp_sounds_mapped_on_their_own_line_show_no_drift(seed):
    t, x, truth = _scene(n_events=150, swell_ms=0.0, background=0.5, seed=seed, seconds=300.0)
    d = _average(t, x, truth + 2_000_000).drift()
    assert d is not None and abs(d.ppm) < 3 * d.sigma_ppm and d.sigma_ppm < 20.0, d


@pytest.mark.parametrize("what", ["slow", "few", "silent part"])
def test_no_drift_from_slow_rises_too_few_sounds_or_a_part_without_a_rise(what):
    """A slow rise departs where it stands out of a background that swings from part to part (speech: halves 15 ms
    apart where the mapping's drift moved 10 ms), not where it starts: no drift from it."""
    t, x, truth = _scene(n_events=150 if what != "few" else 30, swell_ms=80.0 if what == "slow" else 0.0,
                         background=0.6 if what == "slow" else 0.3, seed=2, seconds=300.0)
    if what == "silent part":
        x[: len(x) // 3] = np.random.default_rng(1).normal(0, 0.3, len(x) // 3)  # the first third's sounds not heard
    assert _average(t, x, _drifting(truth, 80.0)).drift() is None


def test_the_drift_is_weighed_against_the_windows_by_their_variances():
    d = Drift(90.0, 10.0, 0, 4)
    fix, sigma = d.fused(65.0)  # the windows knew little: the parts' drift, nearly all of it
    assert 85.0 < fix < 90.0 and 9.0 < sigma < 10.0
    fix, sigma = d.fused(2.0)  # the windows knew it well: little moved
    assert 3.0 < fix < 4.0 and sigma < 2.0
