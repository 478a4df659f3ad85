"""``synchub collector``: record agent sessions to MCAP until SIGINT/SIGTERM (files are finalized on exit)."""

from __future__ import annotations

import logging
import math
import signal
import sys
import tempfile
import threading
from pathlib import Path

import zmq

from synchub.agent.cli import collector_nats
from synchub.agent.collector.lsl_tap import LslTap
from synchub.agent.collector.server import Collector
from synchub.agent.pipeline.notify import Notifier
from synchub.agent.transport.endpoints import check_endpoint
from synchub.agent.transport.nats.publish import PublishError
from synchub.agent.transport.security import SecurityError, ServerKeys
from synchub.argtypes import positive
from synchub.drivers.lsl.inlet import LslError
from synchub.errors import UserError

log = logging.getLogger(__name__)

INSECURE_BANNER = """
*****************************************************************************
*  synchub collector running with --insecure: NO ENCRYPTION, NO AUTHENTICATION.
*  Any host that can reach this port can inject data into your recordings.
*  Use CURVE keys (synchub keys) for anything but a closed lab bench.
*****************************************************************************
"""


def add_arguments(p) -> None:
    p.add_argument("--bind", default="tcp://0.0.0.0:7100", help="ZeroMQ endpoint to bind (default %(default)s)")
    p.add_argument("--out", required=True, help="directory for the MCAP files (one per agent session)")
    p.add_argument("--secret-key", help="collector CURVE key pair file (NAME.key_secret from `synchub keys new`)")
    p.add_argument("--allow-dir", help="directory of allowed agent public keys (*.key)")
    p.add_argument("--insecure", action="store_true", help="plain text, no authentication (loud warning)")
    p.add_argument("--live", help="also publish chunks on this PUB endpoint for dashboards (lossy)")
    p.add_argument("--flush-ms", type=positive, default=50.0, help="durability interval: flush+fsync, then ack")
    p.add_argument("--compression", choices=("zstd", "lz4", "none"), default="zstd", help="MCAP chunk compression")
    p.add_argument("--name", help="collector name recorded in the files (default: host name)")
    p.add_argument("--lsl-outlet", action="store_true",
                   help="re-publish every recorded stream of every agent as an LSL outlet on this host (lsl extra)")
    p.add_argument("--lsl-prefix", default="", metavar="P", help="prefix of those outlets' names (AGENT/STREAM follows)")
    collector_nats.add_arguments(p)


def check_args(args) -> None:
    """What the collector would fail on later (or silently get wrong), refused now as a ``UserError``."""
    try:
        check_endpoint(args.bind, bind=True)
        if args.live:
            check_endpoint(args.live, bind=True)
    except ValueError as exc:
        raise UserError(f"--bind/--live: {exc}") from None
    if not (math.isfinite(args.flush_ms) and 1.0 <= args.flush_ms <= 60_000.0):
        raise UserError(f"--flush-ms {args.flush_ms:g}: allowed 1-60000 (milliseconds between flush+fsync+ack)")
    if args.lsl_prefix and not args.lsl_outlet:
        raise UserError("--lsl-prefix: only with --lsl-outlet")
    if args.name is not None and not 1 <= len(args.name) <= 200:
        raise UserError(f"--name: {len(args.name)} characters; allowed 1-200")
    out = Path(args.out)
    if not str(args.out) or (out.exists() and not out.is_dir()):
        raise UserError(f"--out {args.out}: not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise UserError(f"--out {args.out}: cannot write there: {exc.strerror or exc}") from None


def open_lsl(args) -> LslTap | None:
    """The ``--lsl-outlet`` tap, pylsl loaded (missing: one line naming the extra or liblsl), or None."""
    if not args.lsl_outlet:
        return None
    try:
        return LslTap(args.lsl_prefix, args.name or "").open()
    except LslError as exc:
        raise UserError(f"--lsl-outlet: {exc}") from None


def run(args) -> int:
    check_args(args)
    lsl = open_lsl(args)
    if args.nats:
        col = collector_nats.make(args)
        try:
            serve(col, f"collector consuming {col.endpoint}, writing to {args.out}", lsl)
        except PublishError as exc:
            raise UserError(f"collector: {exc.text}") from None
        return 0
    curve = None
    if args.secret_key or args.allow_dir:
        if not (args.secret_key and args.allow_dir):
            raise UserError("CURVE needs both --secret-key and --allow-dir")
        try:
            curve = ServerKeys.load(args.secret_key, args.allow_dir)
        except SecurityError as exc:
            raise UserError(str(exc)) from None
    elif not args.insecure:
        raise UserError("no CURVE keys given (--secret-key FILE --allow-dir DIR); pass --insecure for plain text")
    else:
        print(INSECURE_BANNER, file=sys.stderr)
    try:
        col = Collector(args.bind, args.out, name=args.name, curve=curve, insecure=args.insecure, live=args.live,
                        flush_s=args.flush_ms / 1000.0, compression=args.compression)
    except zmq.ZMQError as exc:
        raise UserError(f"cannot bind {args.bind}: {exc}") from None
    except SecurityError as exc:
        raise UserError(str(exc)) from None
    serve(col, f"collector listening on {col.endpoint}, writing to {args.out}", lsl)
    return 0


def serve(col, banner: str, lsl: LslTap | None = None) -> None:
    """Run a collector (ZeroMQ or NATS) until SIGINT/SIGTERM, with systemd notify and watchdog, then close it;
    ``lsl``: its ``--lsl-outlet`` tap (closed with it)."""
    stop = threading.Event()
    col.lsl = lsl

    def on_signal(signum, frame):
        log.info("collector: %s received, finalizing files", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    notifier = Notifier()
    ticks = [0]

    def on_tick(c):
        ticks[0] += 1
        notifier.watchdog(ticks[0])
        if lsl is not None:
            lsl.sweep(c.sessions)

    print(banner, flush=True)
    notifier.ready(banner)
    try:
        col.run(stop, on_tick=on_tick)
    finally:
        notifier.stopping()
        col.close()
        if lsl is not None:
            lsl.close()
            log.info("collector: LSL outlets closed; %s", lsl.stats())
        st = col.stats()
        log.info("collector: stopped; %d messages, %d samples, bad: %s", st["counts"].get("messages", 0),
                 st["counts"].get("samples", 0), st["bad"] or "none")
        if "unacked" in st:
            log.info("collector: %d held, %d unacked at stop; %s", st["held"], st["unacked"],
                     {k: v for k, v in st["counts"].items() if k.startswith("js_") or "error" in k})
