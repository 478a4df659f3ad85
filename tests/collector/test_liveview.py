"""The live view: the pure aggregator over published chunks, and `synchub live` against a real collector whose
--live socket has its CURVE keys: a viewer in the allow-list sees every stream, a stranger and a plain-text viewer
see nothing (one-line error, exit 2)."""

import json
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from support.paths import ROOT

from synchub.agent.collector.liveview import LiveView, table
from synchub.agent.collector.server import Collector
from synchub.agent.core.stream import Chunk, Gap, StreamInfo
from synchub.agent.transport import wire
from synchub.agent.transport.security import ClientKeys, ServerKeys, new_pair
from synchub.agent.transport.sender import Sender

NS = 1_000_000_000
INFO = [StreamInfo("imu", "imu", 100.0, 2)]


def _chunk(seq, n=10, method="triggers", unc=2_000):
    t = np.arange(seq, seq + n, dtype=np.int64) * 10_000_000
    c = Chunk("imu", seq, np.ones((n, 2), np.float32), t, t)
    return c.corrected(t, np.full(n, unc, np.int64), method)


def _msg(chunk):
    return wire.decode(wire.encode_chunk("s1", 1, chunk))


def test_live_view_rates_methods_and_unseen_chunks():
    v = LiveView(window_s=2.0)
    for k in range(5):  # 100 Hz for 2 s, one chunk of 10 every 0.1 s ... seen every 0.5 s, 4 of 5 chunks unseen
        v.add(b"/a1/imu", _msg(_chunk(k * 50)), k * NS // 2)
    v.add(b"/a1/log", wire.decode(wire.encode_gap("s1", 2, Gap("log", 0, 3, "disconnect"))), 0)  # not a chunk: counted, not shown
    v.add(b"garbage", _msg(_chunk(0)), 0)
    (row,) = v.rows(2 * NS)
    assert row == {"agent": "a1", "stream": "imu", "chunks": 5, "samples": 50, "rate_hz": 20.0, "age_s": 0.0,
                   "method": "triggers", "sigma_ns": 2000, "unseen": 160}
    assert v.bad == 2
    assert v.rows(10 * NS)[0]["rate_hz"] == 0.0  # silent past the window
    text = table(v.rows(10 * NS), "tcp://c:7101")
    assert "a1" in text and "triggers" in text and "2.0 us" in text and "(no data" not in text
    v.add(b"/a1/imu", _msg(_chunk(250, unc=10**15)), 11 * NS)  # unknown uncertainty
    assert v.rows(11 * NS)[0]["sigma_ns"] is None and "(no data yet)" in table([])


@pytest.fixture
def keys(tmp_path):
    k, allow = tmp_path / "keys", tmp_path / "allowed"
    allow.mkdir()
    for name in ("collector", "agent", "viewer", "stranger"):
        new_pair(name, k)
    shutil.copy(k / "agent.key", allow)
    shutil.copy(k / "viewer.key", allow)
    return k, allow


def _live(*args):
    return subprocess.Popen([sys.executable, "-m", "synchub.cli", "live", "--duration", "3", "--json", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_synchub_live_reads_a_curve_collector(keys, tmp_path):
    k, allow = keys
    col = Collector("tcp://127.0.0.1:0", tmp_path / "out", curve=ServerKeys.load(k / "collector.key_secret", allow),
                    insecure=False, live="tcp://127.0.0.1:0")
    stop = threading.Event()
    t = threading.Thread(target=col.run, args=(stop,), daemon=True)
    t.start()
    sender = Sender(col.endpoint, "agent", INFO, curve=ClientKeys.load(k / "agent.key_secret", k / "collector.key"))
    ep = col.live_endpoint
    viewers = {"viewer": _live("--connect", ep, "--secret-key", str(k / "viewer.key_secret"), "--server-key",
                               str(k / "collector.key")),
               "stranger": _live("--connect", ep, "--secret-key", str(k / "stranger.key_secret"), "--server-key",
                                 str(k / "collector.key")),
               "plain": _live("--connect", ep, "--insecure")}
    try:
        sender.connect(5)
        seq, deadline = 0, time.monotonic() + 12
        while any(p.poll() is None for p in viewers.values()) and time.monotonic() < deadline:
            sender.send_chunk(_chunk(seq))
            seq += 10
            time.sleep(0.02)
        out = {name: p.communicate(timeout=20) for name, p in viewers.items()}
    finally:
        for p in viewers.values():
            if p.poll() is None:
                p.kill()
        sender.close(5)
        stop.set()
        t.join(5)
        col.close()
    assert viewers["viewer"].returncode == 0, out["viewer"]
    (row,) = json.loads(out["viewer"][0])["streams"]
    assert row["agent"] == "agent" and row["stream"] == "imu" and row["samples"] > 50 and row["method"] == "triggers"
    for name in ("stranger", "plain"):
        assert viewers[name].returncode == 2, out[name]
        assert json.loads(out[name][0])["streams"] == []
        err = out[name][1].strip().splitlines()
        assert len(err) == 1 and "no data from" in err[0], out[name][1]


def test_synchub_live_needs_keys_or_insecure():
    r = subprocess.run([sys.executable, "-m", "synchub.cli", "live", "--connect", "tcp://127.0.0.1:9"], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no CURVE keys given" in r.stderr and r.stderr.count("\n") == 1, r.stderr
