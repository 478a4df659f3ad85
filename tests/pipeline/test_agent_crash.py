"""kill -9 of the real agent process at random instants, with a 1.5 s correction hold (a trigger line): on the next
start, what the dead process had read but not spooled is recorded as an ``agent_crash`` gap of its session, so the
recording plus the gaps account for every sample it read (its marks file, copied right after the kill, says how
many).  Then a clean stop delivers everything and exits 0."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.paths import ROOT
from support.procs import free_port, start_collector, stop
from support.simconf import sim_agent_toml

from synchub.agent.formats.mcap_read import read_session
from synchub.agent.transport.marks import load_marks

pytestmark = pytest.mark.slow

IN_SEQ_SPACE = ("agent_crash", "spool_full", "queue_full")


def _agent(cfg, env, *extra):
    return subprocess.Popen([sys.executable, "-m", "synchub.cli", "agent", "--config", str(cfg), "--insecure",
                             "--status-every", "0", *extra], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def test_agent_killed_at_random_instants_loses_nothing_unrecorded(tmp_path):
    rnd = random.Random(11)
    port = free_port()
    cfg = tmp_path / "a.toml"
    cfg.write_text(sim_agent_toml("crashy", port))
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    spool = tmp_path / "state" / "synchub" / "spool" / "crashy"
    col = start_collector(tmp_path / "rec", port, "--insecure")
    killed: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        for _ in range(3):
            before = set(spool.glob("marks-*.bin"))
            p = _agent(cfg, env)
            deadline = time.monotonic() + 30
            while not set(spool.glob("marks-*.bin")) - before and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rnd.uniform(0.8, 2.5))
            p.send_signal(signal.SIGKILL)
            p.wait(10)
            new = sorted(set(spool.glob("marks-*.bin")) - before)
            assert len(new) == 1, new
            shutil.copy(new[0], tmp_path / new[0].name)
            killed[new[0].stem[6:]] = load_marks(tmp_path / new[0].name)
        p = _agent(cfg, env, "--duration", "2")
        _, err = p.communicate(timeout=90)
        assert p.returncode == 0, err[-3000:]
        assert "agent_crash gap" in err
    finally:
        stop(col)
    for sid, marks in killed.items():
        files = sorted(Path(tmp_path / "rec").glob(f"*-{sid}-p*.mcap"))
        assert files, f"nothing recorded of killed session {sid}"
        sess = read_session(files)
        for stream, (read, _covered) in marks.items():
            got = set(sess["streams"][stream]["seq"].tolist()) if stream in sess["streams"] else set()
            gapped = [s for g in sess["gaps"] if g["stream"] == stream and g["cause"] in IN_SEQ_SPACE
                      for s in range(g["seq"] - g["count"], g["seq"])]
            assert len(gapped) == len(set(gapped)) and not got & set(gapped), (sid, stream)
            assert got | set(gapped) == set(range(read)), (sid, stream, read, len(got), len(gapped))
        assert any(g["cause"] == "agent_crash" for g in sess["gaps"]), sid  # the 1.5 s hold was not empty
