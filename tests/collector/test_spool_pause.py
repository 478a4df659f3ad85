"""The issue's jam, with the real processes: ``spool_max_mb = 1`` (the smallest size the config accepts) and the
collector paused (SIGSTOP) long enough for the spool to fill.  The agent never finds a message missing from its
spool, drops the oldest data as ``spool_full`` gaps (logged), drains when the collector resumes and exits 0; the
recording plus its gaps cover every sample of every stream exactly once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.paths import ROOT
from support.procs import free_port, start_collector, stop
from support.simconf import sim_agent_toml

from synchub.agent.formats.mcap_read import read_session

pytestmark = pytest.mark.slow



def test_smallest_spool_with_a_paused_collector_loses_nothing_unrecorded(tmp_path):
    port = free_port()
    cfg = tmp_path / "a.toml"
    cfg.write_text(sim_agent_toml("tiny", port, ("imu0", "mic0", "cam0"), seed=9, agent_extra="spool_max_mb = 1\n"))
    col = start_collector(tmp_path / "rec", port, "--insecure")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    agent = subprocess.Popen([sys.executable, "-m", "synchub.cli", "agent", "--config", str(cfg), "--insecure",
                              "--duration", "22", "--status-every", "0"], cwd=ROOT, env=env,
                             stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)
        col.send_signal(signal.SIGSTOP)
        time.sleep(12)
        col.send_signal(signal.SIGCONT)
        _, err = agent.communicate(timeout=90)
    finally:
        col.send_signal(signal.SIGCONT)
        if agent.poll() is None:
            agent.kill()
        stop(col)
    (tmp_path / "agent.log").write_text(err)
    assert "missing from the spool" not in err
    assert agent.returncode == 0, err[-3000:]
    assert "spool: full" in err
    m = re.search(r"(\d+) samples spooled, (\d+) delivered, (\d+) dropped as spool_full", err)
    spooled, delivered, dropped = map(int, m.groups())
    assert dropped > 0 and spooled == delivered + dropped
    sess = read_session(sorted(Path(tmp_path / "rec").glob("*.mcap")))
    gap_total = 0
    for name, s in sess["streams"].items():
        gaps = [np.arange(g["seq"] - g["count"], g["seq"]) for g in sess["gaps"]
                if g["stream"] == name and g["cause"] == "spool_full"]
        gap_total += sum(len(g) for g in gaps)
        cover = np.concatenate([s["seq"], *gaps])
        assert len(np.unique(cover)) == len(cover) == cover.max() + 1, name  # every seq once, no hole
    assert gap_total == dropped
