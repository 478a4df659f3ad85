"""Long tests whose work is a process of its own that mostly waits or runs on one core (the arm64 root under qemu,
the 2-minute soak's agent and collector), started as soon as the suite is collected, where the test is selected:
the suite runs its tests one at a time and leaves the second core idle.  Each test then waits for what is left of
its run (``result``); where none was started (the test run on its own, before a root is built) it runs it then.
Started from tests/conftest.py (``pytest_collection_finish``)."""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

_runs: dict[str, dict] = {}

SOAK_TEST = "test_soak.py::test_two_minute_soak_loses_nothing_keeps_fds_flat_and_rss_bounded"
SOAK_ARGS = ["bench", "soak", "--minutes", "2", "--every", "4"]


def start(name: str, fn) -> None:
    """``fn()`` in a thread of its own, its value (or the exception it raised) kept for ``result``."""
    run: dict = {}

    def work():
        try:
            run["value"] = fn()
        except Exception as exc:  # handed to the test, which fails with it
            run["error"] = exc

    run["thread"] = threading.Thread(target=work, name=f"early-{name}", daemon=True)
    _runs[name] = run
    run["thread"].start()


def started(name: str) -> bool:
    return name in _runs


def result(name: str, timeout: float):
    """What the run started as ``name`` gave, waiting for it up to ``timeout`` seconds."""
    run = _runs[name]
    run["thread"].join(timeout)
    if "error" in run:
        raise run["error"]
    if "value" not in run:
        raise TimeoutError(f"the {name} run started with the suite did not finish in {timeout:.0f} s")
    return run["value"]


def selected(items, test_id: str) -> bool:
    return any(i.nodeid.endswith(test_id) for i in items)


def soak(out: Path) -> dict:
    """The soak benchmark (``SOAK_ARGS``) as its own process: its exit status and its JSON."""
    r = subprocess.run([sys.executable, "-m", "synchub.cli", *SOAK_ARGS, "--json", str(out)], capture_output=True,
                       text=True, timeout=400)
    return {"rc": r.returncode, "output": (r.stdout + r.stderr)[-3000:],
            "json": json.loads(out.read_text()) if out.exists() else None}


def start_for(name: str, items, test_id: str, fn) -> None:
    """``fn(folder)`` started as ``name`` (``start``) where the collected ``items`` hold ``test_id``, with a temporary
    folder of its own (removed at exit)."""
    if started(name) or not selected(items, test_id):
        return
    folder = Path(tempfile.mkdtemp(prefix=f"synchub-{name}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    start(name, lambda: fn(folder))


def start_soak(items) -> None:
    start_for("soak", items, SOAK_TEST, lambda folder: soak(folder / "soak.json"))
