"""MCAP files synchub did not write (Foxglove, ROS 2 bridges, other loggers), JSON-encoded channels: each channel a
stream, read a message at a time.

A channel's stream is named after its topic (``/imu/accel`` -> ``imu.accel``).  Its samples' time is the message's
``log_time`` (ns, the recorder's clock; the file's own clock for the alignment), or the field named by
``time_col`` (seconds as a number, or a Foxglove/ROS time ``{sec, nsec}``/``{sec, nanosec}``: the publisher's
clock).  The first message decides the channels: a channel whose messages say something (a ``message``/``msg``/``text``/
``data``/``label``/``event``/``marker`` text field) is a marker stream of that text; else its numeric fields, one
level of nesting flattened (``{"x", "y", "z"}`` of a vector is ``accel.x``, ...), make a ``double64`` stream; else
its first text field makes a marker stream.  A later message
without one of the fields has NaN there; one with no time is skipped and counted.  Channels in other encodings
(protobuf, ROS 1/2 messages, flatbuffers) are listed as warnings; a file with no readable channel is an
``InputError``.  ``is_synchub_mcap`` tells synchub's own recordings (``mcap_parts``) from these.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import numpy as np
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader

from synchub.agent.core.stream import StreamInfo
from synchub.agent.formats.mcap_layout import MAGIC

from .base import FileStream, InputError, InputOptions, Piece

BATCH = 4096
TEXT_FIELDS = ("message", "msg", "text", "data", "label", "event", "marker")
SCAN_RECORDS = 10_000


def is_synchub_mcap(path) -> bool:
    """Whether ``path`` is synchub's own MCAP (a ``synchub.*`` schema before the first message).  A file that is not
    MCAP, or cannot be read, counts as synchub's: its reader says what is wrong with it."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return True
            f.seek(0)
            for k, rec in enumerate(StreamReader(f, validate_crcs=False).records):
                if isinstance(rec, Schema) and rec.name.startswith("synchub."):
                    return True
                if isinstance(rec, Message) or k > SCAN_RECORDS:
                    return False
    except Exception:  # noqa: BLE001 - a broken file: mcap_parts reports it, in one line
        return True
    return False


def _leaves(d: dict) -> dict[str, object]:
    """Top-level fields and one level of nested ones (``a.b``)."""
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                if not isinstance(v2, dict | list):
                    out[f"{k}.{k2}"] = v2
        elif not isinstance(v, list):
            out[k] = v
    return out


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def stamp_ns(v) -> int | None:
    """A time field: seconds (number) or ``{sec, nsec|nanosec}``; None when it is neither."""
    if _is_number(v):
        return int(round(float(v) * 1e9)) if np.isfinite(v) else None
    if isinstance(v, dict) and _is_number(v.get("sec")):
        ns = v.get("nsec", v.get("nanosec", 0))
        return int(v["sec"]) * 1_000_000_000 + int(ns) if _is_number(ns) else None
    return None


