"""Sender -> Collector over real loopback ZeroMQ, MCAP files read back with the mcap library."""

import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from mcap.reader import make_reader

from synchub.agent.collector.server import Collector
from synchub.agent.core.stream import Chunk, Gap, StreamInfo
from synchub.agent.formats.mcap_layout import SCHEMAS
from synchub.agent.formats.mcap_read import read_session
from synchub.agent.transport import wire
from synchub.agent.transport.sender import Sender
from synchub.agent.transport.session import TransportError

STREAMS = [StreamInfo("imu", "imu", 200.0, 6), StreamInfo("audio", "audio", 16000.0, 1, "int16"),
           StreamInfo("cam", "video", 30.0, 12, "uint8", shape=(3, 4)), StreamInfo("log", "text", 0.0, 1, "string")]


class Running:
    def __init__(self, out, **kw):
        self.col = Collector("tcp://127.0.0.1:0", out, **kw)
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.col.run, args=(self.stop,), daemon=True)
        self.t.start()

    def close(self):
        self.stop.set()
        self.t.join(10)
        self.col.close()


@pytest.fixture
def collector(tmp_path):
    r = Running(tmp_path)
    yield r
    r.close()


def make_chunk(info, seq, n, rng, corrected=True):
    if info.channel_format == "string":
        data = [f"{info.name} {seq + i}" for i in range(n)]
    else:
        data = rng.integers(0, 100, (n, *info.sample_shape)).astype(info.dtype)
    dev = (seq + np.arange(n)) * 1_000_003 + 7
    host = dev + int(rng.integers(0, 1 << 40))
    c = Chunk(info.name, seq, data, dev, host, segment=np.zeros(n, np.int32))
    if corrected:
        c = c.corrected(host - 11, np.full(n, 99), "arrival")
    return c


def test_every_seq_exactly_once_and_times_bit_exact(collector, tmp_path):
    rng = np.random.default_rng(1)
    sender = Sender(collector.col.endpoint, "rig-1", STREAMS)
    sender.connect(5)
    sent = {s.name: [] for s in STREAMS}
    seqs = dict.fromkeys(sent, 0)
    for i in range(60):
        for info in STREAMS:
            n = int(rng.integers(1, 20))
            c = make_chunk(info, seqs[info.name], n, rng, corrected=(i % 3 != 0))
            sender.send_chunk(c)
            sent[info.name].append(c)
            seqs[info.name] += n
    sender.send_gap(Gap("imu", seqs["imu"], 4, "device_drop", 1, 2, "test"))
    sender.send_meta("imu", {"ntp": {"offset_ns": 12}})
    assert sender.close(10)
    collector.close()
    files = list(tmp_path.glob("*.mcap"))
    assert len(files) == 1 and files[0].name.startswith("rig-1-")
    # the mcap library reads it, with our schemas and channels
    with open(files[0], "rb") as f:
        r = make_reader(f)
        summary = r.get_summary()
        topics = sorted(c.topic for c in summary.channels.values())
        assert topics == sorted(["/rig-1/_gaps", "/rig-1/_meta"] + [f"/rig-1/{s.name}" for s in STREAMS])
        assert {s.name for s in summary.schemas.values()} == set(SCHEMAS)
        meta = {m.name: m.metadata for m in r.iter_metadata()}
        assert meta["synchub.session"]["agent"] == "rig-1"
        assert "start_utc" in meta["synchub.session"] and meta["synchub.transport"]["ended"] == "bye"
        for _, _ch, msg in r.iter_messages(topics=["/rig-1/imu"]):
            d = msgpack.unpackb(msg.data)
            first = np.frombuffer(d["ref_ns"] or d["host_ns"], "<i8")[0]
            assert msg.log_time == first and msg.publish_time == d["recv_ns"]
    sess = read_session(files)
    for info in STREAMS:
        s = sess["streams"][info.name]
        total = seqs[info.name]
        assert np.array_equal(s["seq"], np.arange(total))  # each seq exactly once, in order
        cat = lambda name, k=info.name: np.concatenate([getattr(c, name) for c in sent[k]])  # noqa: E731
        assert np.array_equal(s["device_ns"], cat("device_ns"))
        assert np.array_equal(s["host_ns"], cat("host_ns"))
        want_ref = np.concatenate([c.ref_ns if c.ref_ns is not None else np.full(c.n, -1) for c in sent[info.name]])
        assert np.array_equal(s["ref_ns"], want_ref)
        if info.channel_format == "string":
            assert s["data"] == [x for c in sent[info.name] for x in c.data]
        else:
            assert np.array_equal(s["data"], np.concatenate([c.data for c in sent[info.name]]))
            assert s["data"].dtype == info.dtype
        assert s["info"]["name"] == info.name
    assert sess["gaps"][0]["count"] == 4 and sess["gaps"][0]["cause"] == "device_drop"
    assert any(m.get("meta") == {"ntp": {"offset_ns": 12}} for m in sess["meta"])


