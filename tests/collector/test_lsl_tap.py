"""``synchub collector --lsl-outlet``: a simulated agent session (raw wire messages on loopback ZeroMQ, duplicates and
overlaps included) recorded by the real collector comes out of real pylsl outlets, read by a LabRecorder-style inlet:
every recorded sample once, stamps mapped through UTC onto this host's LSL clock, full metadata; a restarted agent's
session gets the same source id.  The stamp mapping is tested pure.  Skipped (with the reason) without liblsl."""

import sys
import threading
import time
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import zmq
from support.lsl import needs_lsl, pull_all, pylsl
from support.procs import free_port, start_collector, stop

from synchub.agent.collector.ledger import Ledger
from synchub.agent.collector.lsl_tap import (
    LslTap,
    hello_utc_minus_ref_ns,
    lsl_offset_ns,
    meta_utc_minus_ref_ns,
    stamp_times,
)
from synchub.agent.collector.server import Collector
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.formats.mcap_read import read_session
from synchub.agent.transport import wire
from synchub.agent.transport.sender import Sender
from synchub.cli import main
from synchub.drivers.lsl.outlet import clock_offset_ns, lsl_clock_offset_ns, lsl_stamps

NS = 1_000_000_000


def test_the_stamp_is_the_agents_utc_on_this_hosts_lsl_clock_exactly():
    utc0, mono0 = 1_790_000_000_123_456_789, 86_400_000_000_007  # agent: UTC and CLOCK_MONOTONIC at its hello
    a = hello_utc_minus_ref_ns({"utc_ns": utc0, "mono_ns": mono0})
    assert a == utc0 - mono0
    assert hello_utc_minus_ref_ns({"utc_ns": 0, "mono_ns": mono0}) is None  # no mapping sent
    assert hello_utc_minus_ref_ns({}) is None
    assert meta_utc_minus_ref_ns({"utc_minus_mono_ns": a + 5}) == a + 5
    assert meta_utc_minus_ref_ns({"utc_minus_mono_ns": True}) is None and meta_utc_minus_ref_ns("x") is None
    # the collector: UTC 1_790_000_000 s when its LSL clock read 1234.5 s
    c = 1_790_000_000 * NS - 1234_500_000_000
    ref = np.array([mono0 + 1_000, mono0 + 2 * NS + 17], dtype=np.int64)
    stamps = lsl_stamps(ref, lsl_offset_ns(a, c))
    utc = ref + a  # the samples' UTC; on the collector's LSL clock: UTC - c
    assert stamps.tolist() == [(int(u) - c) / NS for u in utc]  # exact integers until the one division
    assert stamps[0] == pytest.approx(1234.5 + 0.123456789 + 1e-6, abs=1e-9)
    # the collector measures UTC - local_clock back to back (the tightest reading)
    reads = iter([100, 200, 1000, 1010, 5000, 5500])
    lsl = iter([0.000_001, 0.000_002, 0.000_003])
    assert clock_offset_ns(lambda: next(lsl), lambda: next(reads), tries=3) == 2_000 - 1005


def test_uncorrected_samples_go_out_at_their_host_time_and_are_counted():
    dev = np.arange(4, dtype=np.int64)
    host = dev + 1_000
    c = Chunk("s", 0, np.zeros((4, 1), np.float32), dev, host)
    assert stamp_times(c)[1] == 4 and stamp_times(c)[0].tolist() == host.tolist()
    part = c.corrected(np.array([5, -1, 7, -1]), np.zeros(4), "arrival")
    times, n = stamp_times(part)
    assert times.tolist() == [5, 1001, 7, 1003] and n == 2


