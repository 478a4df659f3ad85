"""``synchub keys``: make and show CURVE key pairs (ZeroMQ certificate files).

    synchub keys new NAME [--dir DIR]        # DIR/NAME.key (public) and DIR/NAME.key_secret (keep private, 0600)
    synchub keys show FILE                   # print the z85 public key of a key file

Ironhouse setup: make a key pair for the collector and one per agent; copy each agent's ``NAME.key`` into the
collector's allow-list directory (``--allow-dir``, e.g. /etc/synchub/allowed_agents/) and the collector's
``.key`` to each agent (``collector_public_key`` in the agent config).
"""

from __future__ import annotations

from pathlib import Path

from synchub.agent.transport.security import SecurityError, load_public, new_pair
from synchub.errors import UserError


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="keys_cmd", metavar="ACTION")
    n = sub.add_parser("new", help="make a key pair NAME.key / NAME.key_secret")
    n.add_argument("name", help="key name (letters, digits, _ . -)")
    n.add_argument("--dir", default=".", help="where to write the files (default: current directory)")
    n.add_argument("--force", action="store_true", help="overwrite existing files")
    s = sub.add_parser("show", help="print the public key of a key file")
    s.add_argument("file")


def run(args) -> int:
    cmd = getattr(args, "keys_cmd", None)
    if cmd == "new":
        d = Path(args.dir)
        for suffix in (".key", ".key_secret"):
            if (d / f"{args.name}{suffix}").exists() and not args.force:
                raise UserError(f"{d / (args.name + suffix)} exists (use --force to overwrite)")
        try:
            public, secret = new_pair(args.name, d)
        except SecurityError as exc:
            raise UserError(str(exc)) from None
        print(f"public key: {public}  (give this to the other side / put it in the allow-list directory)")
        print(f"secret key: {secret}  (keep private, mode 0600)")
        return 0
    if cmd == "show":
        try:
            print(load_public(args.file).decode())
        except SecurityError as exc:
            raise UserError(str(exc)) from None
        return 0
    raise UserError("which action? new NAME [--dir DIR] | show FILE")
