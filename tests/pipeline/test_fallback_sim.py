"""End to end on the simulator's renderings, through the agent's clock layer (the short version of ``synchub bench
fallback``): a microphone whose device also sees the sync pulses (``trigger = "sync"``) and that the live tracker
aligns to the IMU.  Its samples are stamped ``LAG`` after the sound (buffering no window shows).  At ``LOSS_S`` the
trigger box stops.  Its aligner's estimates pass the session's latency calibration into ``StreamClocks`` as the
agent's do: before the loss they only measure the latency against the trigger path; after it they map the stream,
corrected by it.  Compared with the same session where they are withheld (the agent before the fallback): the mapped
error after the loss, for a crystal whose drift wanders little (the edges' extrapolation stays better, and is kept by
variance) and for one near a heater."""

import numpy as np

from synchub.agent.clock.layer import StreamClocks
from synchub.agent.core.evidence import OffsetEstimate, TriggerEdge
from synchub.agent.core.stream import Chunk
from synchub.agent.core.units import NS
from synchub.agent.pipeline.chunkqueue import BoundedQueue
from synchub.agent.pipeline.shipper import Shipper
from synchub.bench.fallback import CONFIG, IMU, LAG_NS, MIC
from synchub.bench.fallback import session as session_of

LOSS_S = 70
DURATION_S = 150.0


class Outlet:
    def send_chunk(self, chunk): ...

    def send_gap(self, gap): ...

    def send_meta(self, stream, meta): ...


def session(tmp_path, seed, fallback, wander_ppm):
    return session_of(tmp_path, seed, fallback, wander_ppm, DURATION_S, LOSS_S)


def err_ms(out, lo_s):
    return float(np.median([abs(e) for t, e, _ in out if t >= lo_s * NS])) / 1e6


def test_the_aligner_carries_a_wired_stream_whose_trigger_stopped(tmp_path):
    for wander, what in ((2.0, "a crystal wandering 2 ppm/sqrt(h)"), (200.0, "one near a heater, 200 ppm/sqrt(h)")):
        clocks, cal, with_fb = session(tmp_path, 3030, True, wander)
        _, _, without = session(tmp_path, 3030, False, wander)
        before, after, old = err_ms([o for o in with_fb if o[0] < LOSS_S * NS], 20), err_ms(with_fb, 110), \
            err_ms(without, 110)
        events = [line for _, line in clocks.take_events()]
        fb = clocks.clocks["mic0"].model.fallback.state()
        print(f"{what}: before the loss {before:.3f} ms; 110-150 s: {after:.2f} ms with the fallback, {old:.2f} ms "
              f"without; {events}; {fb}")
        assert before < 0.05  # the trigger path, untouched by the aligner
        assert abs(fb["latency_ns"] + LAG_NS) < 1_500_000  # measured against the edges before the loss
        assert events[0].startswith("trigger lost on mic0: aligner fallback (latency -1")
        # chosen by variance: the aligner maps where the edges' extrapolation, even with the widest drift wander the
        # clock model allows (50 ppm/sqrt(h)), is worse; 40-80 s after the loss it is not yet, for either clock
        assert after <= old + 0.01
        assert len(cal.held) > 12  # still kept for the stop's measurement


def test_the_shipper_says_once_that_the_trigger_was_lost_and_once_that_it_came_back(caplog):
    """Through the agent's shipper (its clock layer's events): one warning each way, the latest kept for the status."""
    clocks = StreamClocks({"imu0": IMU, "mic0": MIC}, CONFIG, history=False)
    sh = Shipper(BoundedQueue(8), clocks, Outlet())
    offset = 2 * NS

    def second(s, edge=True, est=True):
        dev = np.arange((s - 1) * 100, s * 100, dtype=np.int64) * 10_000_000  # 100 Hz of samples, 5 ms late
        sh._handle(Chunk("mic0", (s - 1) * 100, np.zeros(100, np.float32), dev, dev + offset + 5_000_000))
        if edge:
            sh._handle(TriggerEdge("sync", s * NS + offset, "ref", 1))
            sh._handle(TriggerEdge("mic0", s * NS, "device", 1))
        if est and s >= 12:  # the aligner's window 8 s back, 12 ms late
            sh._handle(OffsetEstimate("mic0", (s - 8) * NS, offset + 12_000_000, 2_000_000, "hybrid"))

    with caplog.at_level("WARNING", "synchub.pipeline"):
        for s in range(1, 60):
            second(s, edge=not 40 <= s < 50)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("trigger lost on mic0: aligner fallback (latency +12.00")
    assert lines[1].startswith("trigger back on mic0: trigger path again")
    assert sh.clock_notes == {"mic0": lines[1]} and len(clocks.clocks["mic0"].model.segments) == 1


def test_the_shipper_logs_a_marker_logged_late_once_and_keeps_its_clock_segment(caplog):
    """A marker chunk whose device time went back (a line logged late): through the agent's shipper one warning,
    kept for the status; the stream stays on one clock segment (it used to start one, silently)."""
    from synchub.agent.core.stream import StreamInfo

    clocks = StreamClocks({"mk": StreamInfo("mk", "text", 0.0, 1, "string")}, history=False)
    sh = Shipper(BoundedQueue(8), clocks, Outlet())
    dev = np.array([1, 2, 3, 4, 3.5, 5, 6]) * NS
    host = np.array([1, 2, 3, 4, 4.6, 5, 6]) * NS + 5_000_000
    with caplog.at_level("WARNING", "synchub.pipeline"):
        for k in range(len(dev)):
            sh._handle(Chunk("mk", k, np.array([f"m{k}"], dtype=object), dev[k:k + 1].astype(np.int64),
                             host[k:k + 1].astype(np.int64)))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("mk: 1 sample(s) out of time order")
    assert sh.clock_notes == {"mk": lines[0]} and len(clocks.clocks["mk"].model.segments) == 1
