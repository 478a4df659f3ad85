"""AlignmentTracker: live alignment from pushed chunks (reference corrected, target on its device clock)."""

import numpy as np
import pytest
from support.live_align import chunks, feed
from support.signals import tone_bursts

from synchub.agent.align.aligner import AlignResult
from synchub.agent.align.calibration import SigmaTable
from synchub.agent.align.tracker import LOST_AFTER, TRACK_AFTER, AlignmentTracker, window_evidence
from synchub.agent.align.window import WindowAligner, load_runners
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.core.units import NS
from synchub.drivers.sim import render as R
from synchub.drivers.sim.clocks import ClockSpec, DeviceClock
from synchub.drivers.sim.world import World

IMU = StreamInfo("imu0", "imu", 200.0, 6)
MIC = StreamInfo("mic0", "audio", 16000.0, 1)


@pytest.fixture(scope="module")
def rig():
    w = World(60.0, seed=1010)
    rng = np.random.default_rng(0)
    t_imu = np.arange(60 * 200, dtype=np.int64) * 5_000_000
    imu = R.render(w, "imu", t_imu, rng=rng)
    clock = DeviceClock(ClockSpec(offset_s=0.8123, drift_ppm=40.0, latency_min_ms=5, latency_max_ms=20,
                                  latency_kind="usb-buffer"), 60.0, seed=3)
    true, dev, _ = clock.regular_samples(16000.0)
    audio = R.render(w, "audio", true, rng=rng)
    host = clock.arrivals(true)
    return w, t_imu, imu, clock, true, dev, audio, host


def run(tracker, rig, audio=None, each=None):
    """The rig's chunks pushed in host-time order, polled after each; ``each()`` is called after every poll."""
    _w, t_imu, imu, _clock, _true, dev, aud, host = rig
    return feed(tracker, "imu0", chunks("imu0", imu, t_imu, t_imu, ref=t_imu),
                "mic0", chunks("mic0", aud if audio is None else audio, dev, host), each)


def test_tracker_emits_accurate_offsets(rig):
    clock = rig[3]
    tr = AlignmentTracker("imu0", "mic0", IMU, MIC, runners={}, window_s=8.0, hop_s=4.0)
    est = run(tr, rig)
    st = tr.stats()
    assert len(est) >= 6, st
    for e in est:
        true_off = int(clock.to_true(np.array([e.device_ns]), 0)[0]) - e.device_ns
        assert abs(e.offset_ns - true_off) < 2_000_000, (e, true_off)
        assert e.stream == "mic0" and e.source == "hybrid" and e.sigma_ns > 0
    assert st["windows"] == st["emitted"] + st["abstained"] + st["outliers"]
    assert abs(st["drift_ppm"] - 40.0) < 100.0  # 60 s of +-1 ms windows: the slope is only roughly known


def test_tracker_abstains_on_a_flat_target_and_counts_bad_chunks(rig):
    tr = AlignmentTracker("imu0", "mic0", IMU, MIC, runners=load_runners(["nothing"]), window_s=8.0, hop_s=4.0)
    flat = np.zeros_like(rig[6])
    assert run(tr, rig, audio=flat) == []
    st = tr.stats()
    assert st["windows"] >= 5 and st["abstained"] == st["windows"]
    assert any("flat" in r for r in st["reasons"])
    t = np.arange(10, dtype=np.int64)
    tr.push("imu0", Chunk("imu0", 0, np.zeros((10, 6)), t, t))  # no corrected times
    tr.push("cam9", Chunk("cam9", 0, np.zeros((10, 6)), t, t))
    assert st["bad_chunks"] + 1 == tr.stats()["bad_chunks"]
    assert tr.stats()["reasons"]["chunk of unrelated stream 'cam9'"] == 1


def test_window_aligner_without_models_gives_neural_reason():
    wa = WindowAligner(IMU, MIC, runners={"imu": "no model for imu"})
    t = np.arange(2000, dtype=np.int64) * 5_000_000
    r = wa.estimate(t, np.zeros((2000, 6)), t, np.zeros((2000, 1)), (0, int(9e9)), 0, methods=("neural",))
    assert not r["neural"].ok and "no model" in r["neural"].reason


