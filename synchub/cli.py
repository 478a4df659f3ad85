"""The ``synchub`` command line.

Each subcommand lives in its own module with two functions, ``add_arguments(parser)`` and ``run(args) -> int``,
imported only when that subcommand runs (the agent on a Pi Zero 2 must not import torch or matplotlib).
Errors a user can fix (a config typo, a missing device, an unreachable collector) print one clear line and exit
with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("synchub.demo", "run the simulated rig, an agent and a collector on loopback; report error vs truth"),
    "agent": ("synchub.agent.main", "run the agent from a TOML config"),
    "collector": ("synchub.agent.collector_main", "run a collector that records sessions to MCAP"),
    "sim": ("synchub.drivers.sim.main", "run the simulated devices alone and print their pty paths"),
    "inspect": ("synchub.agent.inspect", "summarize an MCAP recording: streams, rates, counts, gaps, time range"),
    "bench": ("synchub.bench.main", "benchmarks (throughput, sync, align), writing JSON"),
    "train": ("synchub.models.train", "train the per-modality encoders and export ONNX (needs the train extra)"),
    "align": ("synchub.agent.align_main", "rerun clock correction/alignment offline on a recording"),
    "keys": ("synchub.agent.keys", "make CURVE key pairs for agents and collectors"),
    "config": ("synchub.agent.config_main", "check a config file or print the config reference"),
}


class UserError(Exception):
    """An error the user can fix; printed as one line, exit status 2."""


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    from synchub import __version__

    parser = argparse.ArgumentParser(prog="synchub", description="edge sensor-hub agent with hardware-trigger support")
    parser.add_argument("--version", action="version", version=f"synchub {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    wanted = _wanted_command(sys.argv[1:])
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if wanted in (None, name):
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if wanted == name:
                    modules[name] = exc
                continue
            module.add_arguments(p)
            modules[name] = module
    return parser, modules


def _wanted_command(argv: list[str]) -> str | None:
    for a in argv:
        if a in COMMANDS:
            return a
        if not a.startswith("-"):
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser, modules = build_parser()
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.command:
        parser.print_help()
        return 2
    module = modules.get(args.command)
    if isinstance(module, ModuleNotFoundError):
        hint = " (install the train extra: pip install 'synchub[train]')" if module.name == "torch" else ""
        print(f"synchub {args.command}: missing module {module.name!r}{hint}", file=sys.stderr)
        return 2
    if module is None:
        print(f"synchub {args.command}: not available in this build", file=sys.stderr)
        return 2
    from synchub.agent.settings import ConfigError

    try:
        return int(module.run(args) or 0)
    except (UserError, ConfigError) as exc:
        print(f"synchub {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
