"""``synchub bench SUBCOMMAND ...``: benchmarks that write JSON.  Each subcommand is a module with
``add_arguments(parser)`` and ``run(args) -> int``, imported only when it runs."""

from __future__ import annotations

import importlib
import sys

from synchub.errors import UserError
from synchub.extras import message

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "throughput": ("synchub.bench.throughput", "agent -> collector -> MCAP samples/s and latency, pylsl side by side"),
    "nats-publish": ("synchub.bench.nats_publish", "one agent's acked JetStream publishes (3-node R3 cluster) vs ZeroMQ"),
    "fleet": ("synchub.bench.fleet.run", "agents -> 3-node NATS cluster -> partition collectors, with kills: lost/dup, latency"),
    "transport": ("synchub.bench.transport", "CURVE on vs off, spool replay rate, samples lost per fault"),
    "sync": ("synchub.bench.sync.run", "timestamp error vs truth per stream and method"),
    "align": ("synchub.bench.align.run", "neural/classical alignment accuracy (--scenario: simulator, --real: corpus)"),
    "align-files": ("synchub.bench.files.run", "aligning XDF/WAV/CSV/MCAP files: vs pyxdf, vs truth, 1 h in bounded memory"),
    "firmware": ("synchub.bench.firmware", "sync box firmware in simavr: flash/RAM, interrupt latency, edge error"),
    "footprint": ("synchub.bench.footprint", "the agent's RSS and CPU with the field example on one core"),
    "lsl-inlet": ("synchub.bench.lsl.inlet", "LSL outlet on a drifting clock: synchub's lsl driver vs LabRecorder+pyxdf"),
    "lsl-outlet": ("synchub.bench.lsl.outlet", "corrected 8-ch float32 re-published as an LSL outlet: samples/s on one core"),
    "export": ("synchub.bench.export", "a 1-hour 8-stream session to XDF (synchub export): seconds and peak RSS"),
    "fallback": ("synchub.bench.fallback", "a trigger-wired, aligned stream whose trigger stops: error with the aligner fallback vs without"),
    "unplug": ("synchub.bench.unplug", "the field example's IMU unplugged for minutes: watchdog, STATUS=, resume, gap"),
    "encoders": ("synchub.bench.encoders", "encoder inference ms per window and per second of data, agent RSS"),
    "soak": ("synchub.bench.soak", "agent + collector for N minutes: RSS and fds over time, samples lost"),
}


def _wanted(argv: list[str]) -> str | None:
    seen_bench = False
    for a in argv:
        if seen_bench and not a.startswith("-"):
            return a
        if a == "bench":
            seen_bench = True
    return None


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="bench", metavar="BENCH")
    wanted = _wanted(sys.argv[1:])
    p.set_defaults(_bench_modules={})
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if wanted not in (None, name):
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            p.get_default("_bench_modules")[name] = exc
            continue
        module.add_arguments(sp)
        p.get_default("_bench_modules")[name] = module


def run(args) -> int:
    if not getattr(args, "bench", None):
        raise UserError(f"which benchmark? one of: {', '.join(SUBCOMMANDS)}")
    module = args._bench_modules.get(args.bench)
    if module is None:
        try:
            module = importlib.import_module(SUBCOMMANDS[args.bench][0])
        except ModuleNotFoundError as exc:
            module = exc
    if isinstance(module, ModuleNotFoundError):
        raise UserError(f"benchmark {args.bench!r}: {message(module.name or '?')}")
    return int(module.run(args) or 0)
