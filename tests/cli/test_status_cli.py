"""`synchub status` stays light: it imports no numpy, zmq or driver code (it answers in well under 0.2 s on a Pi)."""

import subprocess
import sys

from support.paths import ROOT


def test_status_command_imports_nothing_heavy():
    code = ("import sys; from synchub import cli; import synchub.agent.cli.status; "
            "print(sorted(m for m in ('numpy', 'zmq', 'serial', 'msgpack', 'synchub.drivers') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