class Agent:
    """A simulated agent: raw wire messages on a DEALER, in the order (and with the repeats) the test says."""

    def __init__(self, endpoint, name, infos, utc_ns, mono_ns):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.sid, self.mid = uuid.uuid4().hex[:12], 0
        self.sock.send_multipart(wire.encode_hello(name, self.sid, infos, "test", utc_ns, mono_ns))

    def send(self, encode, *args, mid=None):
        if mid is None:
            self.mid += 1
        self.sock.send_multipart(encode(self.sid, self.mid if mid is None else mid, *args))

    def close(self):
        self.sock.close(0)


def _inlet(source_id):
    found = pylsl.resolve_byprop("source_id", source_id, 1, 10.0)
    assert found, f"no LSL outlet with source id {source_id}"
    inlet = pylsl.StreamInlet(found[0], max_buflen=60, recover=False)
    inlet.open_stream(timeout=5.0)
    return inlet


def _wait(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.01)
    return cond()


@needs_lsl
def test_every_recorded_sample_once_with_utc_mapped_stamps_and_metadata_and_a_restart_keeps_the_source_id(
        tmp_path):
    tag = uuid.uuid4().hex[:6]
    agent = f"pi-{tag}"
    eeg = StreamInfo("eeg", "other", 250.0, 4, "float32", ("Fz", "Cz", "Pz", "Oz"), ("uV",) * 4, "amp-7",
                     quality=(("lsl_type", "EEG"),))
    mk = StreamInfo("mk", "marker", 0.0, 1, "string", ("event",))
    col = Collector("tcp://127.0.0.1:0", tmp_path, flush_s=0.01)
    tap = col.lsl = LslTap(f"lab{tag}-", "col-a", remeasure_s=3600.0).open()
    stop = threading.Event()
    t = threading.Thread(target=col.run, args=(stop,), daemon=True)
    t.start()
    mono0 = time.monotonic_ns() - 3 * NS
    utc0 = time.time_ns() - 3 * NS + 250_000_000  # the agent's UTC then (its clock 250 ms ahead of ours)
    a = utc0 - mono0
    sim = Agent(col.endpoint, agent, [eeg, mk], utc0, mono0)
    try:
        sim.send(wire.encode_meta, "_clock", {"note": "first message: the outlets open"})
        inlet = _inlet(f"synchub-collector:{agent}:eeg")
        minlet = _inlet(f"synchub-collector:{agent}:mk")
        info = inlet.info(timeout=5.0)
        rng = np.random.default_rng(3)
        data = rng.normal(0, 10, (200, 4)).astype(np.float32)
        ref = mono0 + 1_000_000 + np.rint(np.arange(200) * NS / 250.0).astype(np.int64) + 37

        def chunk(lo, hi):
            return Chunk("eeg", lo, data[lo:hi], ref[lo:hi] - 900, ref[lo:hi] + 4_000_000, ref[lo:hi],
                         np.full(hi - lo, 500), method="probes")

        sim.send(wire.encode_chunk, chunk(0, 50))
        sim.send(wire.encode_chunk, chunk(50, 100))
        sim.send(wire.encode_chunk, chunk(50, 100), mid=sim.mid)  # a resend: a duplicate message
        sim.send(wire.encode_chunk, chunk(80, 150))  # overlaps: 80..99 are duplicate samples
        bad = Chunk("eeg", 150, np.zeros((3, 2), np.float32), ref[:3], ref[:3], ref[:3], np.zeros(3))
        sim.send(wire.encode_chunk, bad)  # refused (schema): not recorded, not published
        sim.send(wire.encode_meta, "_clock", {"utc_minus_mono_ns": a + 5_000_000})  # NTP said: 5 ms later
        sim.send(wire.encode_chunk, chunk(150, 200))
        mref = ref[[10, 160]]
        sim.send(wire.encode_chunk, Chunk("mk", 0, ["start", "stop"], mref, mref, mref, np.zeros(2, np.int64)))
        got, stamps = pull_all(inlet, 200, then_s=0.3)
        mgot, mstamps = pull_all(minlet, 2, then_s=0.3)
        c = tap.utc_minus_lsl_ns
        sim.send(wire.encode_bye)
        assert _wait(lambda: not tap.outlets), "the ended session's outlets stay open"
    finally:
        sim.close()
    # every recorded sample once, in order, its value and its stamp
    assert len(stamps) == 200 and np.array_equal(np.asarray(got, np.float32), data)
    want = lsl_stamps(ref, a - c)
    want[150:] += 0.005  # after the update, the better mapping
    assert np.abs(np.asarray(stamps) - want).max() < 1e-9
    mwant = lsl_stamps(mref, a + 5_000_000 - c)  # sent after the update
    assert [m[0] for m in mgot] == ["start", "stop"] and np.abs(np.asarray(mstamps) - mwant).max() < 1e-9
    # the agent was this host (ref on our CLOCK_MONOTONIC) with its UTC 250 ms ahead: its stamps are 250 ms late
    mono_to_lsl = lsl_clock_offset_ns(pylsl.local_clock)
    assert abs(stamps[0] - (ref[0] + mono_to_lsl) / NS - 0.25) < 0.005
    assert tap.published == {f"{agent}/eeg": 200, f"{agent}/mk": 2} and tap.counts["errors"] == 0
    # the metadata LabRecorder writes: name, type, rate, channels, the agent, what the stamps are
    assert (info.name(), info.type(), info.channel_count(), info.nominal_srate()) == (
        f"lab{tag}-{agent}/eeg", "EEG", 4, 250.0)
    assert info.channel_format() == pylsl.cf_float32
    desc = info.desc()
    ch, labels = desc.child("channels").first_child(), []
    while not ch.empty():
        labels.append((ch.child_value("label"), ch.child_value("unit")))
        ch = ch.next_sibling()
    assert labels == [(x, "uV") for x in ("Fz", "Cz", "Pz", "Oz")]
    meta = desc.child("synchub")
    assert meta.child_value("agent") == agent and meta.child_value("collector") == "col-a"
    assert "NTP/PTP" in meta.child_value("clock_accuracy") and "UTC" in meta.child_value("timestamps")
    # the agent restarts: a new session, the same source id (LabRecorder re-attaches)
    sim2 = Agent(col.endpoint, agent, [eeg, mk], utc0 + 10 * NS, mono0 + 10 * NS)
    try:
        sim2.send(wire.encode_meta, "_clock", {"note": "restarted"})
        inlet2 = _inlet(f"synchub-collector:{agent}:eeg")
        sim2.send(wire.encode_chunk, chunk(0, 20))
        got2, stamps2 = pull_all(inlet2, 20, then_s=0.3)
        name2 = inlet2.info(timeout=5.0).name()
    finally:
        sim2.close()
        stop.set()
        t.join(10)
        col.close()
        tap.close()
    assert len(stamps2) == 20 and np.abs(np.asarray(stamps2) - lsl_stamps(ref[:20], a - c)).max() < 1e-9
    assert name2 == f"lab{tag}-{agent}/eeg" and np.array_equal(np.asarray(got2, np.float32), data[:20])


