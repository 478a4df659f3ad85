"""``synchub agent --config FILE``: run the agent until SIGINT/SIGTERM (or ``--duration``)."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time

from synchub.agent.config.loader import load_config, require_streams
from synchub.agent.deploy.needs import preflight
from synchub.agent.pipeline.notify import notify
from synchub.agent.pipeline.runtime import Agent, AgentError
from synchub.errors import UserError

log = logging.getLogger("synchub.agent")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="agent config (TOML); see `synchub config --reference`")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: run until signalled)")
    p.add_argument("--insecure", action="store_true", help="send in plain text (no CURVE); prints a loud warning")
    p.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines (0: quiet)")


def run(args) -> int:
    for flag, v in (("--duration", args.duration), ("--status-every", args.status_every)):
        if not (math.isfinite(v) and 0 <= v <= 1e9):
            raise UserError(f"{flag} {v:g}: allowed 0-1e9 seconds")
    config = require_streams(load_config(args.config))
    logging.getLogger().setLevel(getattr(logging, config.agent.log_level.upper()))
    # what the agent would refuse later, refused now in one line (an extra that is not installed, plain text
    # without --insecure); missing files and devices are reported by the parts that open them
    refused = [p for p in preflight(config, insecure=args.insecure, exists=lambda _p: True) if p.level == "error"]
    if refused:
        raise UserError(f"{args.config}: {refused[0]}")
    try:
        agent = Agent(config, insecure=args.insecure)
    except AgentError as exc:
        raise UserError(str(exc)) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        agent.start()
        if agent.rig is not None and hasattr(agent.rig, "pty_paths"):
            for name, path in agent.rig.pty_paths().items():
                print(f"sim device {name}: {path}", file=sys.stderr)
        notify("READY=1")
        t_end = time.monotonic() + args.duration if args.duration > 0 else float("inf")
        last_status = time.monotonic()
        last_progress = agent.shipper.last_progress_ns
        while not stop.wait(0.5) and time.monotonic() < t_end:
            agent.check()
            # the watchdog is fed only while the pipeline makes progress
            if agent.shipper.last_progress_ns != last_progress:
                last_progress = agent.shipper.last_progress_ns
                notify("WATCHDOG=1")
            if args.status_every and time.monotonic() - last_status >= args.status_every:
                last_status = time.monotonic()
                st = agent.status()
                line = ", ".join(f"{k}: {v['sent']}" for k, v in st["streams"].items())
                spool = getattr(agent.outlet, "spool", None)  # delivered: acked, durable at the collector
                done = spool.delivered.get(agent.outlet.session, 0) if spool is not None else "?"
                print(f"[agent] spooled {line}; delivered {done} samples; queue {st['queue']}", file=sys.stderr)
    except AgentError as exc:
        raise UserError(str(exc)) from None
    finally:
        notify("STOPPING=1")
        delivered = agent.stop()
        if agent.delivery:
            print(f"[agent] {agent.delivery}", file=sys.stderr)
    if not delivered:
        raise UserError(f"stopped with data not delivered to the collector: {agent.delivery or 'see the log'}")
    return 0

