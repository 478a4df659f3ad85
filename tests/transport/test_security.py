"""CURVE Ironhouse: allow-listed agents get in, unknown keys are refused, a collector whose authenticator would let
a stranger in refuses to start, and a session stays bound to the key that opened it."""

import shutil
import threading
import time

import numpy as np
import pytest
import zmq
from zmq.auth.thread import ThreadAuthenticator

from synchub.agent.collector.server import Collector
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.formats.mcap_read import read_session
from synchub.agent.transport import wire
from synchub.agent.transport.security import ClientKeys, SecurityError, ServerKeys, new_pair
from synchub.agent.transport.sender import Sender
from synchub.agent.transport.session import TransportError
from synchub.cli import main

INFO = [StreamInfo("imu", "imu", 100.0, 2)]


@pytest.fixture
def keys(tmp_path):
    k = tmp_path / "keys"
    allow = tmp_path / "allowed"
    allow.mkdir()
    new_pair("collector", k)
    new_pair("good", k)
    new_pair("stranger", k)
    shutil.copy(k / "good.key", allow / "good.key")
    return k, allow


def _start(col):
    stop = threading.Event()
    t = threading.Thread(target=col.run, args=(stop,), daemon=True)
    t.start()
    return stop, t


def _chunk(seq, n=5):
    return Chunk("imu", seq, np.ones((n, 2), np.float32), np.arange(seq, seq + n), np.arange(seq, seq + n))


def test_known_key_records_unknown_key_refused(keys, tmp_path):
    k, allow = keys
    col = Collector("tcp://127.0.0.1:0", tmp_path / "out", curve=ServerKeys.load(k / "collector.key_secret", allow),
                    insecure=False)
    stop, t = _start(col)
    good = Sender(col.endpoint, "good", INFO, curve=ClientKeys.load(k / "good.key_secret", k / "collector.key"))
    good.connect(5)
    bad = Sender(col.endpoint, "stranger", INFO, hello_timeout_s=0.5,
                 curve=ClientKeys.load(k / "stranger.key_secret", k / "collector.key"))
    for i in range(10):
        good.send_chunk(_chunk(i * 5))
        bad.send_chunk(_chunk(i * 5))
    with pytest.raises(TransportError, match="refused: key not allowed"):
        bad.connect(1.5)
    assert good.close(10)
    assert not bad.close(0.2)
    st = col.stats()
    assert [s["agent"] for s in st["sessions"].values()] == ["good"]
    stop.set()
    t.join(5)
    col.close()
    s = read_session(list((tmp_path / "out").glob("*.mcap")))
    assert np.array_equal(s["streams"]["imu"]["seq"], np.arange(50)) and s["agents"] == {"good"}


def test_session_is_bound_to_its_key(keys, tmp_path):
    k, allow = keys
    shutil.copy(k / "stranger.key", allow / "other.key")  # a second allowed agent
    col = Collector("tcp://127.0.0.1:0", tmp_path / "out", curve=ServerKeys.load(k / "collector.key_secret", allow),
                    insecure=False)
    stop, t = _start(col)
    good = Sender(col.endpoint, "good", INFO, curve=ClientKeys.load(k / "good.key_secret", k / "collector.key"))
    good.connect(5)
    # another allowed agent tries to inject into good's session (hello + data with good's session id)
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    ClientKeys.load(k / "stranger.key_secret", k / "collector.key").apply_client(s)
    s.connect(col.endpoint)
    s.send_multipart(wire.encode_hello("evil", good.session, INFO, "0", 0, 0))
    assert s.poll(3000)
    reply = wire.decode(s.recv_multipart())
    assert reply.kind == "refuse" and "another key" in reply.env["reason"]
    s.send_multipart(wire.encode_chunk(good.session, 1, _chunk(1000)))
    good.send_chunk(_chunk(0))
    assert good.close(10)
    s.close(0)
    ctx.term()
    stop.set()
    t.join(5)
    assert col.bad["identity"] >= 2
    col.close()
    rec = read_session(list((tmp_path / "out").glob("*.mcap")))
    assert np.array_equal(rec["streams"]["imu"]["seq"], np.arange(5))


