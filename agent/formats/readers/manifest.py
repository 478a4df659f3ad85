"""A small TOML manifest naming the inputs of ``synchub align`` and their options, instead of flags.

    reference = "mic"            # optional: the stream whose clock is the reference
    out = "aligned.xdf"          # optional, as are json and plot (the command line's flags win)

    [[input]]
    path = "session.xdf"

    [[input]]
    path = "mic.wav"
    sync_kind = "click"          # any InputOptions field (base.py)

    [[input]]
    paths = ["rig-p1.mcap", "rig-p2.mcap"]   # the parts of one synchub session

Relative paths are relative to the manifest's folder.  A bad manifest (not TOML, an unknown key, an input without
a path, an option out of range) is a one-line ``InputError`` naming the manifest and the input.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .base import InputError, InputOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOP_KEYS = ("reference", "out", "json", "plot", "input")


@dataclass
class Manifest:
    inputs: list[tuple[list[str], InputOptions]]
    reference: str | None = None
    out: str | None = None
    json: str | None = None
    plot: str | None = None


def load_manifest(path) -> Manifest:
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a TOML manifest ({exc})") from None
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise InputError(path, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(TOP_KEYS)}")
    entries = doc.get("input", [])
    if not isinstance(entries, list) or not entries:
        raise InputError(path, "no [[input]] entries")
    base = p.parent
    inputs = []
    for i, e in enumerate(entries, 1):
        if not isinstance(e, dict):
            raise InputError(path, f"input {i}: not a table")
        e = dict(e)
        paths = e.pop("paths", None)
        one = e.pop("path", None)
        if paths is None and one is None:
            raise InputError(path, f"input {i}: no path")
        files = [one] if one is not None else list(paths)
        if not files or not all(isinstance(f, str) and f for f in files):
            raise InputError(path, f"input {i}: path(s) must be non-empty strings")
        try:
            opts = InputOptions.from_dict(e)
        except (TypeError, ValueError) as exc:
            raise InputError(path, f"input {i}: {exc}") from None
        inputs.append(([str(f if Path(f).is_absolute() else base / f) for f in files], opts))
    out = {k: doc.get(k) for k in ("reference", "out", "json", "plot")}
    for k, v in out.items():
        if v is not None and not isinstance(v, str):
            raise InputError(path, f"{k} must be a string")
    resolve = {k: (v if v is None or k == "reference" or Path(v).is_absolute() else str(base / v))
               for k, v in out.items()}
    return Manifest(inputs, resolve["reference"], resolve["out"], resolve["json"], resolve["plot"])
