"""Classical alignment features: grid resampling, correlation, GCC-PHAT, onsets of rendered sensors, bad input."""

import numpy as np
import pytest

from synchub.agent.align import correlation as X
from synchub.agent.align import onsets as C
from synchub.agent.align.markers import MarkerSemantics
from synchub.agent.core.units import NS
from synchub.drivers.sim import render as R
from synchub.drivers.sim.world import MARKER_RULES, TAP, World


def test_to_grid_conserves_mass_and_places_impulses_sub_bin():
    t = np.array([10_250_000, 20_700_000], dtype=np.int64)  # 10.25 ms, 20.7 ms on a 1 kHz grid
    g = X.to_grid(C.Onsets("impulses", t, np.array([1.0, 2.0])), 0, 40, 1000.0)
    assert g.sum() == pytest.approx(3.0)
    centres = np.arange(40) + 0.5
    first = g[:15]
    assert (first * centres[:15]).sum() / first.sum() == pytest.approx(10.25, abs=1e-9)
    second = g[15:]
    assert (second * centres[15:]).sum() / second.sum() == pytest.approx(20.7, abs=1e-9)


def test_to_grid_spreads_interval_mass_uniformly():
    t = np.array([0, 10_000_000, 20_000_000], dtype=np.int64)
    g = X.to_grid(C.Onsets("intervals", t, np.array([0.0, 5.0])), 0, 30, 1000.0)
    assert g.sum() == pytest.approx(5.0)
    assert np.allclose(g[10:20], 0.5) and np.allclose(g[:10], 0) and np.allclose(g[20:], 0)


def test_ncc_and_parabolic_find_a_fractional_shift():
    x = np.arange(2000, dtype=np.float64)
    rng = np.random.default_rng(1)
    ev = rng.uniform(100, 1900, 25)
    ref = sum(np.exp(-0.5 * ((x - e) / 3.0) ** 2) for e in ev)
    tgt = sum(np.exp(-0.5 * ((x[:1600] - (e - 200 - 37.3)) / 3.0) ** 2) for e in ev)
    curve = X.ncc_valid(ref, tgt)
    i, psr, side = X.peak_stats(curve, 10)
    assert X.parabolic(curve, i) == pytest.approx(237.3, abs=0.2)
    assert psr > 10 and side < 0.6


def test_gcc_phat_on_rendered_audio_is_sample_exact():
    w = World(6.0, seed=1003)
    t = np.arange(6 * 16000, dtype=np.int64) * 62_500
    a = R.render(w, "audio", t, rng=np.random.default_rng(0))[:, 0].astype(np.float64)
    lag = 123
    b = np.concatenate([np.zeros(lag), a[:-lag]]) + np.random.default_rng(1).normal(0, 0.005, len(a))
    cc = X.gcc_phat(a, b, 400)
    assert int(np.argmax(cc)) - 400 == lag


def test_imu_and_audio_onsets_sit_on_the_taps():
    w = World(30.0, seed=1004)
    taps = w.of_kind(TAP)["t_ns"]
    for modality, rate in (("imu", 200), ("audio", 16000)):
        t = np.rint(np.arange(int(30 * rate)) * (NS / rate)).astype(np.int64) + 1_234_567
        o = C.onsets(modality, t, R.render(w, modality, t, rng=np.random.default_rng(2)))
        assert o.ok and o.n_events >= 3
        mid = (o.t_ns[:-1] + o.t_ns[1:]) / 2
        found = mid[o.mass > 0.05 * o.mass.max()]
        # each tap has an onset within one sample period (IMU) / one 1 ms envelope block (audio)
        d = np.min(np.abs(taps[:, None] - found[None, :]), axis=1)
        assert np.median(d) < max(NS / rate, 1_000_000)


def test_text_event_train_filters_by_partner_and_places_smooth_events():
    sim = MarkerSemantics(MARKER_RULES)  # the simulator's vocabulary comes with the simulator, not with the code
    lines = ["impact detected amp=0.50", "led on dur=0.200s", "motion start axis=x dur=2.00s", "marker 3"]
    t = np.array([1, 2, 3, 4], dtype=np.int64) * NS
    assert list(C.onsets("text", t, lines, partner="imu", semantics=sim).t_ns) == [1 * NS]
    assert list(C.onsets("text", t, lines, partner="video", semantics=sim).t_ns) == [1 * NS, 2 * NS]
    assert list(C.onsets("text", t, lines, partner="telemetry", semantics=sim).t_ns) == [2 * NS]
    img = C.onsets("text", t, lines, partner="image", semantics=sim).t_ns
    assert 3 * NS + NS in img  # motion: middle of its 2 s (when a still sees it)
    assert 1 * NS + 70_000_000 in img and 2 * NS + 100_000_000 in img
    assert len(C.onsets("text", t, lines).t_ns) == 4
    # the default rules know no simulator word: against a sensor, the abstain reason says so
    o = C.onsets("text", t, ["impact detected", "beep 440Hz"] * 2, partner="audio")
    assert not o.ok and "matches a marker rule" in o.problem


