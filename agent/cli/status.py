"""``synchub status``: ask running agents over their local control sockets (``synchub.agent.pipeline.control``) and
print per stream state, rate, last sample age, clock method, sigma and lock, gaps; the spool; the connection.
``--json`` for scripts, ``--watch`` for a refreshing view.  No agent running: one line, exit status 2."""

from __future__ import annotations

import argparse
import json
import sys
import time

from synchub.agent.pipeline.control import find_sockets, request, socket_dirs, socket_name
from synchub.agent.pipeline.status_view import from_dict, table
from synchub.argtypes import positive
from synchub.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--socket", help="the agent's control socket (default: every agent-*.sock in the usual places)")
    p.add_argument("--name", help="only the agent with this [agent] name")
    p.add_argument("--json", action="store_true", help="print the status as JSON (a list, one object per agent)")
    p.add_argument("--watch", type=positive, nargs="?", const=1.0, default=None, metavar="SECONDS",
                   help="refresh every SECONDS (default 1) until Ctrl-C")
    p.add_argument("--timeout", type=positive, default=2.0, help="seconds to wait for an agent's answer")


def _sockets(args) -> list:
    if args.socket:
        return [args.socket]
    found = find_sockets()
    if args.name:
        found = [p for p in found if p.name == socket_name(args.name)]
    if not found:
        where = ", ".join(str(d) for d in socket_dirs())
        who = f"named {args.name!r} " if args.name else ""
        raise UserError(f"no agent {who}running (no control socket in {where}); start one with "
                        "`synchub agent --config FILE` or `systemctl start synchub-agent`")
    return found


def _ask(path, timeout: float) -> dict:
    try:
        answer = request(path, "status", timeout=timeout)
    except FileNotFoundError:
        raise UserError(f"no agent running at {path} (no such socket)") from None
    except ConnectionRefusedError:
        raise UserError(f"no agent running at {path} (stale socket: the agent is gone)") from None
    except PermissionError:
        raise UserError(f"cannot talk to the agent at {path}: permission denied (be in group synchub, or root)") \
            from None
    except TimeoutError:
        raise UserError(f"the agent at {path} did not answer within {timeout:g} s") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"the agent at {path} gave no status: {exc}") from None
    if "error" in answer or "status" not in answer:
        raise UserError(f"the agent at {path}: {answer.get('error', 'no status in its answer')}")
    return answer["status"]


def _render(args, statuses: list[dict]) -> str:
    if args.json:
        return json.dumps(statuses, indent=1)
    return "\n\n".join(table(from_dict(s)) for s in statuses)


def run(args) -> int:
    paths = _sockets(args)
    if args.watch is None:
        print(_render(args, [_ask(p, args.timeout) for p in paths]))
        return 0
    clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
    try:
        while True:
            text = _render(args, [_ask(p, args.timeout) for p in _sockets(args)])
            print(f"{clear}{time.strftime('%H:%M:%S')}  (Ctrl-C stops)\n{text}", flush=True)
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0
