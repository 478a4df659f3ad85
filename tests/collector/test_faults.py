"""Fault tests with real processes on loopback: a collector killed (-9) and down for a while, an agent killed and
restarted, strangers and bad clients.  Each checks that every sample is in the MCAP set of files exactly once."""

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
from support.paths import ROOT, TESTS
from support.procs import free_port, start_collector, stop

from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.formats.mcap_read import read_session
from synchub.agent.transport import wire
from synchub.agent.transport.security import ClientKeys, new_pair

pytestmark = pytest.mark.slow


def start_agent(port, spool, status, *extra, log=None):
    return subprocess.Popen([sys.executable, str(TESTS / "support" / "fault_sender.py"), "--endpoint", f"tcp://127.0.0.1:{port}",
                             "--spool", str(spool), "--status", str(status), *extra],
                            stderr=log or subprocess.DEVNULL, cwd=ROOT)


def status(path):
    for _ in range(50):
        try:
            return json.loads(Path(path).read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise AssertionError(f"no status in {path}")


def wait_status(path, cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(path).exists():
            st = status(path)
            if cond(st):
                return st
        time.sleep(0.05)
    raise AssertionError(f"status condition not met within {timeout} s: {status(path)}")


def recorded(out, session):
    files = sorted(Path(out).glob(f"*-{session}-p*.mcap"))
    assert files, f"no files for session {session}"
    return read_session(files), files


def assert_exactly_once(out, session, produced):
    sess, files = recorded(out, session)
    for name, n in produced.items():
        seq = sess["streams"][name]["seq"]
        assert len(seq) == n and np.array_equal(seq, np.arange(n)), (name, n, len(seq))
    return sess, files


def test_collector_killed_and_down_for_10s(tmp_path):
    out, spool, st = tmp_path / "out", tmp_path / "spool", tmp_path / "st.json"
    port = free_port()
    clog = open(tmp_path / "collector.log", "w")
    col = start_collector(out, port, "--insecure", log=clog)
    agent = start_agent(port, spool, st, "--seconds", "15", "--rate", "1000", "--spool-max-mb", "32",
                        log=open(tmp_path / "agent.log", "w"))
    try:
        wait_status(st, lambda s: s["stats"]["acked"] > 50, 15)
        os.kill(col.pid, signal.SIGKILL)  # mid-recording
        col.wait(5)
        t_kill = time.monotonic()
        during = wait_status(st, lambda s: s["stats"]["spool"]["records"] > 1000, 15)
        assert not during["stats"]["connected"] or during["stats"]["pending"] > 0
        time.sleep(max(0.0, 10.0 - (time.monotonic() - t_kill)))  # down for 10 s
        held = status(st)
        assert held["stats"]["spool"]["records"] >= 8000 * 2 / 20 * 0.8  # ~10 s of both streams held in the spool
        col = start_collector(out, port, "--insecure", log=clog)
        assert agent.wait(60) == 0
        final = status(st)
        assert final["closed"] is True and final["stats"]["spool"]["dropped_samples"] == 0
        assert final["max_spool_bytes"] <= 32 << 20
    finally:
        stop(agent, signal.SIGKILL)
        stop(col)
    sess, files = assert_exactly_once(out, final["session"], final["produced"])
    assert len(files) == 2  # the recovered part from the killed collector and the continuation
    assert not sess["gaps"]
    assert sum(p.stat().st_size for p in spool.glob("seg-*.log")) == 0  # everything acked and reclaimed


def test_agent_killed_and_restarted_resumes_from_spool(tmp_path):
    out, spool, st1, st2 = tmp_path / "out", tmp_path / "spool", tmp_path / "st1.json", tmp_path / "st2.json"
    port = free_port()
    col = start_collector(out, port, "--insecure", log=open(tmp_path / "collector.log", "w"))
    agent = start_agent(port, spool, st1, "--seconds", "30", log=open(tmp_path / "agent1.log", "w"))
    try:
        wait_status(st1, lambda s: s["stats"]["acked"] > 20, 15)
        os.kill(col.pid, signal.SIGSTOP)  # freeze the collector so the spool holds unacked data
        time.sleep(1.5)
        s1 = status(st1)
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(5)
        os.kill(col.pid, signal.SIGCONT)
        assert s1["stats"]["pending"] > 20
        agent2 = start_agent(port, spool, st2, "--seconds", "1", log=open(tmp_path / "agent2.log", "w"))
        assert agent2.wait(60) == 0
        s2 = status(st2)
        assert s2["closed"] is True and s2["session"] != s1["session"]
    finally:
        stop(agent, signal.SIGKILL)
        stop(col)
    # the killed agent's session: everything it had handed to the sender (at least what its last status said),
    # each sample once, no holes
    sess, _ = recorded(out, s1["session"])
    for name, n in s1["produced"].items():
        seq = sess["streams"][name]["seq"]
        assert len(seq) >= n and np.array_equal(seq, np.arange(len(seq)))
    assert_exactly_once(out, s2["session"], s2["produced"])
    assert sum(p.stat().st_size for p in spool.glob("seg-*.log")) == 0 and not list(spool.glob("hello-*"))


def test_strangers_and_bad_clients_do_not_stop_the_good_agent(tmp_path):
    keys, allow = tmp_path / "keys", tmp_path / "allowed"
    allow.mkdir()
    for name in ("collector", "good", "rogue", "stranger"):
        new_pair(name, keys)
    shutil.copy(keys / "good.key", allow)
    shutil.copy(keys / "rogue.key", allow)  # allowed, but sends garbage
    out, st = tmp_path / "out", tmp_path / "st.json"
    port = free_port()
    clog = tmp_path / "collector.log"
    col = start_collector(out, port, "--secret-key", str(keys / "collector.key_secret"), "--allow-dir", str(allow),
                          log=open(clog, "w"))
    agent = start_agent(port, tmp_path / "spool", st, "--seconds", "4", "--secret-key", str(keys / "good.key_secret"),
                        "--server-key", str(keys / "collector.key"), log=open(tmp_path / "agent.log", "w"))
    ctx = zmq.Context()
    try:
        endpoint = f"tcp://127.0.0.1:{port}"
        socks = {}
        for who in ("rogue", "stranger"):
            s = socks[who] = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            ClientKeys.load(keys / f"{who}.key_secret", keys / "collector.key").apply_client(s)
            s.connect(endpoint)
        info = [StreamInfo("x", "imu", 1.0, 1)]
        socks["stranger"].send_multipart(wire.encode_hello("stranger", "stranger-session", info, "0", 0, 0))
        c = Chunk("x", 0, np.zeros((1, 1), np.float32), [0], [0])
        rogue = socks["rogue"]
        rogue.send_multipart(wire.encode_hello("rogue", "rogue-session", info, "0", 0, 0))
        assert rogue.poll(5000) and wire.decode(rogue.recv_multipart()).kind == "welcome"
        huge = wire.encode_chunk("rogue-session", 1, c)
        junk = [[b"\xff" * 100], [msgpack.packb({"v": 1, "k": "chunk", "session": "rogue-session", "mid": 1})],
                [msgpack.packb({"v": 1, "k": "gap", "session": "rogue-session", "mid": 1, "gap": [1, 2]})],
                [b"\x80" * (wire.MAX_ENVELOPE + 10)],  # oversized envelope
                [huge[0], *huge[1:3], b"\0" * (wire.MAX_FRAME + 8), *huge[4:]]]  # oversized frame
        for _ in range(5):
            for j in junk:
                rogue.send_multipart(j)
            time.sleep(0.3)
        assert not socks["stranger"].poll(500)  # the stranger never hears back
        assert agent.wait(60) == 0
        final = status(st)
        assert final["closed"] is True
        assert col.poll() is None  # still serving
    finally:
        for s in socks.values():
            s.close(0)
        ctx.term()
        stop(agent, signal.SIGKILL)
        stop(col)
    assert_exactly_once(out, final["session"], final["produced"])
    assert not list(out.glob("*stranger-session*"))
    text = clog.read_text()
    assert "dropped bad message" in text
    bad = ast.literal_eval(text.split("bad: ", 1)[1].splitlines()[0])  # the collector's closing stats line
    assert bad["invalid"] == 5 * len(junk)  # garbage, wrong schemas, oversized envelope and frame: all counted
