"""What a config needs from the machine it runs on under systemd, and what the agent would refuse there (pure).

``device_access(config)``: the device classes (``DeviceAllow=``), supplementary groups, extras and Debian programs
its drivers and trigger back ends use; ``dropin_text`` renders them as the agent unit's drop-in and
``sysusers_text`` as the user's group memberships (``synchub install`` writes both).  ``preflight(config)``: the
problems that make ``synchub agent`` refuse to start (or run degraded) under the unit, which passes no
``--insecure``; ``synchub config`` and ``synchub install`` report them.

The one documented place for deployment files (systemd/README.md, examples/, README "Real rig"):

================================  =====================================================================
``/opt/synchub/.venv``            the runtime install (``bin/synchub``)
``/etc/synchub/agent.toml``       the agent's config (root:synchub 0640)
``/etc/synchub/keys/``            CURVE keys (root:synchub 0750): ``NAME.key_secret`` 0640, ``*.key`` 0644;
                                  ``collector.key`` on agents (the collector's public key)
``/etc/synchub/allowed_agents/``  collector: the agents' public keys
``/var/lib/synchub``              state: spool, recordings (``StateDirectory=``)
================================  =====================================================================
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from synchub.agent.transport.security import SecurityError, load_public, load_secret
from synchub.extras import available, hint

PREFIX = "/opt/synchub"
VENV_BIN = f"{PREFIX}/.venv/bin"
CONF_DIR = "/etc/synchub"
KEY_DIR = f"{CONF_DIR}/keys"
ALLOW_DIR = f"{CONF_DIR}/allowed_agents"
AGENT_CONFIG = f"{CONF_DIR}/agent.toml"
STATE_DIR = "/var/lib/synchub"
COLLECTOR_PUBLIC = f"{KEY_DIR}/collector.key"
COLLECTOR_SECRET = f"{KEY_DIR}/collector.key_secret"
UNIT_DIR = "/etc/systemd/system"
DROPIN = f"{UNIT_DIR}/synchub-agent.service.d/50-synchub-devices.conf"
USER = "synchub"

# serial device classes (/proc/devices names) by the start of the port's node name
SERIAL_CLASSES = ("ttyUSB", "ttyACM", "ttyAMA", "ttyS", "ttyTHS")


def agent_keys(name: str) -> tuple[str, str]:
    """(secret, public) key file of agent ``name`` in the key directory."""
    return f"{KEY_DIR}/{name}.key_secret", f"{KEY_DIR}/{name}.key"


def serial_classes(port: str) -> tuple[str, ...]:
    """The ``char-*`` classes a serial port may be: exact for /dev/ttyXXXn, the likely ones for stable links."""
    if port.startswith(("sim:", "socket://", "rfc2217://", "loop://")):
        return ()
    base = os.path.basename(port)
    for cls in sorted(SERIAL_CLASSES, key=len, reverse=True):
        if base.startswith(cls):
            return (cls,)
    if "/serial/by-id/" in port or "/serial/by-path/" in port:
        return ("ttyUSB", "ttyACM")  # a USB bridge or a CDC-ACM device
    if base in ("serial0", "serial1"):  # Raspberry Pi aliases: PL011 or mini UART
        return ("ttyAMA", "ttyS")
    return SERIAL_CLASSES  # unknown name (a udev symlink): any serial class


@dataclass
class Access:
    """Devices (``(spec, rw)`` for ``DeviceAllow=``), groups, extras and Debian programs a config needs; ``why``
    says which stream or trigger asked for each device."""

    devices: dict[str, str] = field(default_factory=dict)
    groups: set[str] = field(default_factory=set)
    extras: set[str] = field(default_factory=set)
    programs: dict[str, str] = field(default_factory=dict)  # program -> Debian package
    why: dict[str, list[str]] = field(default_factory=dict)

    def allow(self, spec: str, perm: str, who: str) -> None:
        old = self.devices.get(spec, "")
        self.devices[spec] = "".join(c for c in "rw" if c in old + perm)
        self.why.setdefault(spec, []).append(who)


def _gpio(access: Access, backend: str, who: str) -> None:
    if backend == "gpiod":
        access.allow("char-gpiochip", "rw", who)
        access.groups.add("gpio")
        access.extras.add("gpio")
    elif backend == "rpi-gpio":  # RPi.GPIO maps /dev/gpiomem (Pi 0-4); Pi 5 kernels name it gpiomem0..4
        access.allow("/dev/gpiomem", "rw", who)
        access.allow("char-gpiochip", "rw", who)
        access.groups.add("gpio")
        access.extras.add("rpi")
    elif backend == "pps":
        access.allow("char-pps", "r", who)
        access.groups.add("dialout")  # systemd/70-synchub.rules: /dev/pps* root:dialout 0660


def device_access(config) -> Access:
    """What ``config`` (an ``agent.config.Config``) needs from the machine."""
    a = Access()
    for t in config.triggers:
        _gpio(a, t.backend, f"trigger {t.name}")
    for s in config.streams:
        who, drv = f"stream {s.name}", s.common.driver
        if drv in ("serial", "syncbox"):
            for cls in serial_classes(s.driver.port):
                a.allow(f"char-{cls}", "rw", who)
            if serial_classes(s.driver.port):
                a.groups.add("dialout")
        elif drv == "gpio":
            _gpio(a, s.driver.backend, who)
        elif drv == "alsa":
            a.allow("char-alsa", "rw", who)
            a.groups.add("audio")
            if not s.driver.command:
                a.programs["arecord"] = "alsa-utils"
        elif drv == "lsl":
            a.extras.add("lsl")  # pylsl; on aarch64 liblsl too (README: liblsl)
        elif drv == "v4l2":
            a.allow("char-video4linux", "rw", who)
            a.groups.add("video")
            if not s.driver.command:
                a.programs["ffmpeg"] = "ffmpeg"
    if config.lsl.outlet:
        a.extras.add("lsl")
    if needs_encoders(config):
        a.extras.add("neural")
    return a


def needs_encoders(config) -> list[str]:
    """What runs the ONNX encoders: streams aligned with ``align_to`` (neural/hybrid/auto) and the fusion."""
    out = [f"stream {s.name} (align_to = {s.common.align_to!r})" for s in config.streams
           if s.common.align_to and s.common.method in ("neural", "hybrid", "auto")]
    if config.agent.fusion:
        out.append("agent.fusion")
    return out


def dropin_text(access: Access, config_file: str = "") -> str:
    """The agent unit's drop-in: the device allow-list and groups replace the unit's defaults."""
    lines = ["# Written by `synchub install` from " + (config_file or "the agent config") + ": the devices and groups",
             "# its streams and triggers use.  Rerun `synchub install` after changing the config.", "[Service]",
             "DevicePolicy=closed", "DeviceAllow="]
    for spec in sorted(access.devices):
        lines.append(f"# {', '.join(access.why[spec])}")
        lines.append(f"DeviceAllow={spec} {access.devices[spec]}")
    lines += ["SupplementaryGroups=", f"SupplementaryGroups={' '.join(sorted(access.groups))}" if access.groups else ""]
    return "\n".join(line for line in lines if line) + "\n"


def sysusers_text(groups) -> str:
    """systemd-sysusers config: the ``synchub`` user and its memberships (``m`` creates a missing group)."""
    lines = ["# systemd-sysusers (written by `synchub install`): the synchub user and the groups its agent joins.",
             f'u {USER} - "synchub sensor hub" {STATE_DIR} /usr/sbin/nologin']
    lines += [f"m {USER} {g}" for g in sorted(groups)]
    return "\n".join(lines) + "\n"


def unit_text(template: str, prefix: str = PREFIX) -> str:
    """A unit from systemd/ with its ``ExecStart`` pointing at ``prefix``'s venv."""
    return template.replace("/opt/synchub/.venv/bin/", f"{prefix}/.venv/bin/")


