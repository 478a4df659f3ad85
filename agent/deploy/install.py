"""Installing the agent (and/or collector) as systemd services (``synchub install``/``uninstall``: agent/cli/install.py).

Install, in this order, printing each step (``--dry-run``: print only; ``--root DIR``: into a throwaway root):

1. check the config as the unit will run it (``needs.preflight``): nothing changes if it would be refused;
2. ``/opt/synchub/.venv``: a venv with the runtime package plus the extras the config needs (``gpio``, ``rpi``,
   ``neural``; never torch);
3. the ``synchub`` user and its groups (``/usr/lib/sysusers.d/synchub.conf``, ``systemd-sysusers``);
4. ``/etc/synchub`` and ``/etc/synchub/keys`` (root:synchub 0750), the agent's key pair (secret root:synchub 0640),
   the collector's public key (``--collector-key``), the config as ``/etc/synchub/agent.toml`` (root:synchub 0640):
   all before any unit is enabled;
5. the units, the agent's device drop-in (``DeviceAllow=``/``SupplementaryGroups=`` from the config) and the udev
   rules; then ``systemctl enable``, and ``--now`` only when nothing is missing (otherwise the line says what is).

``synchub uninstall`` disables the units and removes what install made (its manifest,
``/etc/synchub/install-manifest.json``); the config, keys, the user and ``/var/lib/synchub`` (spool, recordings) stay
unless ``--purge``, which also deletes the user and the groups install created.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import synchub
from synchub.agent.config.loader import load_config
from synchub.agent.transport.security import SecurityError, new_pair

from . import needs as D
from .fs import MANIFEST, Fs, InstallError

UNITS = {"agent": "synchub-agent.service", "collector": "synchub-collector.service"}


def template(name: str) -> str:
    return resources.files("synchub.systemd").joinpath(name).read_text()


def default_source() -> str | None:
    """The checkout this synchub runs from (an editable install), if any."""
    top = Path(synchub.__file__).resolve().parents[1]
    return str(top) if (top / "pyproject.toml").exists() else None


def _config(fs: Fs, args: InstallOptions):
    if args.config:
        return load_config(args.config), Path(args.config).read_text()
    if fs.exists(D.AGENT_CONFIG):
        return load_config(fs.p(D.AGENT_CONFIG)), None
    return None, None


def _program_in_root(fs: Fs):
    return lambda prog: any(fs.exists(f"{d}/{prog}") for d in ("/usr/bin", "/bin", "/usr/sbin", "/usr/local/bin"))


@dataclass(frozen=True)
class InstallOptions:
    """``synchub install``'s options (see its ``--help``)."""

    config: str | None = None
    role: str = "agent"
    collector_key: str | None = None
    source: str | None = None
    python: str = sys.executable
    no_venv: bool = False
    no_start: bool = False
    root: str = "/"
    dry_run: bool = False


def install(args: InstallOptions) -> None:
    """Install as the module docstring says, printing each step; ``InstallError`` says what stopped it."""
    fs = Fs(args.root, dry_run=args.dry_run)
    roles = ("agent", "collector") if args.role == "both" else (args.role,)
    cfg, cfg_text = _config(fs, args) if "agent" in roles else (None, None)
    access = D.device_access(cfg) if cfg is not None else D.Access(groups={"dialout", "gpio"})
    later: list[str] = []  # what still keeps the agent from starting
    if cfg is not None:
        extras = access.extras
        problems = D.preflight(cfg, have_module=lambda m: True, have_program=_program_in_root(fs),
                               exists=lambda p: True)  # keys are made below; extras go into the venv
        for pr in problems:
            if pr.level == "error" and ("CURVE" in pr.text or pr.key.startswith("agent.")):
                raise InstallError(f"{args.config or D.AGENT_CONFIG}: {pr.key}: the unit's agent needs CURVE keys; add "
                                f"curve_secret_key = \"{D.agent_keys(cfg.agent.name)[0]}\" and collector_public_key = "
                                f"\"{D.COLLECTOR_PUBLIC}\" to [agent] (install makes the pair there)")
            (later.append if pr.level == "error" else lambda t: print(f"warning: {t}"))(str(pr))
    else:
        extras = set()
        if "agent" in roles:
            later.append(f"no agent config: install one with --config FILE (it becomes {D.AGENT_CONFIG})")
    try:
        _venv(fs, args, extras)
        _users(fs, access.groups if "agent" in roles else set())
        fs.mkdir(D.CONF_DIR, 0o750, "root:synchub", tag="config")
        fs.mkdir(D.KEY_DIR, 0o750, "root:synchub", tag="config")
        if "agent" in roles and cfg is not None:
            later += _agent_files(fs, args, cfg, cfg_text)
        if "collector" in roles:
            _collector_files(fs)
        _units(fs, roles, access, args.config or D.AGENT_CONFIG)
        started = _activate(fs, roles, later, args.no_start)
        fs.save_manifest(fs.load_manifest())
    except InstallError:
        fs.save_manifest(fs.load_manifest())  # what was made so far can still be uninstalled
        raise
    where = "" if fs.live else f" under {fs.root}"
    print(f"{'would install' if args.dry_run else 'installed'} synchub ({', '.join(roles)}){where}; "
          f"{'started: ' + ', '.join(started) if started else 'not started'}")
    for item in later:
        print(f"to do before it starts: {item}")
    if "collector" in roles:
        print(f"collector: copy {D.COLLECTOR_PUBLIC} to each agent (synchub install --collector-key FILE there) and "
              f"each agent's public key into {D.ALLOW_DIR}/")