def test_tracker_rejects_bad_settings():
    with pytest.raises(ValueError):
        AlignmentTracker("a", "b", IMU, MIC, method="magic")
    with pytest.raises(ValueError):
        AlignmentTracker("a", "b", IMU, MIC, window_s=0)


def test_two_microphones_align_to_a_fraction_of_a_sample_with_gcc_phat():
    w = World(30.0, seed=1012)
    rng = np.random.default_rng(5)
    c_ref = DeviceClock(ClockSpec(offset_s=0.0, drift_ppm=0.0), 30.0, seed=1)
    c_tgt = DeviceClock(ClockSpec(offset_s=-0.61237, drift_ppm=25.0), 30.0, seed=2)
    t_ref, _, _ = c_ref.regular_samples(16000.0)
    t_true, dev, _ = c_tgt.regular_samples(16000.0)
    a = R.render(w, "audio", t_ref, rng=rng)
    b = R.render(w, "audio", t_true, R.AudioParams(gain=0.7, noise=0.02), rng=rng)
    wa = WindowAligner(MIC, StreamInfo("mic1", "audio", 16000.0, 1))
    span = (int(dev[0]) + 4 * NS, int(dev[0]) + 20 * NS)
    lo, hi = wa.ref_range(span, 0)
    i0, i1 = np.searchsorted(t_ref, [lo, hi])
    j0, j1 = np.searchsorted(dev, span)
    res = wa.estimate(t_ref[i0:i1], a[i0:i1], dev[j0:j1], b[j0:j1], span, 0, methods=("classical", "hybrid"))
    for m in ("classical", "hybrid"):
        assert res[m].ok, res[m].reason
        at = res[m].device_ns  # where the estimate holds (drift: 25 ppm is 0.2 ms over 8 s)
        true_off = int(c_tgt.to_true(np.array([at]), 0)[0]) - at
        assert abs(res[m].offset_ns - true_off) < 62_500 / 2, (m, res[m].offset_ns - true_off)  # < half a sample


@pytest.mark.parametrize("host_kind", ["equal to device", "half a second early"])
def test_no_ok_estimate_is_clamped_to_an_arrival_bound_that_does_not_hold(rig, host_kind):
    """Host stamps that are not arrivals on the reference clock (host = device time, or a host clock 0.5 s behind)
    give a bound below the truth: the tracker emits no estimate moved onto it (no 'ok' with the naive error)."""
    w, t_imu, imu, clock, true, dev, aud, host = rig
    fake = dev.copy() if host_kind == "equal to device" else host - 500_000_000
    tr = AlignmentTracker("imu0", "mic0", IMU, MIC, runners={}, window_s=8.0, hop_s=4.0)
    est = run(tr, (w, t_imu, imu, clock, true, dev, aud, fake))
    for e in est:
        true_off = int(clock.to_true(np.array([e.device_ns]), 0)[0]) - e.device_ns
        assert abs(e.offset_ns - true_off) < 2_000_000, (host_kind, e.offset_ns - true_off)
    if host_kind == "equal to device":
        assert len(est) >= 6, tr.stats()  # no spread: no bound, every window answers
    else:
        assert any("arrival bound" in r for r in tr.stats()["reasons"]), tr.stats()


def test_tracker_weighs_its_estimates_by_the_calibrated_sigma(rig):
    """With a fitted sigma table the evidence carries ``k * sqrt(s^2 + g^2)`` of the window's sigma (scaled for the
    overlap), the pair looked up either way round; the offsets themselves are the same."""
    k, g_ms = 0.25, 3.0
    plain = run(AlignmentTracker("imu0", "mic0", IMU, MIC, runners={}, window_s=8.0, hop_s=4.0), rig)
    table = SigmaTable((("audio", "imu", k, g_ms),), {"split": "test"})
    calib = run(AlignmentTracker("imu0", "mic0", IMU, MIC, runners={}, window_s=8.0, hop_s=4.0, table=table), rig)
    assert len(plain) == len(calib) >= 6
    for p, c in zip(plain, calib, strict=True):
        assert (p.device_ns, p.offset_ns) == (c.device_ns, c.offset_ns)
        assert abs(c.sigma_ns - k * np.hypot(p.sigma_ns, g_ms * 1e6)) <= 2, (p, c)
        assert p.shared_ns == 0 and c.shared_ns == int(k * g_ms * 1e6)  # the floor, shared by every window


