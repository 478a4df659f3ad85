"""``synchub live --connect ENDPOINT``: a refreshing terminal table of what a collector publishes on its ``--live``
PUB socket (``synchub.agent.collector.liveview``).  When the collector has CURVE keys its live socket has them too:
connect with ``--secret-key`` (a key pair whose public key is in the collector's allow-list) and ``--server-key``
(the collector's public key); ``--insecure`` for a plain-text collector."""

from __future__ import annotations

import argparse
import json
import sys
import time

import zmq

from synchub.agent.collector.liveview import LiveView, table
from synchub.agent.transport import wire
from synchub.agent.transport.security import ClientKeys, SecurityError
from synchub.argtypes import nonnegative, positive
from synchub.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connect", required=True, help="the collector's --live endpoint, e.g. tcp://10.0.0.2:7101")
    p.add_argument("--secret-key", help="this viewer's CURVE key pair (NAME.key_secret; its .key in the allow-list)")
    p.add_argument("--server-key", help="the collector's CURVE public key (collector.key)")
    p.add_argument("--insecure", action="store_true", help="plain text (a collector without CURVE keys)")
    p.add_argument("--agent", help="only this agent's streams")
    p.add_argument("--every", type=positive, default=1.0, help="seconds between refreshes")
    p.add_argument("--duration", type=nonnegative, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    p.add_argument("--json", action="store_true", help="print the final rows as JSON (with --duration)")


def _socket(args, ctx: zmq.Context) -> zmq.Socket:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 1000)
    sock.setsockopt(zmq.MAXMSGSIZE, 4 * wire.MAX_FRAME)
    if args.secret_key or args.server_key:
        if not (args.secret_key and args.server_key):
            raise UserError("CURVE needs both --secret-key and --server-key")
        try:
            ClientKeys.load(args.secret_key, args.server_key).apply_client(sock)
        except SecurityError as exc:
            raise UserError(str(exc)) from None
    elif not args.insecure:
        raise UserError("no CURVE keys given (--secret-key FILE --server-key FILE); pass --insecure for a "
                        "plain-text collector")
    sock.setsockopt(zmq.SUBSCRIBE, f"/{args.agent}/".encode() if args.agent else b"")
    try:
        sock.connect(args.connect)
    except zmq.ZMQError as exc:
        raise UserError(f"cannot connect to {args.connect}: {exc}") from None
    return sock


def run(args) -> int:
    ctx = zmq.Context()
    sock = _socket(args, ctx)
    view = LiveView()
    clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() and not args.json else ""
    t_end = time.monotonic() + args.duration if args.duration > 0 else float("inf")
    next_draw = time.monotonic() + args.every
    try:
        while time.monotonic() < t_end:
            if sock.poll(max(1, int(1000 * min(next_draw, t_end) - 1000 * time.monotonic()))):
                frames = sock.recv_multipart(copy=False)
                try:
                    msg = wire.decode(frames[1:])
                except wire.WireError:
                    view.bad += 1
                    continue
                view.add(frames[0].bytes, msg, time.monotonic_ns())
            if time.monotonic() >= next_draw and not args.json:
                next_draw = time.monotonic() + args.every
                print(f"{clear}{table(view.rows(time.monotonic_ns()), args.connect)}\n", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close(0)
        ctx.term()
    rows = view.rows(time.monotonic_ns())
    if args.json:
        print(json.dumps({"endpoint": args.connect, "streams": rows, "bad": view.bad}, indent=1))
    elif args.duration > 0:
        print(table(rows, args.connect))
    if args.duration > 0 and not rows:
        raise UserError(f"no data from {args.connect} within {args.duration:g} s (is the collector's --live "
                        "endpoint right, and are this viewer's CURVE keys in its allow-list?)")
    return 0
