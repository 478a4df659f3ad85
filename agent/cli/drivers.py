"""``synchub drivers``: the stream drivers installed here, built-in and plugins (``synchub.drivers`` entry points),
with their documentation; ``--keys`` adds each driver's config keys, ``--json`` prints JSON.  A plugin that cannot be
loaded is listed with its one-line error (and makes the exit status 1)."""

from __future__ import annotations

import json
import sys

from synchub.agent.core.settings import reference
from synchub.drivers import registry


def add_arguments(p) -> None:
    p.add_argument("--keys", action="store_true", help="each driver's config keys too")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    rows = []
    for name in registry.names():
        try:
            d = registry.load(name)
            rows.append({"name": name, "origin": d.origin, "doc": d.doc, "keys": reference(d.settings)})
        except ImportError as exc:  # a missing extra or a broken plugin: one line, never a traceback
            rows.append({"name": name, "origin": "unavailable", "doc": "", "error": str(exc), "keys": []})
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            if "error" in r:
                print(f"{r['name']:<{width}}  UNAVAILABLE: {r['error']}")
                continue
            where = "" if r["origin"] == "built-in" else f" [{r['origin']}]"
            print(f"{r['name']:<{width}}  {r['doc']}{where}")
            if args.keys:
                for line in r["keys"]:
                    print(" " * (width + 4) + line)
    broken = [r for r in rows if "error" in r and "plugin" in r["error"]]
    for r in broken:
        print(f"synchub drivers: {r['error']}", file=sys.stderr)
    return 1 if broken else 0
