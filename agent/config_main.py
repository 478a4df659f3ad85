"""``synchub config``: check a config file, or print the config reference."""

from __future__ import annotations

import argparse
import importlib

from .config import AgentSettings, ClockSettings, StreamCommon, TriggerSettings, load_config
from .settings import reference


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="config file to check")
    p.add_argument("--reference", action="store_true", help="print every section and key with types and defaults")


def reference_text() -> str:
    from synchub.drivers import registry

    out = []
    for title, cls in (("[agent]", AgentSettings), ("[clock]", ClockSettings), ("[[trigger]]", TriggerSettings),
                       ("[[stream]] (every driver)", StreamCommon)):
        out.append(title)
        out += ["  " + line for line in reference(cls)]
    for name, entry in sorted(registry.DRIVERS.items()):
        try:
            cls = getattr(importlib.import_module(entry.module), entry.settings)
        except (ImportError, AttributeError) as exc:
            out.append(f"[[stream]] driver = {name!r}: unavailable ({exc})")
            continue
        out.append(f"[[stream]] driver = {name!r}: {entry.doc}")
        out += ["  " + line for line in reference(cls)]
    try:
        from synchub.drivers.sim.settings import SimSettings

        out.append("[sim]")
        out += ["  " + line for line in reference(SimSettings)]
    except ImportError:
        pass
    return "\n".join(out)


def run(args) -> int:
    if args.reference:
        print(reference_text())
        return 0
    if not args.file:
        print("give a config file to check, or --reference")
        return 2
    cfg = load_config(args.file)
    print(f"{args.file}: ok — {len(cfg.streams)} streams, {len(cfg.triggers)} triggers"
          f"{', simulated rig' if cfg.sim is not None else ''}")
    for s in cfg.streams:
        print(f"  {s.name}: {s.common.type} via {s.common.driver}")
    return 0
