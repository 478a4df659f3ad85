"""Transport behaviour on real loopback sockets: failover, credit window, go-back-N rewind, live view."""

import threading
import time

import numpy as np
import pytest
import zmq

from synchub.agent.collector.server import Collector
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.formats.mcap_read import read_session
from synchub.agent.transport import wire
from synchub.agent.transport.sender import Sender

INFO = [StreamInfo("imu", "imu", 100.0, 4)]


def _chunk(seq, n=10):
    return Chunk("imu", seq, np.full((n, 4), seq, np.float32), np.arange(seq, seq + n), np.arange(seq, seq + n))


def _run(col):
    stop = threading.Event()
    t = threading.Thread(target=col.run, args=(stop,), daemon=True)
    t.start()
    return lambda: (stop.set(), t.join(5), col.close())


def _dead_endpoint():
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.ROUTER)
    port = s.bind_to_random_port("tcp://127.0.0.1")
    s.close(0)
    return f"tcp://127.0.0.1:{port}"


def test_failover_to_the_next_endpoint(tmp_path):
    col = Collector("tcp://127.0.0.1:0", tmp_path)
    done = _run(col)
    sender = Sender([_dead_endpoint(), col.endpoint], "fo", INFO, hello_timeout_s=0.3)
    for k in range(20):
        sender.send_chunk(_chunk(k * 10))
    sender.connect(5)
    assert sender.close(10)
    assert sender.stats()["reconnects"] >= 1 and sender.endpoint == col.endpoint
    done()
    assert np.array_equal(read_session(list(tmp_path.glob("*.mcap")))["streams"]["imu"]["seq"], np.arange(200))


def test_credit_window_bounds_messages_in_flight(tmp_path):
    col = Collector("tcp://127.0.0.1:0", tmp_path, credit=4, flush_s=0.02)
    done = _run(col)
    sender = Sender(col.endpoint, "cr", INFO)
    sender.connect(5)
    for k in range(200):
        sender.send_chunk(_chunk(k * 10))
    assert sender.close(20)
    st = sender.stats()
    assert st["max_inflight"] <= 4 and st["acked"] == 201
    done()
    assert len(read_session(list(tmp_path.glob("*.mcap")))["streams"]["imu"]["seq"]) == 2000


def test_out_of_order_message_triggers_rewind(tmp_path):
    col = Collector("tcp://127.0.0.1:0", tmp_path)
    done = _run(col)
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(col.endpoint)
    s.send_multipart(wire.encode_hello("raw", "sess-r", INFO, "0", 0, 0))
    assert s.poll(3000) and wire.decode(s.recv_multipart()).kind == "welcome"
    s.send_multipart(wire.encode_chunk("sess-r", 2, _chunk(10)))  # mid 1 never arrived
    assert s.poll(3000)
    ack = wire.decode(s.recv_multipart())
    assert ack.kind == "ack" and ack.env["rewind"] is True and ack.env["next"] == 1 and ack.env["acked"] == 0
    s.send_multipart(wire.encode_chunk("sess-r", 1, _chunk(0)))
    s.send_multipart(wire.encode_chunk("sess-r", 2, _chunk(10)))
    s.send_multipart(wire.encode_bye("sess-r", 3))
    deadline = time.monotonic() + 5
    acked = 0
    while acked < 3 and time.monotonic() < deadline:
        if s.poll(200):
            m = wire.decode(s.recv_multipart())
            acked = max(acked, m.env.get("acked", 0))
    assert acked == 3
    s.close(0)
    assert col.stats()["sessions"]["sess-r"]["counts"]["out_of_order"] == 1
    done()
    assert np.array_equal(read_session(list(tmp_path.glob("*.mcap")))["streams"]["imu"]["seq"], np.arange(20))