def test_garbage_and_bad_clients_do_not_stop_the_collector(collector, tmp_path):
    ctx = zmq.Context.instance()
    bad = ctx.socket(zmq.DEALER)
    bad.setsockopt(zmq.LINGER, 0)
    bad.connect(collector.col.endpoint)
    sender = Sender(collector.col.endpoint, "good", STREAMS[:1])
    sender.connect(5)
    rng = np.random.default_rng(2)
    junk = [[b"\x00garbage"], [b"\xc1\xc1"], [msgpack.packb({"v": 1, "k": "chunk"})],
            [msgpack.packb({"v": 99, "k": "hello"})], wire.encode_ack("x", 1, 1, 1),
            wire.encode_chunk("no-such-session", 1, make_chunk(STREAMS[0], 0, 3, rng)),
            [msgpack.packb({"v": 1, "k": "hello", "session": "s", "agent": "a", "version": "1", "utc_ns": 0,
                            "mono_ns": 0, "streams": "nope"})]]
    for i in range(30):
        for j in junk:
            bad.send_multipart(j)
        sender.send_chunk(make_chunk(STREAMS[0], i * 5, 5, rng))
    # wrong schema from a session that said hello: a float64 chunk for a float32 stream, wrong channel count
    bad.send_multipart(wire.encode_hello("bad", "bad-session", STREAMS[:1], "0", 0, 0))
    wrong = make_chunk(STREAMS[0], 0, 3, rng)
    bad.send_multipart(wire.encode_chunk("bad-session", 1, Chunk("imu", 0, wrong.data.astype(np.float64),
                                                                 wrong.device_ns, wrong.host_ns)))
    bad.send_multipart(wire.encode_chunk("bad-session", 2, Chunk("imu", 0, wrong.data[:, :2], wrong.device_ns,
                                                                 wrong.host_ns)))
    # a duplicate of an already-sent message (same session and mid) is dropped, not recorded twice
    dup = wire.encode_chunk(sender.session, 1, make_chunk(STREAMS[0], 0, 5, rng))
    assert sender.flush(10)
    bad.send_multipart(dup)
    time.sleep(0.2)
    assert sender.close(10)
    bad.close(0)
    st = collector.col.stats()
    assert st["bad"]["invalid"] >= 30 * 4 and st["bad"]["unknown_session"] >= 30
    assert st["bad"]["wrong_direction"] >= 30
    assert st["counts"]["duplicate_messages"] >= 1
    assert st["bad"]["schema_mismatch"] == 2 and st["sessions"]["bad-session"]["counts"]["schema_mismatch"] == 2
    collector.close()
    s = read_session(list(tmp_path.glob("good-*.mcap")))["streams"]["imu"]
    assert np.array_equal(s["seq"], np.arange(150))


def test_unreachable_collector_gives_clear_error():
    sender = Sender("tcp://127.0.0.1:1", "lonely", STREAMS[:1], hello_timeout_s=0.3)
    with pytest.raises(TransportError, match="not reachable at tcp://127.0.0.1:1"):
        sender.connect(0.8)
    assert not sender.close(0.2)


def test_overlapping_samples_are_deduplicated(collector, tmp_path):
    sender = Sender(collector.col.endpoint, "a", STREAMS[:1])
    rng = np.random.default_rng(3)
    c = make_chunk(STREAMS[0], 0, 10, rng)
    sender.send_chunk(c)
    sender.send_chunk(c.slice(5, 10))  # all duplicates
    c2 = make_chunk(STREAMS[0], 8, 10, rng)  # seq 8..17: 8, 9 are duplicates
    sender.send_chunk(c2)
    assert sender.close(10)
    st = collector.col.stats()["sessions"][sender.session]["counts"]
    assert st["duplicate_samples"] == 5 + 2
    collector.close()
    s = read_session(list(tmp_path.glob("*.mcap")))["streams"]["imu"]
    assert np.array_equal(s["seq"], np.arange(18))
    assert np.array_equal(s["device_ns"][10:], c2.device_ns[2:])


def test_two_agents_two_files_and_clashing_names(collector, tmp_path):
    rng = np.random.default_rng(4)
    senders = [Sender(collector.col.endpoint, name, STREAMS[:1]) for name in ("left", "right")]
    for k in range(20):
        for s in senders:
            s.send_chunk(make_chunk(STREAMS[0], k * 3, 3, rng))
    assert all(s.close(10) for s in senders)
    collector.close()
    files = sorted(tmp_path.glob("*.mcap"))
    assert [f.name.split("-")[0] for f in files] == ["left", "right"]
    both = read_session(files)["streams"]
    assert sorted(both) == ["left/imu", "right/imu"]
    assert all(np.array_equal(v["seq"], np.arange(60)) for v in both.values())
    assert sorted(read_session(files[:1])["streams"]) == ["imu"]
