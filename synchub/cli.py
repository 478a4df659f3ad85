"""The ``synchub`` command line.

Each subcommand lives in its own module with two functions, ``add_arguments(parser)`` and ``run(args) -> int``,
imported only when that subcommand runs (the agent on a Pi Zero 2 must not import torch or matplotlib).
Errors a user can fix (a config typo, a missing device, an unreachable collector, an optional dependency that is
not installed, a closed output pipe) print one clear line and exit with status 2, never a traceback.  ``-v`` works
anywhere on the command line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from synchub import __version__
from synchub.agent.core.settings import ConfigError
from synchub.errors import UserError
from synchub.extras import MissingExtra, message

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("synchub.agent.cli.demo", "run the simulated rig, an agent and a collector on loopback; report error vs truth"),
    "agent": ("synchub.agent.cli.agent", "run the agent from a TOML config"),
    "collector": ("synchub.agent.cli.collector", "run a collector that records sessions to MCAP"),
    "sim": ("synchub.agent.cli.sim", "run the simulated devices alone and print their pty paths"),
    "inspect": ("synchub.agent.cli.inspect_cmd", "summarize a recording (MCAP, XDF, WAV/FLAC, CSV/TSV, EDF, BrainVision, SpikeGLX, Open Ephys, video): streams, rates, counts, gaps, time range"),
    "bench": ("synchub.bench.main", "benchmarks (throughput, sync, align), writing JSON"),
    "train": ("synchub.models.train", "train the per-modality encoders and export ONNX (needs the train extra)"),
    "align": ("synchub.agent.cli.align", "every stream of recordings (XDF, WAV/FLAC, CSV/TSV, MCAP, EDF, BrainVision, SpikeGLX, Open Ephys, video) on one reference clock; rerun a synchub recording"),
    "export": ("synchub.agent.cli.export", "convert a recording to XDF (pyxdf/MNE), CSV, .npy or a Foxglove MCAP, streaming"),
    "keys": ("synchub.agent.cli.keys", "make CURVE key pairs for agents and collectors"),
    "config": ("synchub.agent.cli.config", "check a config file or print the config reference"),
    "drivers": ("synchub.agent.cli.drivers", "list the stream drivers installed (built-in and plugins) and their docs"),
    "install": ("synchub.agent.cli.install", "install the agent/collector as systemd services (/opt/synchub, units, keys)"),
    "uninstall": ("synchub.agent.cli.install", "remove what `synchub install` made (data kept unless --purge)"),
    "live": ("synchub.agent.cli.live", "watch a collector's --live socket: per agent and stream rate, method, sigma"),
    "status": ("synchub.agent.cli.status", "ask running agents (their control sockets) for stream, clock, spool status"),
}


class Parser(argparse.ArgumentParser):
    """Usage errors in one line, exit 2 (the subcommands' parsers are of this class too)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(every_command: bool = False) -> tuple[argparse.ArgumentParser, dict]:
    """The parser for ``sys.argv``: the command named there imported and its arguments added, no other (the top
    level's help, ``synchub`` alone and ``--version`` import none: every module took 3.4 s here, torch among them);
    ``every_command``: each command's arguments (the tests that walk them all)."""
    parser = Parser(prog="synchub", description="edge sensor-hub agent with hardware-trigger support")
    parser.add_argument("--version", action="version", version=f"synchub {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    wanted = _wanted_command(sys.argv[1:])
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if every_command or wanted == name:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if wanted == name:
                    modules[name] = exc
                continue
            adder = getattr(module, f"add_{name}_arguments", module.add_arguments)
            adder(p)
            modules[name] = module
    _verbose_everywhere(parser)
    return parser, modules


def _verbose_everywhere(parser: argparse.ArgumentParser, top: bool = True) -> None:
    """``-v`` on every (sub)parser, so that ``synchub config -v FILE`` works like ``synchub -v config FILE``; below
    the top its default is SUPPRESS, so a subcommand without ``-v`` keeps the top level's value."""
    if not top and not any("-v" in a.option_strings for a in parser._actions):
        parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _verbose_everywhere(sub, top=False)


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
        print(f"synchub {args.command}: {message(module.name or '?')}", file=sys.stderr)
        return 2
    if module is None:
        print(f"synchub {args.command}: not available in this build", file=sys.stderr)
        return 2
    runner = getattr(module, f"run_{args.command}", None) or module.run
    try:
        code = int(runner(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except (UserError, ConfigError, MissingExtra) as exc:
        print(f"synchub {args.command}: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # an optional dependency imported without ``require``
        print(f"synchub {args.command}: {message(exc.name or '?')}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _stdout_to_devnull()
        print(f"synchub {args.command}: output closed early (broken pipe); output is incomplete", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _stdout_to_devnull() -> None:
    """After the reader of stdout went away: point stdout at /dev/null so the final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
