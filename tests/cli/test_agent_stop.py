"""``synchub agent`` at its end: a stop with undelivered data says so in one line and exits 2 (the data stays in the
default on-disk spool), quickly when the collector is unreachable; with a collector it delivers, prints its summary
and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from support.paths import ROOT
from support.procs import free_port, start_collector, stop

from synchub.agent.transport.spool import Spool

CONFIG = ('[agent]\nname = "stopper"\ncollector = ["tcp://127.0.0.1:{port}"]\n[sim]\nseed = 3\n'
          '[[stream]]\nname = "imu0"\ntype = "imu"\ndriver = "serial"\nport = "sim:imu0"\nformat = "imu-bin"\n')


def _agent(tmp_path, port, duration="1.5"):
    cfg = tmp_path / "a.toml"
    cfg.write_text(CONFIG.format(port=port))
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "synchub.cli", "agent", "--config", str(cfg), "--insecure",
                        "--duration", duration, "--status-every", "0"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    return r, time.monotonic() - t0


def test_unreachable_collector_exits_2_quickly_and_keeps_the_data(tmp_path):
    r, took = _agent(tmp_path, free_port())
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("synchub agent: stopped with data not delivered") and "kept in" in last, last
    spool_dir = tmp_path / "state" / "synchub" / "spool" / "stopper"
    assert str(spool_dir) in last
    assert took < 1.5 + 6.0, took  # was 10.5 s of waiting for a collector that is not there
    sp = Spool(spool_dir)  # the data is on disk for the next start
    assert sum(e.n for e in sp.entries.values()) > 0
    sp.close()


def test_reachable_collector_delivers_everything_and_exits_0(tmp_path):
    port = free_port()
    col = start_collector(tmp_path / "rec", port, "--insecure")
    try:
        r, _ = _agent(tmp_path, port)
    finally:
        stop(col)
    assert r.returncode == 0, r.stderr[-2000:]
    line = [x for x in r.stderr.splitlines() if "samples spooled" in x][-1]
    spooled, delivered = int(line.split()[1]), int(line.split(", ")[1].split()[0])
    assert spooled == delivered > 0 and "nothing left undelivered" in line, line