@needs_lsl
def test_the_collector_command_with_lsl_outlet_republishes_a_real_agent_transport_session(tmp_path):
    """``synchub collector --lsl-outlet --lsl-prefix``, its own process; the agent's real ``Sender``; the stamps are
    the recording's own UTC mapping (its ``synchub.session`` metadata) onto this host's LSL clock."""
    tag = uuid.uuid4().hex[:6]
    log = open(tmp_path / "collector.log", "w")  # noqa: SIM115 - closed below
    p = start_collector(tmp_path / "rec", free_port(), "--insecure", "--lsl-outlet", "--lsl-prefix", f"c{tag}-", log=log)
    info = StreamInfo("imu", "imu", 100.0, 3, "float32", ("x", "y", "z"))
    sender = Sender(p.args[p.args.index("--bind") + 1], f"rig-{tag}", [info])
    try:
        sender.connect(5)
        t0 = time.monotonic_ns()
        data = np.arange(300, dtype=np.float32).reshape(100, 3)
        ref = t0 + np.arange(100, dtype=np.int64) * 10_000_000
        sender.send_chunk(Chunk("imu", 0, data[:10], ref[:10], ref[:10], ref[:10], np.zeros(10, np.int64)))
        inlet = _inlet(f"synchub-collector:rig-{tag}:imu")
        for k in range(10, 100, 10):
            sender.send_chunk(Chunk("imu", k, data[k:k + 10], ref[k:k + 10], ref[k:k + 10], ref[k:k + 10],
                                    np.zeros(10, np.int64)))
        got, stamps = pull_all(inlet, 90, then_s=0.3)
        name = inlet.info(timeout=5.0).name()
        assert sender.close(10)
    finally:
        code = stop(p)
        log.close()
    assert code == 0 and name == f"c{tag}-rig-{tag}/imu"
    assert np.array_equal(np.asarray(got, np.float32), data[10:])  # the first chunk went out before the inlet came
    md = next(m for n, m in read_session(sorted((tmp_path / "rec").glob("*.mcap")))["metadata"] if n == "synchub.session")
    a = int(md["agent_utc_ns"]) - int(md["agent_mono_ns"])
    c = -clock_offset_ns(pylsl.local_clock, time.time_ns)  # this host's UTC - LSL clock, as the collector measured it
    assert np.abs(np.asarray(stamps) - lsl_stamps(ref[10:], a - c)).max() < 0.001
    assert "LSL outlets closed" in (tmp_path / "collector.log").read_text()


