"""``synchub install``/``uninstall`` in a throwaway root (a temp dir with a copy of this machine's users), what they
write checked with ``systemd-analyze verify``, and the pure parts: devices, groups and extras derived from a config,
and what the agent would refuse under the unit (``agent.deploy``)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import ROOT

from synchub.agent.config.loader import parse_config
from synchub.agent.deploy import needs as D

SYNCHUB = [sys.executable, "-m", "synchub.cli"]
KEYS = {"curve_secret_key": "/etc/synchub/keys/pi.key_secret", "collector_public_key": "/etc/synchub/keys/collector.key"}


def _cfg(streams=(), triggers=(), **agent):
    return parse_config({"agent": {"name": "pi", **agent}, "stream": list(streams), "trigger": list(triggers)})


SERIAL = {"type": "imu", "driver": "serial", "format": "imu-bin"}


def test_devices_groups_and_extras_follow_the_config():
    cfg = _cfg(streams=[
        {**SERIAL, "name": "a", "port": "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0"},
        {**SERIAL, "name": "b", "port": "/dev/ttyTHS1"},  # Jetson UART
        {**SERIAL, "name": "c", "port": "/dev/serial0"},  # Pi alias
        {"name": "mic", "type": "audio", "driver": "alsa", "device": "hw:1,0", "nominal_rate": 16000.0},
        {"name": "cam", "type": "video", "driver": "v4l2", "device": "/dev/video0", "nominal_rate": 30.0,
         "align_to": "a", "channel_format": "uint8"},
        {"name": "line", "type": "trigger", "driver": "gpio", "backend": "rpi-gpio", "line": 4},
    ], triggers=[{"name": "pps", "backend": "pps", "role": "pps"}, {"name": "sync", "backend": "gpiod", "line": 17}])
    a = D.device_access(cfg)
    assert a.devices == {"char-ttyUSB": "rw", "char-ttyACM": "rw", "char-ttyTHS": "rw", "char-ttyAMA": "rw",
                         "char-ttyS": "rw", "char-alsa": "rw", "char-video4linux": "rw", "/dev/gpiomem": "rw",
                         "char-gpiochip": "rw", "char-pps": "r"}
    assert a.groups == {"dialout", "audio", "video", "gpio"}
    assert a.extras == {"gpio", "rpi", "neural"}
    assert a.programs == {"arecord": "alsa-utils", "ffmpeg": "ffmpeg"}
    text = D.dropin_text(a, "/etc/synchub/agent.toml")
    lines = text.splitlines()
    # the drop-in first resets the unit's lists, then sets its own
    assert lines.index("DeviceAllow=") < lines.index("DeviceAllow=char-alsa rw")
    assert lines.index("SupplementaryGroups=") < lines.index("SupplementaryGroups=audio dialout gpio video")
    assert "# stream mic" in text and "DevicePolicy=closed" in text
    assert "m synchub video" in D.sysusers_text(a.groups)
    only_serial = D.device_access(_cfg(streams=[{**SERIAL, "name": "a", "port": "/dev/ttyACM0"}]))
    assert only_serial.devices == {"char-ttyACM": "rw"} and only_serial.groups == {"dialout"}
    assert only_serial.extras == set()  # the runtime install alone


def test_preflight_finds_what_the_unit_would_refuse():
    def levels(cfg, **kw):
        return [(p.level, p.key) for p in D.preflight(cfg, exists=lambda p: True, have_program=lambda p: "/bin/x",
                                                      **kw)]

    assert levels(_cfg()) == [("error", "agent")]  # no keys: refused without --insecure
    assert levels(_cfg(), insecure=True) == []
    assert levels(_cfg(curve_secret_key="/etc/synchub/keys/pi.key_secret")) == [
        ("error", "agent.collector_public_key")]
    assert levels(_cfg(**KEYS)) == []
    outside = {**KEYS, "curve_secret_key": "/home/me/pi.key_secret"}
    assert levels(_cfg(**outside)) == [("warning", "agent.curve_secret_key")]
    missing = D.preflight(_cfg(**KEYS), exists=lambda p: False)
    assert [p.level for p in missing] == ["error", "error"] and "does not exist" in missing[0].text
    aligned = _cfg(streams=[{**SERIAL, "name": "a", "port": "/dev/ttyACM0"},
                            {**SERIAL, "name": "b", "port": "/dev/ttyACM1", "align_to": "a"}], **KEYS)
    no_ort = D.preflight(aligned, exists=lambda p: True, have_module=lambda m: m != "onnxruntime")
    assert [p.level for p in no_ort] == ["error"] and "synchub[neural]" in no_ort[0].text
    gpio = _cfg(triggers=[{"name": "s", "backend": "gpiod"}], **KEYS)
    assert [p.key for p in D.preflight(gpio, exists=lambda p: True, have_module=lambda m: False)] == ["trigger s"]
    alsa = _cfg(streams=[{"name": "mic", "type": "audio", "driver": "alsa", "nominal_rate": 8000.0}], **KEYS)
    assert "alsa-utils" in D.preflight(alsa, exists=lambda p: True, have_program=lambda p: None)[0].text
    spool = _cfg(spool_dir="/home/me/spool", **KEYS)
    assert levels(spool) == [("warning", "agent.spool_dir")]


def test_lsl_inlets_and_outlets_need_the_lsl_extra():
    sim = {"name": "m", "type": "audio", "driver": "sim", "device": "mic0"}
    out = parse_config({"agent": {"name": "pi", **KEYS}, "stream": [sim], "lsl": {"outlet": True}})
    assert D.device_access(out).extras == {"lsl"}
    problems = D.preflight(out, exists=lambda p: True, have_module=lambda m: m != "pylsl")
    assert [(p.level, p.key) for p in problems] == [("error", "lsl.outlet")] and "synchub[lsl]" in problems[0].text
    quiet = parse_config({"agent": {"name": "pi", **KEYS}, "stream": [sim], "lsl": {"outlet": False}})
    assert D.device_access(quiet).extras == set() and D.preflight(quiet, exists=lambda p: True) == []


def test_config_command_refuses_a_config_the_unit_would_refuse(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('[agent]\nname = "pi"\n[[stream]]\nname = "a"\ntype = "imu"\ndriver = "serial"\n'
                   'port = "/dev/ttyACM0"\nformat = "imu-bin"\n')
    r = subprocess.run([*SYNCHUB, "config", str(cfg)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no CURVE keys" in r.stderr and "ok" not in r.stdout
    r = subprocess.run([*SYNCHUB, "config", str(cfg), "--insecure"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and ": ok" in r.stdout


def test_dry_run_changes_nothing(tmp_path):
    cfg = tmp_path / "field.toml"
    cfg.write_text((ROOT / "examples" / "field-pi.toml").read_text())
    root = tmp_path / "root"
    root.mkdir()
    r = subprocess.run([*SYNCHUB, "install", "--dry-run", "--root", str(root), "--config", str(cfg)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "would: create the venv" in r.stdout and "would: write /etc/systemd/system/synchub-agent.service" in r.stdout
    assert "would install synchub (agent)" in r.stdout
    assert list(root.iterdir()) == []


def _throwaway_root(tmp_path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root: install gives files to the synchub user of the throwaway root")
    for tool in ("systemd-sysusers", "systemctl", "userdel"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian packages systemd, passwd)")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for f in ("passwd", "group", "shadow", "gshadow"):  # the users of a Debian system (dialout, audio, ...)
        if Path("/etc", f).exists():
            shutil.copy2(Path("/etc", f), root / "etc" / f)
    return root


def _mode_owner(root: Path, path: str) -> tuple[str, str, str]:
    st = (root / path.lstrip("/")).stat()
    users = {int(line.split(":")[2]): line.split(":")[0] for line in (root / "etc/passwd").read_text().splitlines()}
    groups = {int(line.split(":")[2]): line.split(":")[0] for line in (root / "etc/group").read_text().splitlines()}
    return f"{stat.S_IMODE(st.st_mode):04o}", users[st.st_uid], groups[st.st_gid]


def _verify(root: Path, tmp_path: Path, exe: str) -> str:
    """systemd-analyze verify on the written agent unit and its drop-in, ExecStart pointed at ``exe``."""
    d = tmp_path / "verify"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    unit = root / "etc/systemd/system/synchub-agent.service"
    (d / unit.name).write_text(unit.read_text().replace("/opt/synchub/.venv/bin/synchub", exe))
    shutil.copytree(root / "etc/systemd/system/synchub-agent.service.d", d / "synchub-agent.service.d")
    r = subprocess.run(["systemd-analyze", "verify", str(d / unit.name)], capture_output=True, text=True, timeout=60)
    return (r.stdout + r.stderr) if r.returncode or "synchub" in r.stdout + r.stderr else ""


@pytest.mark.slow
def test_install_uninstall_purge_in_a_throwaway_root(tmp_path):
    root = _throwaway_root(tmp_path)
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheel_dir), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(wheel_dir.glob("synchub-*.whl"))
    cfg = tmp_path / "field.toml"  # the field example with neural alignment: the largest runtime install
    cfg.write_text((ROOT / "examples" / "field-pi.toml").read_text().replace(
        'restart_s = 2.0', 'restart_s = 2.0\nalign_to = "imu0"\ncommand = ["/bin/cat"]'))
    collector_key = tmp_path / "collector.key"
    subprocess.run([*SYNCHUB, "keys", "new", "collector", "--dir", str(tmp_path)], check=True, capture_output=True)
    r = subprocess.run([*SYNCHUB, "install", "--root", str(root), "--config", str(cfg), "--from", str(wheel),
                        "--collector-key", str(collector_key)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    # keys with owner and mode before the unit is enabled
    chmod = next(i for i, line in enumerate(out) if "chmod 0640 /etc/synchub/keys/field-pi-07.key_secret" in line)
    enable = next(i for i, line in enumerate(out) if line.startswith("enable at boot"))
    assert chmod < enable and "installed synchub (agent)" in out[-1] and "to do" not in r.stdout
    assert _mode_owner(root, D.KEY_DIR) == ("0750", "root", "synchub")
    assert _mode_owner(root, "/etc/synchub/keys/field-pi-07.key_secret") == ("0640", "root", "synchub")
    assert _mode_owner(root, "/etc/synchub/keys/collector.key")[0] == "0644"
    assert _mode_owner(root, D.AGENT_CONFIG) == ("0640", "root", "synchub")
    members = {line.split(":")[0]: line.split(":")[3].split(",") for line in (root / "etc/group").read_text().splitlines()}
    assert all("synchub" in members[g] for g in ("dialout", "audio")) and "synchub" not in members.get("gpio", [])
    dropin = (root / D.DROPIN.lstrip("/")).read_text()
    assert "DeviceAllow=char-alsa rw" in dropin and "DeviceAllow=char-pps r" in dropin
    assert "SupplementaryGroups=audio dialout" in dropin and "gpiochip" not in dropin
    assert (root / "etc/systemd/system/multi-user.target.wants/synchub-agent.service").is_symlink()
    assert (root / "etc/udev/rules.d/70-synchub.rules").exists()
    # the runtime install: small, no torch, no dev tools; the config's extra (neural) in it
    venv = root / "opt/synchub/.venv"
    site = next((venv / "lib").glob("python3*/site-packages"))
    size = sum(p.lstat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink())
    assert size <= 250e6, f"runtime install {size / 1e6:.0f} MB"
    assert not any((site / m).exists() for m in ("torch", "pytest", "ruff", "matplotlib", "hypothesis"))
    assert (site / "onnxruntime").exists() and not (site / "gpiod").exists()  # PPS needs no GPIO library
    r2 = subprocess.run([str(venv / "bin/synchub"), "config", str(root / "etc/synchub/agent.toml")],
                        capture_output=True, text=True, timeout=60)
    assert "field-pi.toml" not in r2.stderr and "no CURVE keys" not in r2.stderr
    assert _verify(root, tmp_path, str(venv / "bin/synchub")) == ""
    print(f"runtime install with the neural extra: {size / 1e6:.0f} MB")

    r = subprocess.run([*SYNCHUB, "uninstall", "--root", str(root)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (root / "opt/synchub").exists() and not (root / "etc/systemd/system/synchub-agent.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/synchub-agent.service").exists()
    assert (root / "etc/synchub/keys/field-pi-07.key_secret").exists() and (root / D.AGENT_CONFIG.lstrip("/")).exists()
    # again without the venv, then purge: the user and the groups install made go too
    r = subprocess.run([*SYNCHUB, "install", "--root", str(root), "--no-venv"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "not started" in r.stdout, r.stderr
    manifest = json.loads((root / "etc/synchub/install-manifest.json").read_text())
    assert manifest["units"] == ["synchub-agent.service"]
    r = subprocess.run([*SYNCHUB, "uninstall", "--root", str(root), "--purge"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert not (root / "etc/synchub").exists() and "synchub:" not in (root / "etc/passwd").read_text()


def test_key_paths_agree_between_units_readmes_and_examples():
    from synchub.agent.config.loader import load_config

    collector = (ROOT / "systemd" / "synchub-collector.service").read_text()
    assert f"--secret-key {D.COLLECTOR_SECRET}" in collector and f"--allow-dir {D.ALLOW_DIR}" in collector
    for example in ("lab-rig.toml", "field-pi.toml"):
        cfg = load_config(ROOT / "examples" / example)
        assert cfg.agent.curve_secret_key == D.agent_keys(cfg.agent.name)[0], example
        assert cfg.agent.collector_public_key == D.COLLECTOR_PUBLIC, example
    for doc in (ROOT / "systemd" / "README.md", ROOT / "README.md"):
        text = doc.read_text()
        assert D.KEY_DIR in text and "synchub install" in text, doc
        assert "/etc/synchub/agent.key_secret" not in text and "/etc/synchub/collector.key " not in text, doc


def test_collector_role_in_a_throwaway_root(tmp_path):
    root = _throwaway_root(tmp_path)
    r = subprocess.run([*SYNCHUB, "install", "--root", str(root), "--role", "collector", "--no-venv"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _mode_owner(root, D.COLLECTOR_SECRET) == ("0640", "root", "synchub")
    assert _mode_owner(root, D.ALLOW_DIR) == ("0750", "root", "synchub")
    assert (root / "etc/systemd/system/multi-user.target.wants/synchub-collector.service").is_symlink()
    assert not (root / "etc/systemd/system/synchub-agent.service").exists()
    assert "allowed_agents" in r.stdout.splitlines()[-1]
    unit = (root / "etc/systemd/system/synchub-collector.service").read_text()
    exe = Path(sys.executable).parent / "synchub"
    (tmp_path / "synchub-collector.service").write_text(unit.replace("/opt/synchub/.venv/bin/synchub", str(exe)))
    v = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "synchub-collector.service")],
                       capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and "synchub" not in v.stdout + v.stderr, v.stdout + v.stderr
    # a second install keeps the key pair (agents hold its public half)
    before = (root / D.COLLECTOR_PUBLIC.lstrip("/")).read_bytes()
    subprocess.run([*SYNCHUB, "install", "--root", str(root), "--role", "collector", "--no-venv"], cwd=ROOT,
                   check=True, capture_output=True, timeout=120)
    assert (root / D.COLLECTOR_PUBLIC.lstrip("/")).read_bytes() == before
