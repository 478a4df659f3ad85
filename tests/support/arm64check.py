"""The arm64 test's run in the root (tests/system/test_arm64.py), started as soon as the suite is collected: the root
under qemu-user is one process on one core for 3-4 minutes (a venv, pip installing the wheel and its aarch64 wheels,
the demo), while the suite's own tests run on the other (``start_early``, through ``early``, where the test is
selected and the root is already built); the test waits for it where it stands (``outcome``).  Where none was started
(the test run alone, the root not yet built) the test runs it then."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from support import arm64root, early
from support.paths import ROOT

TEST_ID = "test_arm64.py::test_runtime_package_on_arm64"
TIMEOUT_S = 900

CHECK_WHEELS = """
import json, pathlib, platform, sysconfig
site = pathlib.Path(sysconfig.get_paths()["purelib"])
tags = {}
for d in site.glob("*.dist-info"):
    w = d / "WHEEL"
    if w.exists():
        tags[d.name.split("-")[0]] = [l.split(": ", 1)[1] for l in w.read_text().splitlines() if l.startswith("Tag: ")]
print(json.dumps({"machine": platform.machine(), "tags": tags}))
"""

SCRIPT = """
set -e
cd /tmp
WHL=$(ls /share/synchub-*.whl)
python3 -m venv /tmp/v
/tmp/v/bin/pip install -q --cache-dir /cache "$WHL[neural]"
/tmp/v/bin/python /share/check_wheels.py > /share/wheels.json
/tmp/v/bin/python -c "import onnxruntime, numpy, zmq; print(onnxruntime.get_available_providers())" > /share/ort.txt
set +e
start=$(date +%s.%N)
/tmp/v/bin/synchub demo --duration 10 --out /share/demo > /share/demo.txt 2>&1
echo "$? $start $(date +%s.%N)" > /share/demo.rc
/tmp/v/bin/synchub install --dry-run --root /tmp/r --config /src/examples/field-pi.toml --from "$WHL" \
    > /share/install.txt 2>&1
echo $? > /share/install.rc
export RUNTIME_DIRECTORY=/tmp/rt
mkdir -p $RUNTIME_DIRECTORY
/tmp/v/bin/synchub status > /share/status-none.txt 2>&1
echo $? > /share/status-none.rc
printf '%s\n' '[agent]' 'name = "arm"' 'collector = ["tcp://127.0.0.1:7999"]' '[sim]' 'only = ["imu0", "sync"]' \
    '[[trigger]]' 'name = "sync"' 'backend = "sim"' 'role = "sync"' '[[stream]]' 'name = "imu0"' 'type = "imu"' \
    'driver = "serial"' 'port = "sim:imu0"' 'format = "imu-bin"' 'nominal_rate = 200.0' 'trigger = "sync"' > /tmp/arm.toml
/tmp/v/bin/synchub agent --config /tmp/arm.toml --insecure --duration 60 --status-every 0 > /share/agent.txt 2>&1 &
for i in $(seq 120); do [ -S $RUNTIME_DIRECTORY/agent-arm.sock ] && break; sleep 0.5; done
sleep 4
start=$(date +%s.%N)
/tmp/v/bin/synchub status --json > /share/status.json 2> /share/status.err
echo "$? $start $(date +%s.%N)" > /share/status.rc
kill %1
wait
"""


def run(root: Path, share: Path) -> tuple[subprocess.CompletedProcess, float]:
    """The wheel of this checkout built into ``share`` and ``SCRIPT`` run in ``root``: (its process, seconds)."""
    t0 = time.monotonic()
    share.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(share), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (share / "check_wheels.py").write_text(CHECK_WHEELS)
    r = arm64root.run_in_root(root, SCRIPT, cache=arm64root.pip_cache(), share=share, timeout=TIMEOUT_S)
    return r, time.monotonic() - t0


def start_early(items) -> None:
    """Starts the run (``early``) where the collected ``items`` hold the arm64 test and the root is built."""
    root = arm64root.cached_root()
    if root is not None and not arm64root.missing_reason(build=False):
        early.start_for("arm64", items, TEST_ID, lambda share: (share, *run(root, share)))


def started_early() -> bool:
    return early.started("arm64")


def outcome(root: Path, share: Path) -> tuple[Path, subprocess.CompletedProcess, float]:
    """(the share folder, the root's process, seconds it ran): the early run's, else one run now into ``share``."""
    if not started_early():
        return (share, *run(root, share))
    return early.result("arm64", TIMEOUT_S + 360)
