"""Real synchub processes for the tests: a free loopback port, a collector subprocess, stopping a process."""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys

from .paths import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_collector(out, port, *extra, log=None, env=None, nofile: int | None = None):
    """``synchub collector`` on loopback ``port``; ``nofile``: its RLIMIT_NOFILE (soft and hard)."""
    limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
    p = subprocess.Popen([sys.executable, "-m", "synchub.cli", "collector", "--bind", f"tcp://127.0.0.1:{port}",
                          "--out", str(out), "--flush-ms", "20", *extra], preexec_fn=limit,
                         stdout=subprocess.PIPE, stderr=log or subprocess.DEVNULL, text=True, cwd=ROOT, env=env)
    line = p.stdout.readline()
    assert "listening" in line, line
    return p


def stop(p, sig=signal.SIGTERM, timeout=20):
    if p.poll() is None:
        p.send_signal(sig)
    return p.wait(timeout)
