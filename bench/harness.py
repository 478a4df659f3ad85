"""What the process-level benchmarks share: a free loopback port, a ``synchub collector`` process, CURVE keys."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

from synchub.agent.transport.security import new_pair


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
