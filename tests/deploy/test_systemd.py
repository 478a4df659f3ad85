"""systemd units and udev rules (systemd-analyze verify, content checks) and the sd_notify protocol with a test
NOTIFY_SOCKET: READY=1; the collector pings while its loop turns; the agent pings while its loops turn, also with a
device unplugged (STATUS= and `synchub status` name it), and resumes the stream within 1 s of the replug."""

import json
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
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000", RUNTIME_DIRECTORY=str(tmp_path))
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


UNPLUG_AGENT = """
[agent]
name = "unplug"
collector = ["tcp://127.0.0.1:{port}"]

[sim]
seed = 3
duration_s = 600.0
only = ["imu0", "sync"]

[[sim.unplug]]               # the IMU's USB cable pulled at 3 s, plugged back at 7 s
device = "imu0"
at_s = 3.0
for_s = 4.0

[[trigger]]
name = "sync"
backend = "sim"
role = "sync"
period_s = 1.0

[[stream]]
name = "imu0"
type = "imu"
driver = "serial"
port = "sim:imu0"
format = "imu-bin"
nominal_rate = 200.0
trigger = "sync"
"""


def _log_time(line: str) -> float:
    """Seconds of the day of a log line's ``2026-11-26 19:05:29,403`` stamp."""
    h, m, sec = line.split()[1].split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec.replace(",", "."))


@pytest.mark.slow
def test_unplugged_device_keeps_the_watchdog_fed_and_shows_in_status(notify_socket, tmp_path):
    """The real agent process with its IMU unplugged for 4 s: WATCHDOG=1 keeps coming (liveness, not data flow),
    STATUS= and `synchub status` name the missing stream, the stream resumes within 1 s of the replug and the
    recording holds the gap with its cause."""
    s, path = notify_socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "agent.toml").write_text(UNPLUG_AGENT.format(port=port))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000", RUNTIME_DIRECTORY=str(run_dir))
    col = subprocess.Popen([sys.executable, "-m", "synchub.cli", "collector", "--bind", f"tcp://127.0.0.1:{port}",
                            "--out", str(tmp_path / "out"), "--insecure"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = open(tmp_path / "agent.log", "w")
    agent = subprocess.Popen([sys.executable, "-m", "synchub.cli", "agent", "--config", str(tmp_path / "agent.toml"),
                              "--insecure", "--duration", "10", "--status-every", "0"], cwd=ROOT, env=env,
                             stdout=log, stderr=subprocess.STDOUT)
    answers = []  # `synchub status` asked again and again while the last STATUS= says the IMU is missing
    try:
        msgs, deadline = [], time.monotonic() + 40
        while agent.poll() is None and time.monotonic() < deadline:
            for m in _drain(s, 0.1):
                msgs.append((time.monotonic(), m))
            last = [m for _, m in msgs if "STATUS=" in m][-1:]
            if last and "imu0 missing" in last[0] and len(answers) < 20:
                t0 = time.monotonic()
                answers.append((subprocess.run([sys.executable, "-m", "synchub.cli", "status", "--json", "--socket",
                                                str(run_dir / "agent-unplug.sock")], cwd=ROOT, env=env,
                                               capture_output=True, text=True, timeout=20), time.monotonic() - t0))
        assert agent.wait(5) == 0
        msgs += [(time.monotonic(), m) for m in _drain(s, 0.3)]
    finally:
        log.close()
        for p in (agent, col):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(20)
    texts = [m for _, m in msgs]
    assert texts[0].startswith("READY=1"), texts
    pings = [t for t, m in msgs if m == "WATCHDOG=1"]
    # every 0.5 s, unplugged or not (the old agent sent none while no data moved)
    assert len(pings) >= 14 and max(b - a for a, b in zip(pings, pings[1:], strict=False)) < 1.5, pings
    statuses = [m.split("STATUS=", 1)[1] for m in texts if "STATUS=" in m]
    missing = [i for i, st in enumerate(statuses) if st.startswith("DEGRADED: imu0 missing")]
    assert missing, statuses
    assert any(st.startswith("ok: 2/2 streams ok") for st in statuses[missing[-1]:]), statuses  # back
    assert answers and all(a.returncode == 0 for a, _ in answers), answers
    seen = [json.loads(a.stdout)[0] for a, _ in answers]
    imus = [next(x for x in st["streams"] if x["name"] == "imu0") for st in seen]
    # the last answer may come after the replug (each takes a process start); one while unplugged must say so
    unplugged = [(st, imu) for st, imu in zip(seen, imus, strict=True) if imu["state"] == "missing"]
    assert unplugged, [(imu, round(took, 2)) for imu, (_, took) in zip(imus, answers, strict=True)]
    st, imu = unplugged[0]
    assert imu["detail"].startswith("cannot open sim:imu0") or imu["detail"] == "sim:imu0 disconnected", imu
    assert st["agent"] == "unplug" and st["connection"] == "connected" and "DEGRADED" in st["status_line"]
    lines = (tmp_path / "agent.log").read_text().splitlines()
    replug = next(_log_time(x) for x in lines if "plugged in again" in x)
    resumed = next(_log_time(x) for x in lines if "imu0: reconnected" in x)
    assert 0 <= resumed - replug < 1.0, (replug, resumed)
    assert not (run_dir / "agent-unplug.sock").exists()  # removed on exit
    inspect = subprocess.run([sys.executable, "-m", "synchub.cli", "inspect", "--json",
                              *map(str, (tmp_path / "out").glob("*.mcap"))], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    rec = next(x for x in json.loads(inspect.stdout)["streams"] if x["name"] == "imu0")
    assert rec["gap_causes"] == ["disconnect"] and 600 <= rec["gap_samples"] <= 1000, rec  # ~4 s at 200 Hz
    assert rec["seq_missing"] == 0 and rec["samples"] > 1000, rec


@pytest.mark.slow
def test_agent_status_cli_without_an_agent(tmp_path):
    for args in (["--socket", str(tmp_path / "nobody.sock")], ["--name", "no-such-agent-here"]):
        r = subprocess.run([sys.executable, "-m", "synchub.cli", "status", *args], cwd=ROOT, capture_output=True,
                           text=True, timeout=30, env=dict(os.environ, RUNTIME_DIRECTORY=str(tmp_path)))
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no agent" in r.stderr, r.stderr
    stale = tmp_path / "agent-gone.sock"
    with socket.socket(socket.AF_UNIX) as sk:
        sk.bind(str(stale))
    r = subprocess.run([sys.executable, "-m", "synchub.cli", "status", "--socket", str(stale)], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "stale socket" in r.stderr and r.stderr.count("\n") == 1, r.stderr