def test_self_test_refuses_an_authenticator_that_lets_anyone_in(keys, tmp_path):
    k, allow = keys
    sk = ServerKeys.load(k / "collector.key_secret", allow)
    ctx = zmq.Context()
    sk.auth = ThreadAuthenticator(ctx)
    sk.auth.start()
    sk.auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)  # misconfigured: any key
    with pytest.raises(SecurityError, match="unknown CURVE key was accepted"):
        Collector("tcp://127.0.0.1:0", tmp_path / "out", curve=sk, insecure=False, context=ctx)
    ctx.term()


def test_curve_server_without_authenticator_is_refused(keys):
    k, allow = keys
    sk = ServerKeys.load(k / "collector.key_secret", allow)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    with pytest.raises(SecurityError, match="authenticator"):
        sk.apply_server(sock)
    sock.close(0)
    ctx.term()


def test_collector_cli_needs_keys_or_insecure(tmp_path, capsys):
    assert main(["collector", "--out", str(tmp_path), "--bind", "tcp://127.0.0.1:0"]) == 2
    assert "--insecure" in capsys.readouterr().err
    assert main(["collector", "--out", str(tmp_path), "--secret-key", str(tmp_path / "nope")]) == 2
    assert main(["keys", "new", "bad name!", "--dir", str(tmp_path)]) == 2
    assert main(["keys", "new", "a1", "--dir", str(tmp_path)]) == 0
    assert main(["keys", "new", "a1", "--dir", str(tmp_path)]) == 2  # no silent overwrite
    assert (tmp_path / "a1.key_secret").stat().st_mode & 0o077 == 0


def test_a_forgotten_session_is_resumed_only_by_its_own_key(keys, tmp_path):
    """Once the collector has forgotten a session (bye + linger, or silence), its part files still say whose it is:
    another allowed key sending a hello with that session id (ids travel on the live socket) is refused and cannot
    write into the recording; the owner's own key resumes it."""
    from synchub.agent.collector.admission import Admission

    k, allow = keys
    new_pair("other", k)
    shutil.copy(k / "other.key", allow / "other.key")
    col = Collector("tcp://127.0.0.1:0", tmp_path / "out", curve=ServerKeys.load(k / "collector.key_secret", allow),
                    insecure=False, flush_s=0.01, admission=Admission(64, linger_s=0.0, idle_s=600))
    stop, t = _start(col)
    ctx = zmq.Context()
    socks = []
    try:
        def dealer(name):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            ClientKeys.load(k / f"{name}.key_secret", k / "collector.key").apply_client(s)
            s.connect(col.endpoint)
            socks.append(s)
            return s

        def answers(s, timeout=5.0):
            got, deadline = [], time.monotonic() + timeout
            while time.monotonic() < deadline and not any(m.kind in ("welcome", "refuse") for m in got):
                if s.poll(100):
                    got.append(wire.decode(s.recv_multipart()))
            return got

        owner = dealer("good")
        for frames in (wire.encode_hello("good", "sess1", INFO, "0", 0, 0), wire.encode_chunk("sess1", 1, _chunk(0)),
                       wire.encode_bye("sess1", 2)):
            owner.send_multipart(frames)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and ("sess1" in col.sessions or not col.files):
            time.sleep(0.05)
        assert "sess1" not in col.sessions and col.files  # recorded, finished, forgotten
        thief = dealer("other")
        thief.send_multipart(wire.encode_hello("good", "sess1", INFO, "0", 0, 0))
        got = answers(thief)
        assert [m.kind for m in got if m.kind in ("welcome", "refuse")] == ["refuse"], got
        assert col.bad["identity"] == 1 and "sess1" not in col.sessions
        again = dealer("good")
        again.send_multipart(wire.encode_hello("good", "sess1", INFO, "0", 0, 0))
        assert [m.kind for m in answers(again) if m.kind in ("welcome", "refuse")] == ["welcome"]
    finally:
        for s in socks:
            s.close(0)
        ctx.term()
        stop.set()
        t.join(10)
        col.close()
