"""One key cannot stop another: sessions per key, the file budget under RLIMIT_NOFILE, in-flight bytes shared per
key, finished sessions forgotten (memory flat); a wrong key is logged on the collector and the agent says
"refused: key not allowed"."""

from __future__ import annotations

import shutil
import time
from collections import Counter

import numpy as np
import pytest
import zmq
from support.procs import free_port, start_collector, stop

from synchub.agent.collector.admission import Admission, SessionView, file_budget
from synchub.agent.collector.server import Collector
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.transport import wire
from synchub.agent.transport.security import ClientKeys, new_pair
from synchub.agent.transport.sender import Sender
from synchub.agent.transport.session import TransportError

INFO = [StreamInfo("x", "imu", 1.0, 1)]


def _v(sid, user="a", closed=False, last_rx=0.0, closed_at=0.0, has_file=False):
    return SessionView(sid, user, closed, last_rx, closed_at, has_file)


def test_admission_rules():
    a = Admission(max_open_files=2, max_sessions_per_key=2, key_credit_bytes=64 << 20, idle_s=100, linger_s=5)
    views = [_v("1"), _v("2"), _v("3", closed=True), _v("4", user="b")]
    assert "too many sessions for this key (2 open" in a.refuse_hello("a", views)
    assert a.refuse_hello("b", views) == "" and a.refuse_hello("c", views) == ""
    assert a.credit_bytes("a", Counter(a=2), 1 << 30) == 32 << 20 and a.credit_bytes("z", Counter(), 8 << 20) == 8 << 20
    files = [_v("1", last_rx=10.0, has_file=True), _v("2", last_rx=9.0, has_file=True)]
    assert a.file_to_free(files[:1], now=10.0) == ""  # room
    assert a.file_to_free(files, now=10.5) is None  # both busy: wait
    assert a.file_to_free(files, now=12.0) == "2"  # the one silent the longest
    assert a.evictable([_v("1", closed=True, closed_at=1.0, last_rx=1.0), _v("2", last_rx=50.0),
                        _v("3", last_rx=-60.0)], now=50.0) == ["1", "3"]
    assert file_budget(1024) == 480 and file_budget(10) == 4


def test_finished_sessions_are_forgotten(tmp_path):
    col = Collector("tcp://127.0.0.1:0", tmp_path / "rec", flush_s=0.01,
                    admission=Admission(64, linger_s=0.2, idle_s=600))
    ctx = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.connect(col.endpoint)
    c = Chunk("x", 0, np.zeros((1, 1), np.float32), [0], [0])
    try:
        for i in range(150):
            sid = f"s{i:04d}"
            for frames in (wire.encode_hello("a", sid, INFO, "0", 0, 0), wire.encode_chunk(sid, 1, c),
                           wire.encode_bye(sid, 2)):
                d.send_multipart(frames)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (col.counts["messages"] < 450 or col.sessions):
            col.poll_once()
            col.flush()
            time.sleep(0.01)
        assert col.counts["samples"] == 150 and not col.sessions and not col.parts
    finally:
        d.close(0)
        ctx.term()
        col.close()


@pytest.mark.slow
def test_one_key_with_1100_sessions_cannot_lock_out_another(tmp_path):
    keys, allow = tmp_path / "keys", tmp_path / "allowed"
    allow.mkdir()
    for name in ("collector", "hog", "good", "stranger"):
        new_pair(name, keys)
    shutil.copy(keys / "hog.key", allow)
    shutil.copy(keys / "good.key", allow)
    port, log = free_port(), tmp_path / "collector.log"
    col = start_collector(tmp_path / "rec", port, "--secret-key", str(keys / "collector.key_secret"), "--allow-dir",
                          str(allow), log=open(log, "w"), nofile=256)
    endpoint = f"tcp://127.0.0.1:{port}"
    ctx = zmq.Context()
    hog = ctx.socket(zmq.DEALER)
    hog.setsockopt(zmq.LINGER, 0)
    ClientKeys.load(keys / "hog.key_secret", keys / "collector.key").apply_client(hog)
    hog.connect(endpoint)
    c = Chunk("x", 0, np.zeros((1, 1), np.float32), [0], [0])
    try:
        for i in range(1100):
            sid = f"hog{i:05d}"
            hog.send_multipart(wire.encode_hello("hog", sid, INFO, "0", 0, 0))
            hog.send_multipart(wire.encode_chunk(sid, 1, c))
        replies = Counter()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and replies["welcome"] + replies["refuse"] < 1100:
            if hog.poll(200):
                replies[wire.decode(hog.recv_multipart()).kind] += 1
        assert replies["welcome"] == 32 and replies["refuse"] >= 1068, replies
        good = Sender(endpoint, "good", INFO, spool_dir=tmp_path / "spool",
                      curve=ClientKeys.load(keys / "good.key_secret", keys / "collector.key"))
        good.connect(timeout=15)
        good.send_chunk(c)
        assert good.close(15)
        stranger = Sender(endpoint, "stranger", INFO, spool_dir=tmp_path / "spool2", hello_timeout_s=1.0,
                          curve=ClientKeys.load(keys / "stranger.key_secret", keys / "collector.key"))
        with pytest.raises(TransportError, match="refused: key not allowed"):
            stranger.connect(timeout=4)
        stranger.close(0.5)
        assert col.poll() is None
    finally:
        hog.close(0)
        ctx.term()
        stop(col)
    text = log.read_text()
    assert "Traceback" not in text and "Too many open files" not in text
    assert "too many sessions for this key" in text
    assert "is not in the allow-list" in text
    assert len(list((tmp_path / "rec").glob("good-*.mcap"))) == 1


def test_long_sessions_roll_to_new_parts_and_lose_nothing(tmp_path):
    """The MCAP writer indexes every chunk until the file is finished: a part ends after ``part_chunks``."""
    from synchub.agent.formats.mcap_read import read_session

    col = Collector("tcp://127.0.0.1:0", tmp_path / "rec", flush_s=0.0, part_chunks=3)
    ctx = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.connect(col.endpoint)
    try:
        d.send_multipart(wire.encode_hello("a", "long", INFO, "0", 0, 0))
        for i in range(12):
            c = Chunk("x", i * 4, np.zeros((4, 1), np.float32), np.arange(4) + i * 4, np.arange(4) + i * 4)
            d.send_multipart(wire.encode_chunk("long", i + 1, c))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and ("long" not in col.sessions
                                                    or col.sessions["long"].durable_mid < i + 1):
                col.poll_once()
                col.flush()
                time.sleep(0.005)
        d.send_multipart(wire.encode_bye("long", 13))
        deadline = time.monotonic() + 5
        while "long" in col.parts or not col.sessions["long"].closed:
            assert time.monotonic() < deadline
            col.poll_once()
            col.flush()
            time.sleep(0.005)
    finally:
        d.close(0)
        ctx.term()
        col.close()
    files = sorted((tmp_path / "rec").glob("*-long-p*.mcap"))
    assert len(files) >= 3
    seq = read_session(files)["streams"]["x"]["seq"]
    assert np.array_equal(np.sort(seq), np.arange(48))
