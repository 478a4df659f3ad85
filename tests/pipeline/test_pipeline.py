"""The agent pipeline: sequence numbers, lossless blocking, counted drops, correction layer, evidence routing."""

import threading
import time

import numpy as np

from synchub.agent.clock.layer import StreamClocks
from synchub.agent.clock.settings import ClockLayerConfig, StreamClockOptions
from synchub.agent.core.evidence import TriggerEdge
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.pipeline.chunkqueue import BoundedQueue, DerivedChunk
from synchub.agent.pipeline.hub import Hub
from synchub.agent.pipeline.shipper import IdentityClocks, Shipper


class ListOutlet:
    def __init__(self):
        self.chunks, self.gaps, self.meta = [], [], []

    def send_chunk(self, c):
        self.chunks.append(c)

    def send_gap(self, g):
        self.gaps.append(g)

    def send_meta(self, s, m):
        self.meta.append((s, m))


class RecordingClocks(IdentityClocks):
    def __init__(self):
        self.evidence, self.arrivals = [], 0

    def feed(self, item):
        self.evidence.append(item)

    def feed_arrivals(self, stream, device_ns, host_ns):
        self.arrivals += len(device_ns)


INFOS = {"a": StreamInfo("a", "imu", 200.0, 2), "b": StreamInfo("b", "text", 0.0, 1, "string")}


def _push(hub, stream, n, t0=0):
    dev = np.arange(t0, t0 + n, dtype=np.int64)
    data = [f"x{i}" for i in range(n)] if stream == "b" else np.zeros((n, 2), np.float32)
    hub.samples(stream, data, dev, dev + 5)


def test_sequence_numbers_contiguous_and_raw_times_kept():
    q = BoundedQueue(100)
    hub, outlet, clocks = Hub(INFOS, q), ListOutlet(), RecordingClocks()
    ship = Shipper(q, clocks, outlet)
    ship.start()
    for i in range(10):
        _push(hub, "a", 3, t0=i * 3)
        _push(hub, "b", 2, t0=i * 2)
    hub.evidence(TriggerEdge("sync", 123, "ref"))
    hub.gap("a", 4, "device_drop", 1, 2)
    time.sleep(0.2)
    ship.stop()
    ship.join(5)
    seqs = {"a": [], "b": []}
    for c in outlet.chunks:
        seqs[c.stream] += list(range(c.seq, c.seq_end))
        assert c.method == "identity" and np.array_equal(c.ref_ns, c.host_ns) and np.array_equal(c.host_ns, c.device_ns + 5)
    assert seqs["a"] == list(range(30)) and seqs["b"] == list(range(20))
    assert clocks.arrivals == 50 and len(clocks.evidence) == 1
    assert outlet.gaps[0].seq == 30 and outlet.gaps[0].count == 4 and hub.stats["a"].dropped == 4


def test_block_policy_is_lossless_under_backpressure():
    q = BoundedQueue(2, "block")
    hub = Hub(INFOS, q)
    done = threading.Event()

    def producer():
        for i in range(50):
            _push(hub, "a", 1, t0=i)
        done.set()

    threading.Thread(target=producer, daemon=True).start()
    time.sleep(0.1)
    assert not done.is_set()  # blocked on the full queue, not dropping
    got = []
    while len(got) < 50:
        item = q.get(1.0)
        assert item is not None
        got.append(item.seq)
    assert got == list(range(50)) and q.stats.dropped_chunks == 0 and q.stats.blocked_ns > 0


def test_drop_oldest_is_counted_and_recorded_as_gap():
    q = BoundedQueue(3, "drop-oldest")
    hub, outlet = Hub(INFOS, q), ListOutlet()
    for i in range(5):
        _push(hub, "a", 2, t0=i * 2)
    hub.evidence(TriggerEdge("sync", 1, "ref"))  # evidence is never dropped
    assert q.stats.dropped_chunks == 2 and q.stats.dropped_samples == 4
    ship = Shipper(q, RecordingClocks(), outlet)
    ship.start()
    time.sleep(0.2)
    ship.stop()
    ship.join(5)
    assert [c.seq for c in outlet.chunks] == [4, 6, 8]
    assert [(g.seq, g.count, g.cause) for g in outlet.gaps] == [(2, 2, "queue_full"), (4, 2, "queue_full")]


def test_correction_delay_holds_chunks_until_released():
    q = BoundedQueue(100)
    hub, outlet = Hub(INFOS, q), ListOutlet()
    ship = Shipper(q, IdentityClocks(), outlet, correction_delay_ms=10_000)
    ship.start()
    now = time.monotonic_ns()
    hub.samples("a", np.zeros((1, 2), np.float32), np.array([0]), np.array([now]))
    time.sleep(0.2)
    assert outlet.chunks == [] and ship.pending == 1
    ship.stop()
    ship.join(5)
    assert len(outlet.chunks) == 1  # stop flushes what is pending: nothing lost


