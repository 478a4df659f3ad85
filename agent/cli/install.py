"""``synchub install`` / ``synchub uninstall``: the agent (and/or collector) as systemd services
(``synchub.agent.deploy.install`` does it; README "Real rig", systemd/README.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from synchub.agent.deploy import needs as D
from synchub.agent.deploy.fs import InstallError
from synchub.agent.deploy.install import InstallOptions, install, uninstall
from synchub.errors import UserError


def add_install_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help=f"agent config to install as {D.AGENT_CONFIG} (default: keep the one there)")
    p.add_argument("--role", choices=("agent", "collector", "both"), default="agent", help="which service")
    p.add_argument("--collector-key", metavar="FILE", help="the collector's public key (.key) to install for the agent")
    p.add_argument("--from", dest="source", metavar="WHEEL|DIR", help="the synchub package to install (default: "
                   "this checkout)")
    p.add_argument("--python", default="/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable,
                   help="interpreter of the venv (default: the system's python3)")
    p.add_argument("--no-venv", action="store_true", help="leave /opt/synchub/.venv as it is")
    p.add_argument("--no-start", action="store_true", help="enable the units but do not start them")
    _common(p)


def add_uninstall_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--purge", action="store_true", help="also delete config, keys, /var/lib/synchub (recordings, "
                   "spool) and the user and groups install created")
    _common(p)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default="/", help="install into this root directory instead of / (tests, images)")
    p.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")


add_arguments, run = add_install_arguments, None  # cli picks add_<command>_arguments / run_<command>


def run_install(args) -> int:
    opts = InstallOptions(config=args.config, role=args.role, collector_key=args.collector_key, source=args.source,
                          python=args.python, no_venv=args.no_venv, no_start=args.no_start, root=args.root,
                          dry_run=args.dry_run)
    try:
        install(opts)
    except InstallError as exc:
        raise UserError(str(exc)) from None
    return 0


def run_uninstall(args) -> int:
    try:
        uninstall(args.root, dry_run=args.dry_run, purge=args.purge)
    except InstallError as exc:
        raise UserError(str(exc)) from None
    return 0