def _venv(fs: Fs, args, extras: set[str]) -> None:
    if args.no_venv:
        return
    source = args.source or default_source()
    if source is None:
        raise InstallError("which synchub to install? give --from WHEEL or --from DIR (a checkout)")
    spec = source + (f"[{','.join(sorted(extras))}]" if extras else "")
    venv = f"{D.PREFIX}/.venv"
    fs.mkdir(D.PREFIX, 0o755, tag="program")
    fs.run([args.python, "-m", "venv", str(fs.p(venv))], "create the venv")
    fs._record("dirs", venv, True, "venv")
    fs.run([str(fs.p(venv) / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", spec],
           f"install the runtime package{' with ' + ', '.join(sorted(extras)) if extras else ''}")


def _users(fs: Fs, groups: set[str]) -> None:
    before = {g: fs.gid(g) is not None for g in groups | {D.USER}}
    user_before = fs.uid(D.USER) is not None
    conf = "/usr/lib/sysusers.d/synchub.conf"
    fs.write(conf, D.sysusers_text(groups))
    fs.run(["systemd-sysusers"] + ([] if fs.live else [f"--root={fs.root}"]) + [str(fs.p(conf))],
           "create the synchub user and groups")
    if not fs.dry_run:
        fs.manifest["users"] += [] if user_before else [D.USER]
        fs.manifest["groups"] += sorted(g for g, had in before.items() if not had and fs.gid(g) is not None)


def _agent_files(fs: Fs, args, cfg, cfg_text) -> list[str]:
    todo = []
    secret = cfg.agent.curve_secret_key
    public = secret[: -len("_secret")] if secret.endswith(".key_secret") else ""
    if not secret.endswith(".key_secret"):
        todo.append(f"agent.curve_secret_key {secret} must be a NAME.key_secret file")
    elif not fs.exists(secret):
        fs._note(f"make the agent's key pair {public}, {secret}")
        if not fs.dry_run:
            fs.p(secret).parent.mkdir(parents=True, exist_ok=True)
            try:
                new_pair(Path(secret).name[: -len(".key_secret")], fs.p(secret).parent)
            except SecurityError as exc:
                raise InstallError(f"agent.curve_secret_key {secret}: {exc}") from None
            fs._record("files", secret, True, "key")
            fs._record("files", public, True, "key")
    if secret.endswith(".key_secret"):
        fs.set_mode(secret, 0o640, "root:synchub")
        fs.set_mode(public, 0o644, "root:root")
    collector = cfg.agent.collector_public_key
    if args.collector_key:
        try:
            fs.write(collector, Path(args.collector_key).read_bytes(), 0o644, tag="key")
        except OSError as exc:
            raise InstallError(f"--collector-key {args.collector_key}: {exc.strerror}") from None
    elif not fs.exists(collector):
        todo.append(f"the collector's public key at {collector} (synchub install --collector-key FILE)")
    if cfg_text is not None:
        fs.write(D.AGENT_CONFIG, cfg_text, 0o640, "root:synchub", tag="config")
    return todo


def _collector_files(fs: Fs) -> None:
    fs.mkdir(D.ALLOW_DIR, 0o750, "root:synchub", tag="config")
    if not fs.exists(D.COLLECTOR_SECRET):
        fs._note(f"make the collector's key pair {D.COLLECTOR_PUBLIC}, {D.COLLECTOR_SECRET}")
        if not fs.dry_run:
            new_pair("collector", fs.p(D.KEY_DIR))
            fs._record("files", D.COLLECTOR_SECRET, True, "key")
            fs._record("files", D.COLLECTOR_PUBLIC, True, "key")
    fs.set_mode(D.COLLECTOR_SECRET, 0o640, "root:synchub")


def _units(fs: Fs, roles, access: D.Access, config_file: str) -> None:
    for role in roles:
        fs.write(f"{D.UNIT_DIR}/{UNITS[role]}", D.unit_text(template(UNITS[role])))
    if "agent" in roles:
        fs.write(D.DROPIN, D.dropin_text(access, config_file))
        fs._record("dirs", str(Path(D.DROPIN).parent), True, "dropin")
    fs.write("/etc/udev/rules.d/70-synchub.rules", template("70-synchub.rules"))


def _activate(fs: Fs, roles, later: list[str], no_start: bool) -> list[str]:
    units = [UNITS[r] for r in roles]
    fs.manifest["units"] += units
    if fs.live:
        fs.run(["systemctl", "daemon-reload"], "reload systemd")
        fs.run(["udevadm", "control", "--reload"], "reload udev rules", check=False)
        fs.run(["udevadm", "trigger", "--subsystem-match=tty", "--subsystem-match=gpio", "--subsystem-match=pps"],
               "apply them to present devices", check=False)
    root = [] if fs.live else [f"--root={fs.root}"]
    fs.run(["systemctl", *root, "enable", *units], "enable at boot")
    startable = [u for u in units if not (u == UNITS["agent"] and later)]
    if not fs.live or no_start or not startable:
        return []
    fs.run(["systemctl", "restart", *startable], "start now")
    return startable


def uninstall(root: str = "/", dry_run: bool = False, purge: bool = False) -> None:
    """Remove what ``install`` made (its manifest); the config, keys and recordings stay unless ``purge``."""
    fs = Fs(root, dry_run=dry_run)
    m = fs.load_manifest()
    if m is None:
        raise InstallError(f"nothing to uninstall: no {fs.p(MANIFEST)} (written by synchub install)")
    units = m.get("units", [])
    root = [] if fs.live else [f"--root={fs.root}"]
    if units:
        fs.run(["systemctl", *root, "disable", *(["--now"] if fs.live else []), *units], "stop and disable",
               check=False)
    keep = set() if purge else {"config", "key"}
    for e in m.get("files", []):
        if e["tag"] not in keep:
            fs.remove(e["path"])
    for e in sorted(m.get("dirs", []), key=lambda e: -len(e["path"])):
        if e["tag"] not in keep:
            (fs.remove if e["tag"] == "venv" else fs.rmdir_if_empty)(e["path"])
    if purge:
        for d in (D.ALLOW_DIR, D.KEY_DIR, D.CONF_DIR, D.STATE_DIR):
            fs.remove(d)
        for user in m.get("users", []):
            fs.run(["userdel", *([] if fs.live else ["--root", str(fs.root)]), user], f"delete user {user}", False)
        for group in m.get("groups", []):
            if group != D.USER:
                fs.run(["groupdel", *([] if fs.live else ["--root", str(fs.root)]), group], f"delete group {group}",
                       False)
    if fs.live:
        fs.run(["systemctl", "daemon-reload"], "reload systemd", check=False)
        fs.run(["udevadm", "control", "--reload"], "reload udev rules", check=False)
    if not purge and not fs.dry_run:  # what stays is still install's, for a later --purge
        left = {k: [e for e in m.get(k, []) if e["tag"] in keep] for k in ("files", "dirs")}
        fs.p(MANIFEST).write_text(json.dumps({**left, "users": m.get("users", []), "groups": m.get("groups", []),
                                              "units": []}, indent=1) + "\n")
    fs.rmdir_if_empty(D.PREFIX)
    kept = "" if purge else f"; kept {D.CONF_DIR} (config, keys) and {D.STATE_DIR} (use --purge to delete)"
    print(f"{'would uninstall' if dry_run else 'uninstalled'} synchub{kept}")
