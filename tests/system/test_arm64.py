"""The runtime package on arm64 (a Raspberry Pi 4/5 or Jetson runs aarch64 Debian 12): an arm64 Debian 12 root under
qemu-user (tests/support/arm64root.py: built once with mmdebstrap, cached), the wheel of this checkout installed with pip
from PyPI's aarch64 wheels, the demo run there, the install plan, and `synchub status` without and with a running
agent.  Skipped with the reason where this machine cannot run arm64 programs (no root, no mmdebstrap, no binfmt_misc/qemu-aarch64: `make test` as root sets them up).
Wall time here (2 shared x86 cores): 200-240 s with the root and the aarch64 wheels cached (a venv 28 s, pip 68 s, the
demo 52 s), +130 s to build the root; in the suite it runs from the start on the core the tests leave idle
(support/arm64check.py) and the test only waits for what is left.

Also: every runtime dependency (and the neural and gpio extras) resolves to aarch64 wheels for CPython 3.11
(Debian 12, Pi OS bookworm) and 3.13 (Debian 13) with ``pip download --only-binary=:all:``: no compiler on a Pi."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from support import arm64check, arm64root
from support.paths import ROOT


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the root is built by `make test` before the suite; run alone, the test builds it first
def test_runtime_package_on_arm64(tmp_path):
    why = arm64root.missing_reason(build=arm64root.cached_root() is None)
    if why:
        pytest.skip(f"arm64 root: {why}")
    t0 = time.monotonic()
    root = arm64root.ensure_root()
    built_s = time.monotonic() - t0
    share, r, run_s = arm64check.outcome(root, tmp_path / "share")
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    wheels = json.loads((share / "wheels.json").read_text())
    assert wheels["machine"] == "aarch64"
    binary = {name: tags for name, tags in wheels["tags"].items() if not all(t.endswith("-any") for t in tags)}
    assert {"numpy", "pyzmq", "onnxruntime"} <= set(binary), wheels["tags"]
    assert all(any("aarch64" in t for t in tags) for tags in binary.values()), binary
    assert "torch" not in wheels["tags"]
    assert "CPUExecutionProvider" in (share / "ort.txt").read_text()
    rc, start, end = (share / "demo.rc").read_text().split()
    demo = (share / "demo.txt").read_text()
    assert rc in ("0", "1") and (share / "demo" / "report.json").exists(), demo[-3000:]
    # every sample the agent sent is in the file exactly once.  (The demo's own exit status also compares with what
    # the simulator wrote: under qemu, ~10x slower, the agent may stop before reading the last frames the simulated
    # IMU wrote into its pty; that is printed below, not failed.)
    report = json.loads((share / "demo" / "report.json").read_text())
    for st in report["streams"]:
        assert st["samples_sent"] > 0 and st["samples_recorded"] == st["samples_sent"] and not st["duplicates"], st
    unread = {st["name"]: st["samples_delivered"] - st["samples_sent"] for st in report["streams"]
              if st["samples_delivered"] != st["samples_sent"]}
    plan = (share / "install.txt").read_text()
    assert (share / "install.rc").read_text().strip() == "0", plan
    assert "would: create the venv" in plan and "would: write /etc/systemd/system/synchub-agent.service" in plan
    # synchub status: one line and exit 2 without an agent; with one (its collector absent), its streams as JSON
    assert (share / "status-none.rc").read_text().strip() == "2"
    assert "no agent running" in (share / "status-none.txt").read_text()
    st_rc, st_start, st_end = (share / "status.rc").read_text().split()
    assert st_rc == "0", (share / "status.err").read_text() + (share / "agent.txt").read_text()[-2000:]
    (status,) = json.loads((share / "status.json").read_text())
    imu = next(s for s in status["streams"] if s["name"] == "imu0")
    assert status["agent"] == "arm" and status["connection"] in ("connecting", "down") and imu["state"] == "ok", status
    summary = {"root": "built" if built_s > 5 else "cached", "root_s": round(built_s), "demo_s": round(float(end) -
               float(start)), "install_demo_plan_s": round(run_s), "demo_exit": int(rc), "early": arm64check.started_early(),
               "status_cli_s_under_qemu": round(float(st_end) - float(st_start), 2),
               "written_by_the_simulator_but_not_read": unread}
    print(json.dumps(summary), demo[-2500:], sep="\n")


def _runtime_requirements() -> list[str]:
    from synchub.agent.core.settings import read_toml

    project = read_toml(ROOT / "pyproject.toml", "pyproject")["project"]
    extras = project["optional-dependencies"]
    return [d for d in project["dependencies"] + extras["neural"] + extras["gpio"] if "python_version" not in d]


@pytest.mark.slow
@pytest.mark.parametrize("python", ["3.11", "3.13"])
def test_runtime_dependencies_have_aarch64_wheels(python, tmp_path):
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--progress-bar=off", "--dest", str(tmp_path),
           "--only-binary=:all:", "--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_28_aarch64",
           "--platform", "manylinux_2_34_aarch64", "--python-version", python, "--implementation", "cp",
           "--index-url", "https://pypi.org/simple", *_runtime_requirements()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0 and any(s in r.stderr for s in ("NewConnectionError", "Temporary failure", "unreachable",
                                                           "ConnectTimeout", "Max retries")):
        pytest.skip(f"PyPI unreachable: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr[-2000:]
    got = sorted(p.name for p in tmp_path.glob("*.whl"))
    assert all(n.endswith("-any.whl") or "aarch64" in n for n in got), got
    names = {n.split("-")[0].lower().replace("_", "-") for n in got}
    assert {"numpy", "pyzmq", "onnxruntime", "gpiod", "msgpack"} <= names, got
