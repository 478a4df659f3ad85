"""What the process-level benchmarks share: a free loopback port, a ``synchub collector`` process, a ``synchub sim``
process with its pty links, CURVE keys, and stopping what they started."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from synchub.agent.transport.security import new_pair
from synchub.errors import UserError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collector_process(out, port, keys: Path | None = None) -> subprocess.Popen:
    sec = ["--secret-key", str(keys / "collector.key_secret"), "--allow-dir", str(keys / "allowed")] if keys \
        else ["--insecure"]
    p = subprocess.Popen([sys.executable, "-m", "synchub.cli", "collector", "--bind", f"tcp://127.0.0.1:{port}",
                          "--out", str(out), *sec], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    if "listening" not in line:
        raise RuntimeError(f"collector did not start: {line!r}")
    return p


def make_keys(d: Path) -> Path:
    new_pair("collector", d)
    new_pair("agent", d)
    (d / "allowed").mkdir()
    shutil.copy(d / "agent.key", d / "allowed" / "agent.key")
    return d


def sim_process(config: Path, links: Path, stderr=subprocess.DEVNULL, device: str = "imu0") -> subprocess.Popen:
    """``synchub sim --links`` of ``config``, returned once ``links/<device>`` exists."""
    sim = subprocess.Popen([sys.executable, "-m", "synchub.cli", "sim", "--config", str(config), "--links",
                            str(links)], stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 60
    while not (links / device).exists():
        if time.monotonic() > deadline or sim.poll() is not None:
            stop_processes([sim])
            raise UserError("the simulated devices did not start")
        time.sleep(0.1)
    return sim


def stop_processes(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each (the last started first), SIGKILL what is still running 20 s later."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
