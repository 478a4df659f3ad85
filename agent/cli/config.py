"""``synchub config``: check a config file, or print the config reference.

A config is checked as ``synchub agent --config FILE`` would run it under the systemd unit (no ``--insecure``):
besides its keys and values, what the agent would refuse on this machine (no CURVE keys, an extra or a program
that is not installed) is an error, and what it would run degraded with a loud warning (``synchub.agent.deploy.needs.preflight``).
"""

from __future__ import annotations

import argparse
import sys

from synchub.agent.config.loader import load_config, require_streams
from synchub.agent.config.reference import reference_text
from synchub.agent.core.settings import ConfigError
from synchub.agent.deploy.needs import preflight


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="config file to check")
    p.add_argument("--reference", action="store_true", help="print every section and key with types and defaults")
    p.add_argument("--insecure", action="store_true", help="check as `synchub agent --insecure` runs it (plain text "
                   "allowed); the systemd unit never passes it")
    p.add_argument("--strict", action="store_true", help="warnings are errors too (what `synchub install` needs "
                   "before it starts the service)")


def run(args) -> int:
    if args.reference:
        print(reference_text())
        return 0
    if not args.file:
        raise ConfigError("give a config file to check, or --reference")
    cfg = require_streams(load_config(args.file))
    problems = preflight(cfg, insecure=args.insecure)
    errors = [p for p in problems if p.level == "error" or args.strict]
    for p in problems:
        if p not in errors:
            print(f"synchub config: WARNING: {args.file}: {p}", file=sys.stderr)
    if errors:
        more = f" (and {len(errors) - 1} more: {'; '.join(map(str, errors[1:]))})" if len(errors) > 1 else ""
        raise ConfigError(f"{args.file}: {errors[0]}{more}")
    print(f"{args.file}: ok — {len(cfg.streams)} streams, {len(cfg.triggers)} triggers"
          f"{', simulated rig' if cfg.sim is not None else ''}")
    for s in cfg.streams:
        print(f"  {s.name}: {s.common.type} via {s.common.driver}")
    return 0