def test_window_evidence_scales_for_the_overlap_then_calibrates():
    r = AlignResult(True, 5_000_000, 400_000, 12.0, 7 * NS, "hybrid")
    assert window_evidence(r, "mic0", 4.0).sigma_ns == 800_000  # 8 s windows every 2 s: worth half of one
    assert window_evidence(r, "mic0", 0.5).sigma_ns == 400_000  # gaps between windows: no credit
    t = SigmaTable((("imu", "audio", 2.0, 0.6),), {})
    e = window_evidence(r, "mic0", 4.0, t, ("audio", "imu"))
    assert e.sigma_ns == 2_000_000 and e.offset_ns == 5_000_000 and e.device_ns == 7 * NS
    assert e.shared_ns == 1_200_000
    assert window_evidence(r, "mic0", 4.0, t, ("audio", "video")).sigma_ns == 800_000  # no entry: unchanged


def test_after_the_first_windows_it_tracks_and_its_estimates_come_sooner(rig):
    """Old behaviour: every window searched +-2 s, so it waited for the reference to reach 2.6 s past its end (on
    top of the agent's correction delay).  Once TRACK_AFTER windows agree, +-0.5 s: 1.1 s past the end."""
    clock = rig[3]
    tr = AlignmentTracker("imu0", "mic0", IMU, MIC, runners={}, window_s=8.0, hop_s=4.0)
    _w, t_imu, imu, _clock, _true, dev, aud, host = rig
    for c in chunks("mic0", aud, dev, host):  # the target first: the reference decides when windows are done
        tr.push("mic0", c)
    needed = []
    for c in chunks("imu0", imu, t_imu, t_imu, ref=t_imu, every=0.1):
        tr.push("imu0", c)
        for e in tr.poll():
            end = e.device_ns + tr.window_ns // 2 + e.offset_ns  # the window's end on the reference clock
            needed.append((tr.ref.last - end) / NS)
            true_off = int(clock.to_true(np.array([e.device_ns]), 0)[0]) - e.device_ns
            assert abs(e.offset_ns - true_off) < 2_000_000
    st = tr.stats()
    assert len(needed) >= 6 and st["tracking"] and st["tracked"] >= 3, st
    assert all(n > 2.5 for n in needed[:TRACK_AFTER]), needed
    assert all(n < 1.3 for n in needed[TRACK_AFTER:]), needed


def test_windows_without_an_estimate_widen_the_search_again(rig):
    pytest.importorskip("onnxruntime", reason="the encoders need the neural extra")
    dev, aud = rig[5], rig[6]
    quiet = aud.copy()
    t0 = dev[0]
    # the microphone hears nothing for 18 s (from 26 s: the first 8 s window's two events are held back, as a chance
    # peak might be, so the tracker locks a window later)
    quiet[(dev >= t0 + 26 * NS) & (dev < t0 + 44 * NS)] = 0
    tr = AlignmentTracker("imu0", "mic0", IMU, MIC, runners=load_runners(["imu", "audio"]), window_s=8.0, hop_s=4.0)
    seen = []

    def note():
        if not seen or seen[-1] != tr.tracking:
            seen.append(tr.tracking)

    run(tr, rig, audio=quiet, each=note)
    assert seen[:4] == [False, True, False, True], (seen, tr.stats())  # locked, lost in the silence, locked again
    assert tr.counts["abstained"] >= LOST_AFTER and tr.counts["tracked"] < tr.counts["windows"] - TRACK_AFTER


