"""The simulator's truth recorder stays bounded in memory: past its threshold the per-sample arrays go to files in a
private temporary directory, ``build`` reads everything back in order, and the directory goes with the recorder."""

import gc
from types import SimpleNamespace

import numpy as np

from synchub.drivers.sim.clocks import ClockSpec
from synchub.drivers.sim.truth import Recorder, Spill


def test_recorder_spills_to_disk_and_builds_everything_back():
    spec = SimpleNamespace(name="mic0", modality="audio", wire_format="pcm", clock=ClockSpec())
    rec = Recorder(spec, None, spill_samples=1000)
    n = 0
    for i in range(50):
        k = 320
        t = np.arange(n, n + k, dtype=np.int64)
        rec.samples(t, t * 2, np.zeros(k, np.int32), 7, conn=i % 2)
        n += k
        assert rec._pending < 1000 + k  # memory holds at most one threshold's worth
    rec.add("ping_token", 5)
    assert rec.spills == 50 // 4 and rec.store._dir is not None and rec.store._dir.is_dir()
    # what a spill leaves in memory does not grow with the spills (not a file name per spill: a soak of hours)
    assert len(rec.store._spilled) == len(Recorder.PER_SAMPLE)
    assert sorted(p.name for p in rec.store._dir.iterdir()) == sorted(f"{k}.bin" for k in Recorder.PER_SAMPLE)
    t = rec.build(dropped=1, undelivered=2, resets_ns=np.zeros(0, np.int64))
    assert np.array_equal(t.true_ns, np.arange(n)) and np.array_equal(t.device_ns, 2 * np.arange(n))
    assert t.host_ns.dtype == np.int64 and np.all(t.host_ns == 7) and np.array_equal(t.conn, np.arange(n) // 320 % 2) and t.segment.dtype == np.int32
    assert list(t.ping_token) == [5] and t.dropped == 1 and t.undelivered == 2
    where = rec.store._dir
    del rec
    gc.collect()
    assert not where.exists()


def test_a_slow_stream_spills_after_a_few_hundred_packets_not_after_64k_samples():
    spec = SimpleNamespace(name="tlm0", modality="telemetry", wire_format="nmea", clock=ClockSpec())
    rec = Recorder(spec, None)  # the default threshold: 64k samples
    for i in range(3 * Recorder.SPILL_APPENDS + 7):  # one sample per packet, like a 10 Hz serial device
        t = np.array([i], np.int64)
        rec.samples(t, t, np.zeros(1, np.int32), i, conn=0)
        assert len(rec.store.parts["true_ns"]) < Recorder.SPILL_APPENDS  # in memory: a few hundred packets at most
    assert rec.spills == 3
    t = rec.build(dropped=0, undelivered=0, resets_ns=np.zeros(0, np.int64))
    assert np.array_equal(t.true_ns, np.arange(3 * Recorder.SPILL_APPENDS + 7)) and np.array_equal(t.host_ns, t.true_ns)


def test_edges_and_pings_spill_too_so_an_hour_of_events_stays_bounded():
    """One item per event (a trigger edge the IMU reports, a pong): 2 edges/s are 7,200 an hour, each a small array
    in a list until the soak found them; they spill per key after SPILL_APPENDS events and read back in order."""
    spec = SimpleNamespace(name="imu0", modality="imu", wire_format="imu-bin", clock=ClockSpec())
    rec = Recorder(spec, None)
    n = 5 * Recorder.SPILL_APPENDS + 3
    for i in range(n):
        rec.add("edge_true_ns", np.int64(10 * i))
        rec.add("edge_level", np.int8(i % 2))
        rec.add("ping_token", np.int64(i))
        assert all(len(v) < Recorder.SPILL_APPENDS for v in rec.store.parts.values())
    assert sum(len(v) for v in rec.store.parts.values()) == 3 * 3  # what is left in memory: the last 3 of each
    t = rec.build(dropped=0, undelivered=0, resets_ns=np.zeros(0, np.int64))
    assert np.array_equal(t.edge_true_ns, 10 * np.arange(n)) and t.edge_level.dtype == np.int8
    assert np.array_equal(t.edge_level, np.arange(n) % 2) and np.array_equal(t.ping_token, np.arange(n))
    assert len(t.true_ns) == 0 and rec.delivered == 0


def test_spill_reads_back_file_then_memory_and_counts_everything():
    sp = Spill("x", spill_items=100, max_pieces=1000)
    for i in range(30):
        sp.append("a", np.arange(10 * i, 10 * i + 10, dtype=np.int32))
        assert sum(map(len, sp.parts.get("a", []))) < 100
    assert sp.spills == 3 and sp.counts["a"] == 300
    assert np.array_equal(sp.array("a", np.int64), np.arange(300)) and sp.array("b", np.int8).dtype == np.int8
