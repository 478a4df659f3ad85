"""End to end on the simulator's renderings: a microphone whose samples are stamped ``LAG`` after the sound (its
buffering, which no window shows) is aligned to the IMU by the live tracker in two sessions.  In the first its
device also sees the sync pulses (trigger pairs on its clock): the calibration measures the aligner against that
trigger path and stores the latency.  In the second (another world, no trigger) the stored latency corrects the
aligner's estimates, and the stream's clock model maps the device times that much closer to the trigger truth."""

from types import SimpleNamespace

import numpy as np
from support.live_align import chunks, feed

from synchub.agent.align.latency import PairKey
from synchub.agent.align.tracker import AlignmentTracker
from synchub.agent.clock.fallback import TriggerFallback, default_stale_ns
from synchub.agent.clock.model import ClockModel
from synchub.agent.core.stream import StreamInfo
from synchub.agent.core.units import NS
from synchub.agent.pipeline.latency_io import SessionLatency, load_store
from synchub.drivers.sim import render as R
from synchub.drivers.sim.clocks import ClockSpec, DeviceClock
from synchub.drivers.sim.world import World

IMU = StreamInfo("imu0", "imu", 200.0, 6)
MIC = StreamInfo("mic0", "audio", 16000.0, 1)
KEY = PairKey("mic0", "audio", "imu0", "imu")
LAG_NS = 12_000_000
DURATION_S = 100.0


def session(seed, path, wired):
    """One session's aligner estimates through the calibration into the microphone's clock model; returns the
    calibration, the model and the device clock (the truth)."""
    w = World(DURATION_S, seed=seed)
    rng = np.random.default_rng(seed)
    t_imu = np.arange(int(DURATION_S * 200), dtype=np.int64) * 5_000_000
    imu = R.render(w, "imu", t_imu, rng=rng)
    clock = DeviceClock(ClockSpec(offset_s=0.8123, drift_ppm=40.0, latency_min_ms=5, latency_max_ms=20,
                                  latency_kind="usb-buffer"), DURATION_S, seed=seed)
    true, dev, _ = clock.regular_samples(16000.0)
    audio = R.render(w, "audio", true - LAG_NS, rng=rng)  # the sample stamped at `true` holds the sound of LAG before
    host = clock.arrivals(true)
    cal = SessionLatency(path, {"mic0": (KEY, wired)}, session=f"seed {seed}")
    model = ClockModel("mic0", nominal_period_ns=62_500)
    if wired:  # the sync pulses on the device's input pin, stamped on its clock
        model.fallback = TriggerFallback(default_stale_ns(NS))
        edges = np.arange(1, int(DURATION_S), dtype=np.int64) * NS
        model.add_edges(clock.to_device(edges, jitter=True), edges, 5_000.0)
    tr = AlignmentTracker("imu0", "mic0", IMU, MIC, runners={}, window_s=8.0, hop_s=4.0)
    for est in feed(tr, "imu0", chunks("imu0", imu, t_imu, t_imu, ref=t_imu), "mic0", chunks("mic0", audio, dev, host)):
        model.add_offset(cal(est))
    return cal, model, clock


def error_ms(model, clock):
    """Median error of the model's mapping of the microphone's device times against the trigger truth."""
    d = clock.to_device(np.arange(15, int(DURATION_S) - 5, dtype=np.int64) * NS, jitter=False)
    ref, _, _ = model.map(d)
    return float(np.median(ref - clock.to_true(d, 0))) / 1e6


def test_a_latency_measured_against_triggers_corrects_a_later_unwired_session(tmp_path):
    path = tmp_path / "latency.json"
    wired, wmodel, _ = session(1010, path, wired=True)
    measured = wired.finish(SimpleNamespace(clocks={"mic0": SimpleNamespace(model=wmodel)}))["mic0"]
    assert "latency_ns" in measured, measured
    stored = load_store(path).get(KEY)
    assert abs(stored.latency_ns + LAG_NS) < 1_000_000, stored  # aligner - trigger path = -LAG

    _, raw, clock = session(2020, tmp_path / "none.json", wired=False)
    before = error_ms(raw, clock)
    cal, fixed, clock = session(2020, path, wired=False)
    after = error_ms(fixed, clock)
    print(f"stored {stored.latency_ns / 1e6:.2f} +- {stored.sigma_ns / 1e6:.2f} ms ({stored.n} windows); unwired "
          f"session error {before:.2f} ms without, {after:.2f} ms with it")
    assert cal.applied == {"mic0": stored}
    assert abs(before + LAG_NS / 1e6) < 2.0  # the aligner alone: the lag early
    assert abs(after) < 1.0 and abs(before) - abs(after) > 0.8 * LAG_NS / 1e6
