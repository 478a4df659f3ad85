"""systemd units and udev rules (systemd-analyze verify, content checks) and the sd_notify protocol with a test
NOTIFY_SOCKET: READY=1, WATCHDOG=1 only while progressing, pings stop when the process stalls."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.paths import ROOT

from synchub.agent.pipeline.notify import Notifier

UNITS = sorted((ROOT / "systemd").glob("*.service"))


def _units_for_verify(tmp_path):
    exe = Path(sys.executable).parent / "synchub"
    out = []
    for u in UNITS:
        p = tmp_path / u.name
        p.write_text(u.read_text().replace("/opt/synchub/.venv/bin/synchub", str(exe)))
        out.append(p)
    return out


def test_units_exist():
    assert {u.name for u in UNITS} == {"synchub-agent.service", "synchub-collector.service"}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path):
    units = _units_for_verify(tmp_path)  # ExecStart must point at an existing binary for verify
    r = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (r.stdout + r.stderr).splitlines() if any(u.name in line for u in units)]
    assert r.returncode == 0 and not complaints, r.stdout + r.stderr
    # the check can fail: a typo in a key is reported
    bad = tmp_path / "bad.service"
    bad.write_text(units[0].read_text().replace("WatchdogSec=", "WatchdogSecc="))
    r = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "WatchdogSecc" in r.stdout + r.stderr


def _keys(unit: Path) -> dict[str, list[str]]:
    d: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            d.setdefault(k.strip(), []).append(v.strip())
    return d


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_contents(unit):
    k = _keys(unit)
    assert k["Type"] == ["notify"] and k["NotifyAccess"] == ["main"]
    assert re.fullmatch(r"\d+s", k["WatchdogSec"][0])
    assert k["User"] == ["synchub"] and "root" not in k["User"]
    assert k["StateDirectory"][0].startswith("synchub") and k["ConfigurationDirectory"] == ["synchub"]
    assert "/etc/synchub/" in k["ExecStart"][0]
    assert "AF_UNIX" in k["RestrictAddressFamilies"][0].split()  # sd_notify needs it
    assert k["NoNewPrivileges"] == ["yes"] and k["ProtectSystem"] == ["strict"]
    if unit.name == "synchub-agent.service":
        assert k["SupplementaryGroups"] == ["dialout gpio"]
        assert "PrivateDevices" not in k and k["DevicePolicy"] == ["closed"]
        allowed = " ".join(k["DeviceAllow"])
        for dev in ("char-ttyUSB", "char-ttyACM", "char-gpiochip"):
            assert dev in allowed


def test_udev_rules():
    rules = ROOT / "systemd" / "70-synchub.rules"
    assert int(rules.name.split("-")[0]) < 77  # before ModemManager's 77-mm-* rules
    text = rules.read_text()
    assert re.search(r'DRIVERS=="ftdi_sio".*ATTR\{latency_timer\}="1"', text)
    assert 'ENV{ID_MM_DEVICE_IGNORE}="1"' in text and "gpiochip" in text
    known = {"ACTION", "SUBSYSTEM", "KERNEL", "DRIVERS", "ATTR", "ATTRS", "ENV", "GROUP", "MODE", "SYMLINK"}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        for tok in line.split(", "):
            m = re.fullmatch(r'([A-Z_]+)(\{[A-Za-z_]+\})?(==|!=|=|\+=)"[^"]*"', tok.strip())
            assert m and m.group(1) in known, f"bad udev token {tok!r} in: {line}"
    sysusers = (ROOT / "systemd" / "synchub.sysusers.conf").read_text()
    assert "m synchub dialout" in sysusers and "m synchub gpio" in sysusers


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.05)
    yield s, path
    s.close()


def _drain(s, seconds):
    msgs, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msgs.append(s.recv(4096).decode())
        except TimeoutError:
            pass
    return msgs


def test_notifier_pings_only_on_progress(notify_socket):
    s, path = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})  # ping at most every 50 ms
    assert n.ready("up")
    assert _drain(s, 0.1) == ["READY=1\nSTATUS=up"]
    assert n.watchdog(1)
    assert not n.watchdog(2)  # too soon
    time.sleep(0.06)
    assert n.watchdog(2)
    time.sleep(0.06)
    assert not n.watchdog(2)  # stalled: same progress, no ping
    time.sleep(0.06)
    assert not n.watchdog(2)
    assert n.watchdog(3)
    assert _drain(s, 0.1) == ["WATCHDOG=1"] * 3
    assert not Notifier({}).ready()  # no NOTIFY_SOCKET: a no-op


def test_collector_process_notifies_and_stops_pinging_when_stalled(notify_socket, tmp_path):
    s, path = notify_socket
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    p = subprocess.Popen([sys.executable, "-m", "synchub.cli", "collector", "--bind", "tcp://127.0.0.1:0", "--out",
                          str(tmp_path / "out"), "--insecure"], env=env, cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        msgs, deadline = [], time.monotonic() + 20
        while not msgs and time.monotonic() < deadline:  # start-up (imports) may be slow on a loaded machine
            msgs = _drain(s, 0.1)
        assert msgs and msgs[0].startswith("READY=1")
        msgs = _drain(s, 1.5)
        assert msgs.count("WATCHDOG=1") >= 3  # every ~100 ms while the loop turns
        os.kill(p.pid, signal.SIGSTOP)  # a stalled process sends nothing
        _drain(s, 0.2)
        assert _drain(s, 0.8) == []
        os.kill(p.pid, signal.SIGCONT)
        assert "WATCHDOG=1" in _drain(s, 1.0)
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
        assert "STOPPING=1" in _drain(s, 0.3)
    finally:
        if p.poll() is None:
            p.kill()


def test_module_level_notify_function(notify_socket, monkeypatch):
    import synchub.agent.pipeline.notify as mod

    s, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setattr(mod, "_default", None)
    assert mod.notify("READY=1") and mod.notify("WATCHDOG=1")
    assert _drain(s, 0.1) == ["READY=1", "WATCHDOG=1"]
    monkeypatch.setattr(mod, "_default", None)


@pytest.mark.slow
def test_agent_process_notifies_ready_and_watchdog(notify_socket, tmp_path):
    s, path = notify_socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = (ROOT / "examples" / "sim-rig.toml").read_text().replace("tcp://127.0.0.1:7100", f"tcp://127.0.0.1:{port}")
    (tmp_path / "agent.toml").write_text(cfg)
    col = subprocess.Popen([sys.executable, "-m", "synchub.cli", "collector", "--bind", f"tcp://127.0.0.1:{port}",
                            "--out", str(tmp_path / "out"), "--insecure"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    agent = subprocess.Popen([sys.executable, "-m", "synchub.cli", "agent", "--config", str(tmp_path / "agent.toml"),
                              "--insecure", "--duration", "5", "--status-every", "0"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        msgs, deadline = [], time.monotonic() + 30
        while agent.poll() is None and time.monotonic() < deadline:
            msgs += _drain(s, 0.25)
        assert agent.wait(5) == 0
        msgs += _drain(s, 0.3)
    finally:
        for p in (agent, col):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(20)
    assert msgs and msgs[0].startswith("READY=1"), msgs
    assert msgs.count("WATCHDOG=1") >= 3 and msgs[-1].startswith("STOPPING=1")


@pytest.mark.slow
def test_agent_stops_pinging_when_its_pipeline_stalls(notify_socket, tmp_path):
    """A real agent reads a simulated serial IMU from a separate `synchub sim` process; freezing that process stalls
    the pipeline (no samples), and the agent's watchdog pings stop until data flows again."""
    s, path = notify_socket
    links = tmp_path / "links"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "agent.toml").write_text(f"""
[agent]
name = "stall"
collector = ["tcp://127.0.0.1:{port}"]

[[stream]]
name = "imu0"
type = "imu"
driver = "serial"
port = "{links / 'imu0'}"
format = "imu-bin"
nominal_rate = 200.0
""")
    procs = []
    try:
        sim = subprocess.Popen([sys.executable, "-m", "synchub.cli", "sim", "--config",
                                str(ROOT / "examples" / "sim-rig.toml"), "--links", str(links)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(sim)
        deadline = time.monotonic() + 30
        while not (links / "imu0").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        procs.append(subprocess.Popen([sys.executable, "-m", "synchub.cli", "collector", "--bind",
                                       f"tcp://127.0.0.1:{port}", "--out", str(tmp_path / "out"), "--insecure"],
                                      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        agent = subprocess.Popen([sys.executable, "-m", "synchub.cli", "agent", "--config",
                                  str(tmp_path / "agent.toml"), "--insecure", "--status-every", "0"], cwd=ROOT,
                                 env=dict(os.environ, NOTIFY_SOCKET=path), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        procs.append(agent)
        msgs, deadline = [], time.monotonic() + 30
        while msgs.count("WATCHDOG=1") < 3 and time.monotonic() < deadline:
            msgs += _drain(s, 0.25)
        assert msgs[0].startswith("READY=1") and msgs.count("WATCHDOG=1") >= 3, msgs
        os.kill(sim.pid, signal.SIGSTOP)  # the device goes silent: the pipeline stalls
        _drain(s, 1.5)  # chunks already read and held back for correction still go out
        assert "WATCHDOG=1" not in _drain(s, 2.0)
        os.kill(sim.pid, signal.SIGCONT)
        assert "WATCHDOG=1" in _drain(s, 3.0)
        assert agent.poll() is None
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