def test_target_fed_as_it_arrives_gives_the_same_estimates_and_corrected_copies_are_ignored(rig):
    """``push_arrival``: the target's raw chunks (before the clock layer holds them); ``push`` then takes only the
    reference, so the corrected copies of the same samples (the shipper's taps) neither count twice nor as bad."""
    _w, t_imu, imu, _clock, _true, dev, aud, host = rig
    ref = chunks("imu0", imu, t_imu, t_imu, ref=t_imu)
    tgt = chunks("mic0", aud, dev, host)
    plain = AlignmentTracker("imu0", "mic0", IMU, MIC, runners={}, window_s=8.0, hop_s=4.0)
    expected = feed(plain, "imu0", ref, "mic0", tgt)
    early = AlignmentTracker("imu0", "mic0", IMU, MIC, runners={}, window_s=8.0, hop_s=4.0)
    got, ia = [], 0
    for c in tgt:  # raw at arrival; the corrected copy (ref_ns set) comes later through push, as from the shipper
        while ia < len(ref) and ref[ia].host_ns[0] <= c.host_ns[0]:
            early.push("imu0", ref[ia])
            early.push_arrival("imu0", ref[ia])  # not the target: ignored here
            ia += 1
        early.push_arrival("mic0", c)
        early.push("mic0", Chunk("mic0", c.seq, c.data, c.device_ns, c.host_ns, ref_ns=c.host_ns,
                                 unc_ns=np.zeros(c.n, dtype=np.int64)))
        got.extend(early.poll())
    for c in ref[ia:]:
        early.push("imu0", c)
        got.extend(early.poll())
    assert len(expected) >= 6 and got == expected
    st = early.stats()
    assert st["bad_chunks"] == 0 and not any("chunk" in r for r in st["reasons"]), st["reasons"]