@needs_lsl
def test_a_crashed_agents_next_session_takes_its_outlets_over_and_forgotten_sessions_close_theirs():
    tag = uuid.uuid4().hex[:6]
    tap = LslTap(f"t{tag}-").open()
    eeg = StreamInfo("eeg", "other", 100.0, 2, "float32")

    def session(sid, info=eeg):
        s = Ledger(sid, f"a{tag}", "")
        s.streams, s.hello_env = {"eeg": info}, {"utc_ns": 2 * NS, "mono_ns": NS}
        tap.took(s, SimpleNamespace(kind="meta", env={"meta": {}}))
        return s

    try:
        session("s1")
        first = tap.outlets[(f"a{tag}", "eeg")][0]
        session("s2")  # no bye from s1 (it crashed): the same outlet, now s2's
        assert tap.outlets[(f"a{tag}", "eeg")][0] is first and tap.outlets[(f"a{tag}", "eeg")][2] == "s2"
        tap.sweep(["s2"], every_s=0)
        assert len(tap.outlets) == 1
        session("s3", StreamInfo("eeg", "other", 200.0, 2, "float32"))  # another rate: a new outlet
        assert tap.outlets[(f"a{tag}", "eeg")][0] is not first
        tap.sweep([], every_s=0)  # the collector forgot the session (silent too long)
        assert not tap.outlets
        # whatever fails in the tap is counted and logged, never raised into the recording
        tap.took(session("s4"), SimpleNamespace(kind="chunk", chunk=None, env={}))
        assert tap.counts["errors"] == 1
    finally:
        tap.close()


def test_lsl_outlet_without_pylsl_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pylsl", None)
    code = main(["collector", "--insecure", "--bind", "tcp://127.0.0.1:0", "--out", str(tmp_path), "--lsl-outlet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "synchub[lsl]" in err[0] and err[0].startswith("synchub collector:")


def test_lsl_prefix_without_lsl_outlet_is_one_line(tmp_path, capsys):
    code = main(["collector", "--insecure", "--out", str(tmp_path), "--lsl-prefix", "lab-"])
    assert code == 2 and capsys.readouterr().err.strip() == "synchub collector: --lsl-prefix: only with --lsl-outlet"
