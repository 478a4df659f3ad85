"""``synchub sim``: run the simulated devices alone, print their pty paths, serve until the duration ends or
SIGINT/SIGTERM, then save the truth.

The config is any synchub config with a ``[sim]`` table (an agent config such as ``examples/sim-rig.toml``
works: its streams are ignored here).  ``--links DIR`` makes ``DIR/<device>`` symlinks to the ptys, so a
separate ``synchub agent`` can use ``port = "DIR/imu0"``.  Capture devices (mic0, cam0) and trigger lines live
in-process only: a separate agent cannot read them (use ``[sim]`` in the agent's own config for those).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import time
from pathlib import Path

from synchub.agent.config.loader import load_config
from synchub.argtypes import nonnegative
from synchub.drivers.sim.rig import SimRig
from synchub.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="TOML file with a [sim] table")
    p.add_argument("--duration", type=nonnegative, default=None,
                   help="seconds to run (default: until Ctrl-C or the world's duration_s)")
    p.add_argument("--links", default=None, metavar="DIR", help="make DIR/<device> symlinks to the ptys")
    p.add_argument("--truth", default=None, metavar="FILE", help="save the truth record here (.npz) on exit")
    p.add_argument("--seed", type=int, default=None, help="override [sim].seed")


def load_sim_settings(path: str, seed: int | None = None):
    config = load_config(path)
    if config.sim is None:
        raise UserError(f"{path}: no [sim] table (see examples/sim-rig.toml)")
    sim = config.sim
    if seed is not None:
        sim = dataclasses.replace(sim, seed=seed)
    return sim


def _link(links: Path, name: str, target: str) -> Path:
    link = links / name
    if link.is_symlink() or link.exists():
        if link.is_dir() and not link.is_symlink():
            raise UserError(f"{link} is a directory; cannot make a symlink there")
        link.unlink()
    os.symlink(target, link)
    return link


def run(args) -> int:
    sim = load_sim_settings(args.config, args.seed)
    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration must be > 0")
    rig = SimRig(sim)
    links = Path(args.links) if args.links else None
    if links is not None:
        try:
            links.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--links {links}: {exc.strerror}") from None
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    rig.start()
    linked: dict[str, str] = {}
    try:
        for name in rig.serial_names:
            path = rig.pty_path(name)
            line = f"{name}\t{path}"
            if links is not None:
                line += f"\t{_link(links, name, path)}"
                linked[name] = path
            print(line, flush=True)
        for name in rig.captures:
            print(f"{name}\t(in-process capture device; not reachable from another process)", flush=True)
        for t in sim.triggers:
            print(f"{t.name}\t(in-process trigger train, {1 / t.period_s:g} Hz)", flush=True)
        print(f"synchub sim: serving {len(rig.serial_names)} serial device(s)"
              + (f" for {args.duration:g} s" if args.duration else "") + "; Ctrl-C stops", file=sys.stderr,
              flush=True)
        t_end = time.monotonic() + (args.duration if args.duration else sim.duration_s)
        while not stop.is_set() and rig.running and time.monotonic() < t_end:
            stop.wait(min(0.1, max(0.0, t_end - time.monotonic())))  # a replugged pty is linked within 0.1 s
            for name in linked:  # like a udev link: gone while the device is unplugged, then on its new pty
                try:
                    path = rig.pty_path(name)
                except LookupError:
                    path = ""
                if path != linked[name]:
                    if path:
                        _link(links, name, path)
                    else:
                        (links / name).unlink(missing_ok=True)
                    linked[name] = path
            if rig.errors:
                raise UserError(f"simulated device(s) failed: {', '.join(rig.errors)} (see the log)")
    finally:
        rig.stop()
        for s, h in old.items():
            signal.signal(s, h)
        if links is not None:
            for name in linked:
                try:
                    (links / name).unlink()
                except OSError:
                    pass
    if args.truth:
        truth = rig.truth()
        try:
            truth.save(args.truth)
        except OSError as exc:
            raise UserError(f"--truth {args.truth}: {exc.strerror}") from None
        counts = ", ".join(f"{n}={len(s)}" for n, s in truth.streams.items())
        print(f"synchub sim: truth saved to {args.truth} ({counts})", file=sys.stderr)
    return 0