@dataclass(frozen=True)
class Problem:
    level: str  # "error": the agent refuses to start; "warning": it starts, degraded or surprising
    key: str
    text: str

    def __str__(self) -> str:
        return f"{self.key}: {self.text}" if self.key else self.text


def _nats_needs(ag, insecure: bool, exists, have_module) -> list[Problem]:
    """``transport = "nats"``: credentials and the site CA (plain text only with --insecure), nats-py installed."""
    out = []
    if not have_module("nats"):
        out.append(Problem("error", "agent.transport", f"the NATS transport needs nats-py{hint('nats')}"))
    for key, path, what in (("agent.nats_credentials", ag.nats_credentials, "credentials (a key file)"),
                            ("agent.nats_ca", ag.nats_ca, "the site CA to check the servers' TLS certificates")):
        if not path and not insecure:
            out.append(Problem("error", key, f"NATS without {what}: the agent refuses unless run with --insecure"))
        elif path and not exists(path):
            out.append(Problem("warning", key, f"{path} does not exist on this machine: the agent refuses to start "
                               "until it does"))
    return out


def preflight(config, *, insecure: bool = False, exists=os.path.exists, have_module=available,
              have_program=shutil.which) -> list[Problem]:
    """What ``synchub agent --config`` (without ``--insecure`` unless given) would refuse or run degraded with, on
    this machine: ``exists``/``have_module``/``have_program`` look at it (injectable for tests)."""
    out: list[Problem] = []
    ag = config.agent
    secret, public = ag.curve_secret_key, ag.collector_public_key
    if ag.transport == "nats":
        out += _nats_needs(ag, insecure, exists, have_module)
        secret = public = ""
    elif not secret and not public and not insecure:
        out.append(Problem("error", "agent", "no CURVE keys (curve_secret_key, collector_public_key): the agent "
                           "refuses plain text unless run with --insecure, which the systemd unit does not pass; "
                           f"`synchub install` makes them in {KEY_DIR} (check a plain-text config with --insecure)"))
    elif bool(secret) != bool(public):
        missing = "collector_public_key" if secret else "curve_secret_key"
        out.append(Problem("error", f"agent.{missing}", "CURVE needs both curve_secret_key and collector_public_key"))
    for key, path in (("agent.curve_secret_key", secret), ("agent.collector_public_key", public)):
        if not path:
            continue
        if not exists(path):
            out.append(Problem("error", key, f"{path} does not exist on this machine: the agent refuses to start "
                               "until it does"))
        elif os.path.isfile(path):  # a key file that is there must be one (install checks before it makes them)
            try:
                (load_secret if key.endswith("secret_key") else load_public)(path)
            except SecurityError as exc:
                out.append(Problem("error", key, str(exc)))
        if not path.startswith(KEY_DIR + "/"):
            out.append(Problem("warning", key, f"{path} is outside {KEY_DIR}, where `synchub install` gives keys "
                               "the owner and mode the unit's user can read"))
    users = needs_encoders(config)
    if users and not have_module("onnxruntime"):
        out.append(Problem("error", "", f"{users[0]} runs the ONNX encoders: onnxruntime is not installed"
                           f"{hint('onnxruntime')}"))
    lsl = [s.name for s in config.streams if s.common.driver == "lsl"]
    if lsl and not have_module("pylsl"):
        out.append(Problem("error", f"stream {lsl[0]}", f"driver 'lsl' needs pylsl, which is not installed{hint('pylsl')}"))
    if config.lsl.outlet and not have_module("pylsl"):
        out.append(Problem("error", "lsl.outlet", f"LSL outlets need pylsl, which is not installed{hint('pylsl')}"))
    for t in config.triggers:
        mod = {"gpiod": "gpiod", "rpi-gpio": "RPi.GPIO"}.get(t.backend)
        if mod and not have_module(mod.split(".")[0]):
            out.append(Problem("error", f"trigger {t.name}", f"back end {t.backend!r} needs {mod}, which is not "
                               f"installed{hint(mod)}"))
    if ag.spool_dir and not ag.spool_dir.startswith(STATE_DIR):
        out.append(Problem("warning", "agent.spool_dir", f"{ag.spool_dir} is read-only under the unit "
                           f"(ProtectSystem=strict); leave it empty for a spool in {STATE_DIR}"))
    for prog, pkg in sorted(device_access(config).programs.items()):
        if not have_program(prog):
            out.append(Problem("error", "", f"{prog} is not installed (Debian package {pkg}): the agent refuses "
                               "to start the streams that capture through it"))
    return out