def test_final_drain_ships_what_arrives_after_the_thread_ended():
    # the agent's stop: the last drain feeds aligners and fusion, whose output is queued after the thread ended
    q = BoundedQueue(100)
    hub, outlet, clocks = Hub(INFOS, q), ListOutlet(), RecordingClocks()
    ship = Shipper(q, clocks, outlet)
    ship.start()
    q.put(TriggerEdge("sync", 1, "ref"))
    ship.final_drain()  # refused while the thread runs: one thread ships at a time
    ship.stop()
    ship.join(5)
    assert len(clocks.evidence) == 1
    t = np.array([7], dtype=np.int64)
    fused = Chunk("f", 0, np.zeros((1, 3), np.float32), t, t.copy(), ref_ns=t.copy(), unc_ns=np.zeros(1, np.int64))
    q.put(DerivedChunk(fused))
    hub.evidence(TriggerEdge("sync", 2, "ref"))
    ship.final_drain()
    assert len(outlet.chunks) == 1 and outlet.chunks[0] is fused and ship.sent_samples["f"] == 1 and len(clocks.evidence) == 2
    assert len(q) == 0 and ship.error is None


def test_a_failing_tap_is_counted_and_the_chunks_still_ship():
    q = BoundedQueue(100)
    hub, outlet, seen = Hub(INFOS, q), ListOutlet(), []

    def bad_tap(stream, chunk):
        seen.append(chunk.seq)
        raise ValueError("aligner bug")

    ship = Shipper(q, IdentityClocks(), outlet, taps=[bad_tap, lambda s, c: seen.append(-c.seq)])
    ship.start()
    for i in range(5):
        _push(hub, "a", 2, t0=2 * i)
    time.sleep(0.2)
    ship.stop()
    ship.join(5)
    assert [c.seq for c in outlet.chunks] == [0, 2, 4, 6, 8] and ship.error is None
    assert ship.tap_errors == 5 and sorted(seen) == [-8, -6, -4, -2, 0, 0, 2, 4, 6, 8]


def test_unknown_stream_is_counted_not_fatal():
    q = BoundedQueue(10)
    hub = Hub(INFOS, q)
    _push(hub, "a", 1)
    hub.samples("zzz", np.zeros((1, 2)), np.array([0]), np.array([0]))
    assert hub.problems[("unknown_stream", "zzz")] == 1 and len(q) == 1


def test_a_reported_clock_reset_starts_a_new_clock_segment_and_is_recorded():
    infos = {"a": StreamInfo("a", "imu", 100.0, 2)}
    q = BoundedQueue(100)
    hub, outlet = Hub(infos, q), ListOutlet()
    clocks = StreamClocks(infos, ClockLayerConfig(streams={"a": StreamClockOptions(method="arrival")}))
    ship = Shipper(q, clocks, outlet)
    ship.start()
    host = 10**12
    dev = np.arange(0, 50, dtype=np.int64) * 10_000_000  # 0.5 s at 100 Hz
    hub.samples("a", np.zeros((50, 2), np.float32), dev, host + dev)
    # a capture restarts after a 0.6 s outage: its sample counter just continues, so device time alone shows no
    # reset (arrival times look like a late read); the driver knows better and says so (a ClockReset)
    hub.reset("a", int(dev[-1]) + 10_000_000, int(dev[-1]), "capture restarted")
    hub.samples("a", np.zeros((50, 2), np.float32), dev + 5 * 10**8, host + dev + 5 * 10**8 + 6 * 10**8)
    time.sleep(0.3)
    ship.stop()
    ship.join(5)
    segs = np.concatenate([c.segment for c in outlet.chunks])
    assert list(np.unique(segs)) == [0, 1] and clocks.clocks["a"].model.resets == 1
    ref = np.concatenate([c.ref_ns for c in outlet.chunks])
    # the second segment maps onto its own arrivals, not onto the first segment's line
    assert abs(int(ref[50]) - (host + 11 * 10**8)) < 50_000_000
    # recorded as evidence with the sample it precedes, not as a gap: nothing was lost
    assert outlet.gaps == [] and hub.stats["a"].resets == 1
    rec = [m for s, m in outlet.meta if s == "_evidence" and m["type"] == "reset"]
    assert rec == [{"kind": "evidence", "type": "reset", "stream": "a", "seq": 50, "device_ns": int(dev[-1]) + 10_000_000,
                    "previous_ns": int(dev[-1]), "detail": "capture restarted"}]