def test_tracker_windows_are_the_calibrated_ones_or_grow_to_them(rig):
    """Default: 16 s windows every 4 s (what the sigma tables are fitted on); ``first_window_s`` makes the first ones
    grow to that from the target's start."""
    assert [(b - a) / NS for a, b in _spans(AlignmentTracker("imu0", "mic0", IMU, MIC, runners={}), rig)[0][:3]] == \
        [16.0, 16.0, 16.0]
    clock, dev = rig[3], rig[5]
    tr = AlignmentTracker("imu0", "mic0", IMU, MIC, runners={}, first_window_s=8.0)
    seen, est = _spans(tr, rig)
    start = int(dev[0])
    rel = [((a - start) / NS, (b - start) / NS) for a, b in seen[:5]]
    assert rel == [(0.0, 8.0), (0.0, 12.0), (0.0, 16.0), (4.0, 20.0), (8.0, 24.0)]
    assert len(est) >= 8 and est[0].device_ns in {(a + b) // 2 for a, b in seen}  # stamped at its window's centre
    for e in est:
        true_off = int(clock.to_true(np.array([e.device_ns]), 0)[0]) - e.device_ns
        assert abs(e.offset_ns - true_off) < 2_000_000, (e, true_off)
    with pytest.raises(ValueError):
        AlignmentTracker("a", "b", IMU, MIC, first_window_s=0)


def _spans(tr, rig):
    """The (start, end) of every window ``tr`` aligned on the rig, and its estimates."""
    seen: list[tuple[int, int]] = []
    est_of = tr.win.estimate

    def spy(rt, rx, tt, tx, span, *a, **k):
        seen.append((int(span[0]), int(span[1])))
        return est_of(rt, rx, tt, tx, span, *a, **k)

    tr.win.estimate = tr.track.estimate = spy
    return seen, run(tr, rig)


def _tones_and_log(seed, heard: bool):
    """240 s of tone bursts at 16 kHz (the microphone, on the reference clock) and a marker log on a clock 5 s
    ahead, its lines arriving 8 ms after they were stamped: of the tones (``heard``), or of sounds never heard."""
    x, onsets = tone_bursts(16000, 240.0, seed)
    lines = onsets + 0.003 if heard else np.sort(np.random.default_rng(100 + seed).uniform(1.0, 238.0, len(onsets)))
    t_mic = (np.arange(len(x)) * (NS / 16000)).astype(np.int64)
    stamped = np.rint(lines * NS).astype(np.int64)
    mic = chunks("mic", x[:, None], t_mic, t_mic, ref=t_mic)
    log = [Chunk("log", i, np.array(["tone"], dtype=object), stamped[i:i + 1] + 5 * NS, stamped[i:i + 1] + 8_000_000)
           for i in range(len(stamped))]
    return mic, log


@pytest.mark.parametrize("seed", [5, 12])
def test_a_log_of_sounds_never_heard_gives_no_estimate_live(seed):
    """Before: 5-7 estimates in 240 s, 1.2-2.4 s off with 26-43 ms sigmas, four in a row on one line (overlapping
    windows share one coincidence), each fed to the log's clock model.  Now a window's offset is asked of the two
    streams' events of the last minute first (``coarse.support``); the log of the sounds themselves is still tied."""
    pytest.importorskip("onnxruntime", reason="the encoders need the neural extra")
    from synchub.agent.align.tracker import calibrated_settings
    from synchub.agent.align.window import sigma_table

    table = sigma_table(False)
    mic_info, log_info = StreamInfo("mic", "audio", 16000.0, 1), StreamInfo("log", "marker", 0.0, 1, "string")
    runners = load_runners(["audio", "text"])
    for heard in (False, True) if seed == 5 else (False,):  # the log of the sounds heard: once
        tr = AlignmentTracker("mic", "log", mic_info, log_info, runners, settings=calibrated_settings(table, False),
                              table=table)
        mic, log = _tones_and_log(seed, heard)
        out = feed(tr, "mic", mic, "log", log)
        if heard:
            assert len(out) >= 30 and all(abs(e.offset_ns + 5 * NS + 3e6) < 3e6 for e in out), out[:3]
        else:
            assert out == [] and any(k.startswith("chance peak") for k in tr.reasons), tr.stats()


@pytest.mark.parametrize("seed", [5, 8])
def test_after_its_first_estimates_a_wide_search_is_still_asked_of_chance(seed):
    """A log tied to the microphone's tones for its first 40 s, then of sounds the microphone never heard (its
    microphone moved to another room): the tracker had its first estimates, not yet a line to track, and the wide
    searches after them were no longer asked whether their offset lines the events up beyond chance (only the
    first one was): chance peaks seconds off went into the log's clock model (a held-out camera at 0 dB SNR: 1.2-3.4
    s off, 56 s after three right ones; here 1-5 of 2-6 estimates wrong on 8 of 12 seeds).  Now every wide search is
    asked: none wrong on any seed, the right one still comes."""
    pytest.importorskip("onnxruntime", reason="the encoders need the neural extra")
    from synchub.agent.align.tracker import calibrated_settings
    from synchub.agent.align.window import sigma_table

    table = sigma_table(False)
    x, onsets = tone_bursts(16000, 240.0, seed)
    unheard = np.sort(np.random.default_rng(100 + seed).uniform(40.0, 238.0, int(np.count_nonzero(onsets >= 40.0))))
    lines = np.concatenate([onsets[onsets < 40.0] + 0.003, unheard])
    t_mic = (np.arange(len(x)) * (NS / 16000)).astype(np.int64)
    stamped = np.rint(lines * NS).astype(np.int64)
    mic = chunks("mic", x[:, None], t_mic, t_mic, ref=t_mic)
    log = [Chunk("log", i, np.array(["tone"], dtype=object), stamped[i:i + 1] + 5 * NS, stamped[i:i + 1] + 8_000_000)
           for i in range(len(stamped))]
    tr = AlignmentTracker("mic", "log", StreamInfo("mic", "audio", 16000.0, 1),
                          StreamInfo("log", "marker", 0.0, 1, "string"), load_runners(["audio", "text"]),
                          settings=calibrated_settings(table, False), table=table)
    out = feed(tr, "mic", mic, "log", log)
    assert out and all(abs(e.offset_ns + 5 * NS + 3e6) < 3e6 for e in out), [e.offset_ns for e in out]
    assert any(k.startswith("chance peak") for k in tr.reasons), tr.stats()