class JsonMcapInput:
    """One MCAP file of JSON channels (see the module docstring)."""

    kind = "mcap-json"

    def __init__(self, path, options: InputOptions | None = None):
        self.path = str(path)
        self.options = options or InputOptions()
        self.warnings: list[str] = []
        self.stats: dict[str, int] = {}
        self.fraction = 0.0
        self._layout: dict[int, tuple[str, str, tuple[str, ...]]] = {}  # channel id -> (key, kind, fields)
        skipped: dict[str, str] = {}
        for rec, topic, d in self._messages(first_only=True):
            if isinstance(rec, Channel):
                if rec.message_encoding != "json":
                    skipped[topic] = rec.message_encoding or "?"
                continue
            if rec.channel_id in self._layout or d is None:
                continue
            self._layout[rec.channel_id] = self._decide(topic, d)
        for topic, enc in sorted(skipped.items()):
            self.warnings.append(f"{self.path}: channel {topic} ({enc} messages) not read: JSON channels only")
        layouts = [v for v in self._layout.values() if v[1] != "none"]
        if not layouts:
            why = f"; skipped: {', '.join(sorted(set(skipped.values())))}" if skipped else ""
            raise InputError(self.path, f"no channel synchub can read in this MCAP (JSON messages with numeric or "
                                        f"text fields{why})")
        self.streams: list[FileStream] = []
        for key, kind, fields in sorted(set(layouts)):
            if kind == "numeric":
                info = StreamInfo(name=key, type=self.options.type or "other", nominal_srate=float(self.options.rate_hz),
                                  channel_count=len(fields), channel_format="double64", channel_labels=fields)
            else:
                info = StreamInfo(name=key, type="marker", nominal_srate=0.0, channel_count=1,
                                  channel_format="string", channel_labels=fields)
            self.streams.append(FileStream(key=key, info=info, local=(kind, fields), on_file_clock=True))

    def _decide(self, topic: str, d: dict) -> tuple[str, str, tuple[str, ...]]:
        key = topic.strip("/").replace("/", ".") or "mcap"
        tc = self.options.time_col
        leaves = {k: v for k, v in _leaves(d).items() if not tc or (k != tc and not k.startswith(tc + "."))}
        text = [k for k, v in leaves.items() if isinstance(v, str) and v]
        said = next((k for k in TEXT_FIELDS if k in text), None)
        if said is not None:  # a log or event channel: its text is the sample
            return key, "text", (said,)
        numeric = tuple(k for k, v in leaves.items() if _is_number(v))
        if numeric:
            return key, "numeric", numeric
        return (key, "text", (text[0],)) if text else (key, "none", ())

    def _messages(self, first_only: bool = False) -> Iterator[tuple[object, str, dict | None]]:
        """(Channel, topic, None) and (Message, topic, decoded JSON dict or None) in file order."""
        topics: dict[int, tuple[str, str]] = {}
        size = max(os.path.getsize(self.path), 1)
        seen: set[int] = set()
        with open(self.path, "rb") as f:
            try:
                for rec in StreamReader(f, validate_crcs=True).records:
                    self.fraction = f.tell() / size
                    if isinstance(rec, Channel):
                        topics[rec.id] = (rec.topic, rec.message_encoding)
                        yield rec, rec.topic, None
                    elif isinstance(rec, Message) and rec.channel_id in topics:
                        topic, enc = topics[rec.channel_id]
                        if enc != "json" or (first_only and rec.channel_id in seen):
                            continue
                        seen.add(rec.channel_id)
                        try:
                            d = json.loads(rec.data)
                        except (ValueError, UnicodeDecodeError):
                            d = None
                        if not isinstance(d, dict):
                            self._count("bad_message")
                            d = None
                        yield rec, topic, d
            except InputError:
                raise
            except Exception as exc:  # noqa: BLE001 - a torn or corrupt file: one line
                raise InputError(self.path, f"corrupt MCAP ({type(exc).__name__}: {exc})") from None

    def _count(self, why: str) -> None:
        self.stats[why] = self.stats.get(why, 0) + 1

    def read(self, evidence: bool = True, streams: set[str] | None = None) -> Iterator[Piece]:
        self.stats = {}
        buf: dict[str, list] = {}
        seqs: dict[str, int] = {}
        for rec, _, d in self._messages():
            if not isinstance(rec, Message) or d is None or rec.channel_id not in self._layout:
                continue
            key, kind, fields = self._layout[rec.channel_id]
            if kind == "none" or (streams is not None and key not in streams):
                continue
            t = rec.log_time if not self.options.time_col else stamp_ns(_time_field(d, self.options.time_col))
            if t is None:
                self._count("bad_time")
                continue
            leaves = _leaves(d)
            if kind == "numeric":
                row = [float(v) if _is_number(v := leaves.get(f)) else np.nan for f in fields]
            else:
                v = leaves.get(fields[0])
                if not isinstance(v, str) or not v:
                    continue
                row = v
            b = buf.setdefault(key, [])
            b.append((int(t), row))
            if len(b) >= BATCH:
                yield self._piece(key, kind, b, seqs)
        for key, b in buf.items():
            if b:
                yield self._piece(key, self._kind(key), b, seqs)

    def _kind(self, key: str) -> str:
        return next(k for kk, k, _ in self._layout.values() if kk == key)

    @staticmethod
    def _piece(key: str, kind: str, b: list, seqs: dict[str, int]) -> Piece:
        t = np.fromiter((x for x, _ in b), dtype=np.int64, count=len(b))
        data = np.asarray([r for _, r in b], dtype=np.float64) if kind == "numeric" else [r for _, r in b]
        p = Piece(key, seqs.get(key, 0), t, data)
        seqs[key] = seqs.get(key, 0) + len(b)
        b.clear()
        return p


def _time_field(d: dict, name: str):
    if name in d:
        return d[name]
    head, _, tail = name.partition(".")
    sub = d.get(head)
    return sub.get(tail) if isinstance(sub, dict) and tail else None