def test_live_view_pub_republishes_chunks(tmp_path):
    col = Collector("tcp://127.0.0.1:0", tmp_path, live="tcp://127.0.0.1:0")
    done = _run(col)
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"/lv/")
    sub.connect(col.live_endpoint)
    sender = Sender(col.endpoint, "lv", INFO)
    sender.connect(5)
    # PUB/SUB has no handshake (slow joiner; the live view is lossy by design): send until the first one arrives
    k, first = 0, None
    deadline = time.monotonic() + 10
    while first is None and time.monotonic() < deadline:
        sender.send_chunk(_chunk(k * 10))
        k += 1
        if sub.poll(100):
            first = wire.decode(sub.recv_multipart()[1:]).chunk.seq
    assert first is not None
    for j in range(k, k + 5):
        sender.send_chunk(_chunk(j * 10))
    assert sender.close(10)
    got = []
    while sub.poll(500):
        frames = sub.recv_multipart()
        assert frames[0] == b"/lv/imu"
        got.append(wire.decode(frames[1:]).chunk.seq)
    sub.close(0)
    done()
    assert got[-5:] == [j * 10 for j in range(k, k + 5)] and got == sorted(got)


def test_full_spool_drops_are_recorded_as_gaps(tmp_path):
    port = int(_dead_endpoint().rsplit(":", 1)[1])
    infos = [StreamInfo("cam", "video", 30.0, 4), StreamInfo("trig", "trigger", 0.0, 4)]
    one = sum(memoryview(f).nbytes for f in wire.encode_chunk("x" * 16, 1, _chunk(0)))
    sender = Sender(f"tcp://127.0.0.1:{port}", "full", infos, spool_dir=tmp_path / "spool",
                    spool_max_bytes=one * 60, hello_timeout_s=0.2, backoff_max_s=0.2)
    for k in range(40):
        for name in ("cam", "trig"):
            c = _chunk(k * 10)
            c.stream = name
            sender.send_chunk(c)
    dropped = sender.stats()["spool"]
    assert dropped["dropped_samples"] > 0 and dropped["drops_by_stream"].keys() == {"cam"}  # video goes first
    col = Collector(f"tcp://127.0.0.1:{port}", tmp_path / "out")
    done = _run(col)
    assert sender.close(20)
    done()
    rec = read_session(list((tmp_path / "out").glob("*.mcap")))
    assert np.array_equal(rec["streams"]["trig"]["seq"], np.arange(400))
    cam = set(rec["streams"]["cam"]["seq"].tolist())
    gaps = [g for g in rec["gaps"] if g["stream"] == "cam"]
    assert all(g["cause"] == "spool_full" for g in gaps)
    covered = {s for g in gaps for s in range(g["seq"] - g["count"], g["seq"])}
    assert not cam & covered and cam | covered == set(range(400))  # every sample: recorded once, or in a gap
    assert sum(g["count"] for g in gaps) == dropped["dropped_samples"]


def test_sender_from_agent_settings(tmp_path):
    from synchub.agent.config.schema import AgentSettings
    from synchub.agent.transport.configure import sender_from_settings
    from synchub.agent.transport.security import new_pair
    from synchub.agent.transport.session import TransportError

    with pytest.raises(TransportError, match="--insecure"):
        sender_from_settings(AgentSettings(), INFO, env={})
    s = sender_from_settings(AgentSettings(name="x"), INFO, insecure=True, env={"STATE_DIRECTORY": str(tmp_path)})
    assert s.spool.dir == tmp_path / "spool" and s.curve is None
    s.close(0.1)
    new_pair("a", tmp_path / "k")
    new_pair("c", tmp_path / "k")
    cfg = AgentSettings(curve_secret_key=str(tmp_path / "k" / "a.key_secret"),
                        collector_public_key=str(tmp_path / "k" / "c.key"), spool_dir=str(tmp_path / "sp"),
                        spool_max_mb=2.0)
    s = sender_from_settings(cfg, INFO, env={})
    assert s.curve is not None and s.spool.dir == tmp_path / "sp" and s.spool.max_bytes == 2 << 20
    s.close(0.1)
    with pytest.raises(TransportError, match="both"):
        sender_from_settings(AgentSettings(curve_secret_key="x"), INFO, env={})
