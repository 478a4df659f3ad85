"""``synchub agent --config FILE``: run the agent until SIGINT/SIGTERM (or ``--duration``).

Under systemd (``Type=notify``): ``READY=1`` once started; ``WATCHDOG=1`` while every loop of the agent turns
(``pipeline/liveness.py``: a missing or silent device does not stop the pings, a stuck loop does); ``STATUS=`` the
one-line summary (``pipeline/status_view.py``), sent when it changes, at most once a second.  ``synchub status``
asks the control socket (``pipeline/control.py``) for the full status.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from synchub.agent.config.loader import load_config, require_streams
from synchub.agent.core.units import now_ns
from synchub.agent.deploy.needs import preflight
from synchub.agent.pipeline.control import ControlServer, choose_path
from synchub.agent.pipeline.monitor import Monitor
from synchub.agent.pipeline.notify import Notifier
from synchub.agent.pipeline.runtime import Agent, AgentError
from synchub.agent.pipeline.status_view import status_line, to_dict
from synchub.argtypes import nonnegative
from synchub.errors import UserError

log = logging.getLogger("synchub.agent")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="agent config (TOML); see `synchub config --reference`")
    p.add_argument("--duration", type=nonnegative, default=0.0, help="stop after this many seconds (0: run until signalled)")
    p.add_argument("--insecure", action="store_true", help="send in plain text (no CURVE); prints a loud warning")
    p.add_argument("--status-every", type=nonnegative, default=5.0, help="seconds between status lines (0: quiet)")
    p.add_argument("--control", default=None, metavar="PATH",
                   help="control socket for `synchub status` (default: agent-NAME.sock in $RUNTIME_DIRECTORY, "
                        "/run/synchub, $XDG_RUNTIME_DIR/synchub or /tmp/synchub-UID; 'none': no socket)")


def _control(args, agent: Agent, monitor: Monitor) -> ControlServer | None:
    if args.control == "none":
        return None
    try:
        path = args.control or choose_path(agent.config.agent.name)
        handlers = {"status": lambda: {"status": to_dict(monitor.snapshot(now_ns()))}}
        return ControlServer(path, handlers).start()
    except OSError as exc:
        raise AgentError(f"control socket: {exc}") from None


def run(args) -> int:
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
    notifier = Notifier()
    # a loop silent for longer than the watchdog's ping interval is dead (half of WatchdogSec, 5 s without one)
    monitor = Monitor(agent, liveness_limit_s=notifier.interval_s)
    control = None
    try:
        agent.start()
        control = _control(args, agent, monitor)
        if agent.rig is not None and hasattr(agent.rig, "pty_paths"):
            for name, path in agent.rig.pty_paths().items():
                print(f"sim device {name}: {path}", file=sys.stderr)
        monitor.watch(now_ns())
        if control is not None:
            monitor.liveness.watch("control", now_ns())
        notifier.ready(status_line(monitor.snapshot(now_ns())))
        _main_loop(args, agent, monitor, notifier, control, stop)
    except AgentError as exc:
        raise UserError(str(exc)) from None
    finally:
        notifier.stopping()
        if control is not None:
            control.stop()
        delivered = agent.stop()
        if agent.delivery:
            print(f"[agent] {agent.delivery}", file=sys.stderr)
    if not delivered:
        raise UserError(f"stopped with data not delivered to the collector: {agent.delivery or 'see the log'}")
    return 0


def _main_loop(args, agent: Agent, monitor: Monitor, notifier: Notifier, control, stop: threading.Event) -> None:
    t_end = time.monotonic() + args.duration if args.duration > 0 else float("inf")
    last_print = last_status = time.monotonic()
    last_dead_log = 0.0
    sent_line = ""
    lv = monitor.liveness
    while not stop.wait(0.25) and time.monotonic() < t_end:
        agent.check()
        now = now_ns()
        lv.beat("main", now)
        if control is not None and control.alive:
            lv.beat("control", control.heartbeat_ns)
        dead = monitor.dead_loops(now)
        if not dead:  # liveness, not data flow: an unplugged device keeps the pings coming
            notifier.keepalive()
        elif time.monotonic() - last_dead_log >= 10.0:  # also outside systemd: a stream that stopped says why
            last_dead_log = time.monotonic()
            log.error("loop(s) not turning: %s%s", ", ".join(dead),
                      "; watchdog pings withheld" if notifier.enabled else "")
        if time.monotonic() - last_status >= 1.0 and (notifier.enabled or args.status_every):
            last_status = time.monotonic()
            line = status_line(monitor.snapshot(now))
            if line != sent_line:
                notifier.status(line)
                sent_line = line
            if args.status_every and time.monotonic() - last_print >= args.status_every:
                last_print = time.monotonic()
                print(f"[agent] {line}", file=sys.stderr)
