"""Typed, frozen settings from TOML tables, with errors that name the file, the key and what is allowed.

A settings class is a frozen dataclass.  Field metadata may carry ``choices`` (allowed values), ``min``/``max``
(inclusive bounds) and ``doc`` (one line for the config reference).  ``build(cls, table, where)`` validates a
TOML table into an instance:

* unknown keys are errors, with a did-you-mean suggestion;
* missing required keys are errors;
* types are checked (int accepted for float; lists become tuples; nested dataclasses and lists of them
  are built recursively);
* choices and bounds are checked: numbers are finite, and one without ``min``/``max`` of its own stays within
  +-``DEFAULT_BOUND``; strings are at most ``MAX_STRING`` characters.

``read_toml(path)`` reads a TOML file into a table (a ``ConfigError`` naming the file when it cannot); everything else
is pure: the loader passes the file's name in ``where``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import types
import typing
from dataclasses import MISSING
from pathlib import Path
from typing import Any, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


#: bound of a numeric setting that names none of its own: above any meant value (a Unix time in seconds fits), and
#: still representable where the agent converts it (4e9 s is 4e18 ns, within int64)
DEFAULT_BOUND = 4_000_000_000
MAX_STRING = 4096  # characters of a string setting (paths, endpoints, names are shorter still where they go)


class ConfigError(ValueError):
    """A config problem: the message names the file, the key and what is allowed."""


@dataclasses.dataclass(frozen=True)
class Where:
    """Where a value sits: the file and the dotted key path."""

    file: str
    key: str = ""

    def child(self, name: str | int) -> Where:
        if isinstance(name, int):
            return Where(self.file, f"{self.key}[{name}]")
        return Where(self.file, f"{self.key}.{name}" if self.key else name)

    def error(self, message: str) -> ConfigError:
        loc = f"{self.file}: {self.key}" if self.key else self.file
        return ConfigError(f"{loc}: {message}")


def suggest(word: str, options) -> str:
    """' (did you mean X?)' for the closest option, or ''."""
    options = [str(o) for o in options]
    close = difflib.get_close_matches(str(word), options, n=1)
    if not close:
        close = [o for o in options if str(word) and (o.startswith(str(word)) or str(word).startswith(o))][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def setting(default: Any = MISSING, *, doc: str = "", choices: tuple | None = None, min=None, max=None):  # noqa: A002
    """A dataclass field with validation metadata."""
    meta = {"doc": doc, "choices": choices, "min": min, "max": max}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple default for list settings")
    if default is MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if dataclasses.is_dataclass(tp):
        return "table"
    if tp is type(None):
        return "nothing"
    return {str: "string", int: "integer", float: "number", bool: "true/false", dict: "table"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(tp: Any, value: Any, where: Where) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:  # one candidate type (a table or nothing): its own error names the key
            raise errors[0]
        raise where.error(f"expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise where.error(f"expected {_type_name(tp)}, got {value!r}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        return tuple(_convert(item_tp, v, where.child(i)) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise where.error(f"expected a table, got {value!r}")
        return build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise where.error(f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise where.error(f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise where.error(f"expected a number, got {value!r}")
        if not math.isfinite(value) or abs(value) > 1e300:
            raise where.error(f"expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise where.error(f"expected a string, got {value!r}")
        if len(value) > MAX_STRING:
            raise where.error(f"string of {len(value)} characters; allowed: at most {MAX_STRING}")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise where.error(f"expected a table, got {value!r}")
        return dict(value)
    raise where.error(f"unsupported setting type {tp!r}")


def build(cls: type, table: dict[str, Any], where: Where):
    """Validate ``table`` into a frozen ``cls`` instance; raise ``ConfigError`` naming file and key."""
    if not isinstance(table, dict):
        raise where.error(f"expected a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in table:
        if key not in fields:
            hint = suggest(key, fields)
            allowed = ", ".join(sorted(fields))
            raise where.child(key).error(f"unknown key{hint}; allowed keys here: {allowed}")
    kwargs = {}
    for name, f in fields.items():
        w = where.child(name)
        if name not in table:
            if f.default is MISSING and f.default_factory is MISSING:
                raise w.error(f"required key missing ({_type_name(hints[name])}){_doc(f)}")
            continue
        value = _convert(hints[name], table[name], w)
        meta = f.metadata or {}
        choices = meta.get("choices")
        if choices is not None:
            values = value if isinstance(value, tuple) else (value,)
            for v in values:
                if v not in choices:
                    hint = suggest(v, choices)
                    raise w.error(f"{v!r} is not allowed{hint}; allowed: {', '.join(map(repr, choices))}")
        lo, hi = _bounds(meta, hints[name])
        if lo is not None and value is not None and value < lo:
            raise w.error(f"{value!r} is too small; allowed: >= {lo}")
        if hi is not None and value is not None and value > hi:
            raise w.error(f"{value!r} is too large; allowed: <= {hi}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise where.error(str(exc)) from None


def _bounds(meta: dict, tp: Any) -> tuple:
    """A numeric setting's (min, max): its own, else ``DEFAULT_BOUND`` (every number has a documented range)."""
    lo, hi = meta.get("min"), meta.get("max")
    base = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    if len(base) == 1 and base[0] in (int, float):
        lo = -DEFAULT_BOUND if lo is None else lo
        hi = DEFAULT_BOUND if hi is None else hi
    return lo, hi


def _doc(f: dataclasses.Field) -> str:
    doc = (f.metadata or {}).get("doc")
    return f": {doc}" if doc else ""


def reference(cls: type, prefix: str = "") -> list[str]:
    """Lines of a config reference for ``cls``: key, type, default, allowed values, doc."""
    hints = typing.get_type_hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        meta = f.metadata or {}
        if f.default is MISSING:
            default = "required"
        elif len(repr(f.default)) > 60:  # nested tables (the standard simulated rig): the doc says what it is
            default = "default: see text"
        else:
            default = f"default {f.default!r}"
        extra = []
        if meta.get("choices"):
            extra.append("one of " + ", ".join(map(repr, meta["choices"])))
        lo, hi = _bounds(meta, hints[f.name])
        if lo is not None:
            extra.append(f">= {lo:g}" if isinstance(lo, float) else f">= {lo}")
        if hi is not None:
            extra.append(f"<= {hi:g}" if isinstance(hi, float) else f"<= {hi}")
        tail = f" ({'; '.join(extra)})" if extra else ""
        lines.append(f"{prefix}{f.name}: {_type_name(hints[f.name])}, {default}{tail}. {meta.get('doc', '')}".rstrip())
        nested = [t for t in (hints[f.name], *typing.get_args(hints[f.name])) if dataclasses.is_dataclass(t)]
        if nested:  # a table of its own: its keys, indented under it
            lines += reference(nested[0], prefix + "  " + f.name + ".")
    return lines


def read_toml(path: str | Path, what: str = "config") -> dict:
    """The table of a TOML file; ``ConfigError`` (naming the file and ``what`` it is) when it cannot be read."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} file: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a usable {what}: arrays or tables nested too deeply") from None