@pytest.mark.parametrize("modality,shape", [("imu", (6,)), ("audio", (1,)), ("video", (24, 32)),
                                            ("telemetry", (5,)), ("image", (24, 32))])
def test_bad_input_gives_a_reason_not_an_exception(modality, shape):
    n = 400
    t = np.arange(n, dtype=np.int64) * 5_000_000
    flat = np.zeros((n, *shape), dtype=np.float32)
    assert "flat" in C.onsets(modality, t, flat).problem
    nan = np.full((n, *shape), np.nan, dtype=np.float32)
    assert "non-finite" in C.onsets(modality, t, nan).problem
    assert C.onsets(modality, t[:1], flat[:1]).problem
    assert C.onsets(modality, t[:0], flat[:0]).problem
    assert "samples" in C.onsets(modality, t[:5], flat).problem
    assert C.onsets("text", t[:0], []).problem.startswith("no events")


def test_some_nans_are_filled_not_fatal():
    w = World(10.0, seed=1005)
    t = np.arange(2000, dtype=np.int64) * 5_000_000
    x = R.render(w, "imu", t, rng=np.random.default_rng(3))
    x[100:140] = np.nan
    o = C.onsets("imu", t, x)
    assert o.ok and np.all(np.isfinite(o.mass))


def test_audio_onset_is_the_start_of_a_swelling_sound_not_its_loud_part():
    """A sound that swells for 30 ms (a consonant) before it gets loud (the vowel): its onset is where it leaves
    the background, within a few ms, not 30 ms later; a sharp sound keeps its onset."""
    fs = 16000
    rng = np.random.default_rng(4)
    n = 8 * fs
    t = np.arange(n, dtype=np.int64) * (NS // fs)
    x = rng.normal(0, 0.01, n)
    starts = [1.0, 2.7, 4.1, 5.9]
    for k, s in enumerate(starts):
        i0 = int(s * fs)
        ramp = np.linspace(0, 0.2, int(0.03 * fs)) if k % 2 == 0 else np.zeros(0)  # odd ones are sharp
        amp = np.concatenate([ramp, np.full(int(0.2 * fs), 0.5)])
        x[i0 : i0 + len(amp)] += amp * np.sin(2 * np.pi * 300 * np.arange(len(amp)) / fs)
    o = C.onsets("audio", t, x[:, None].astype(np.float32))
    found = C.event_times(o)
    err_ms = [np.min(np.abs(found - s * NS)) / 1e6 for s in starts]
    assert max(err_ms) < 5.0, err_ms
    # without the leading-edge step the swelling ones are found where they got loud
    env_t, env = C.audio_envelope(t, x - np.median(x))
    hold = C._hold(env_t)
    late = C.Onsets("intervals", env_t, C.first_of_runs(C.novelty(env, hold)))
    late_err = [np.min(np.abs(C.event_times(late) - s * NS)) / 1e6 for s in starts[::2]]
    assert min(late_err) > 20.0, late_err


def test_audio_onsets_hear_every_channel():
    """A stereo recorder with the sound on one side only: the onsets were the first channel's (flat: "no onsets
    above noise", and ``synchub align`` refused the log) while the encoders' features mixed the channels down."""
    fs = 16000
    rng = np.random.default_rng(4)
    t = np.arange(8 * fs, dtype=np.int64) * (NS // fs)
    sound = rng.normal(0, 0.01, len(t))
    starts = [1.0, 2.7, 4.1, 5.9]
    for s in starts:
        i0 = int(s * fs)
        sound[i0 : i0 + 800] += 0.5 * np.sin(2 * np.pi * 640 * np.arange(800) / fs)
    quiet = rng.normal(0, 0.01, len(t))
    for x in (np.stack([quiet, sound], 1), np.stack([sound, quiet], 1)):
        o = C.onsets("audio", t, x.astype(np.float32))
        assert o.ok, o.problem
        err_ms = [np.min(np.abs(C.event_times(o) - s * NS)) / 1e6 for s in starts]
        assert max(err_ms) < 2.0, err_ms
