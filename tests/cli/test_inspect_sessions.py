"""``synchub inspect`` over an agent restart: two sessions are two summaries (a new session's seq starting at 0 again
is no duplicate), and the hole between them is shown."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time

import numpy as np

from synchub.agent.collector.server import Collector
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.core.units import now_ns
from synchub.agent.transport.sender import Sender
from synchub.cli import main


def _session(endpoint, tmp_path, name):
    s = Sender(endpoint, "rig", [StreamInfo("imu0", "imu", 100.0, 1)], spool_dir=tmp_path / name)
    s.connect(10)
    for i in range(5):
        t = now_ns() + np.arange(10) * 10_000_000
        s.send_chunk(Chunk("imu0", i * 10, np.zeros((10, 1), np.float32), t, t))
        time.sleep(0.02)
    assert s.close(10)


def test_two_sessions_no_false_duplicates_and_the_hole_shown(tmp_path):
    col = Collector("tcp://127.0.0.1:0", tmp_path / "rec", flush_s=0.01)
    stop = threading.Event()
    th = threading.Thread(target=col.run, args=(stop,), daemon=True)
    th.start()
    try:
        _session(col.endpoint, tmp_path, "a")
        time.sleep(0.6)  # the agent is down
        _session(col.endpoint, tmp_path, "b")
    finally:
        stop.set()
        th.join(10)
        col.close()
    files = sorted(str(p) for p in (tmp_path / "rec").glob("*.mcap"))
    assert len(files) == 2
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["inspect", *files, "--json"]) == 0
    rep = json.loads(out.getvalue())
    assert len(rep["sessions"]) == 2
    for s in rep["sessions"]:
        (row,) = s["streams"]
        assert row["samples"] == 50 and row["seq_duplicates"] == 0 and row["seq_missing"] == 0
    (hole,) = rep["holes"]
    assert hole["stream"] == "imu0" and 0.3 < hole["seconds"] < 5.0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["inspect", *files]) == 0
    assert "hole between sessions" in out.getvalue()
