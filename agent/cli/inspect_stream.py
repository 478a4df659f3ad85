"""``synchub inspect SESSION.mcap`` in bounded memory: ``inspect_cmd.summarize``'s summary from the session's
records read one at a time (``mcap_read.read_session`` holds every sample).  Per stream it keeps the sequence ranges
of its messages (one pair per chunk message), the first and last time, counts, its methods, and the 1-sigma values
thinned (``rerun.Decimated``: exact up to 2^18 per stream).  ``--plot`` and ``--fused-json`` still read the session
whole."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

import msgpack
import numpy as np
from mcap.records import Metadata

from synchub.agent.formats.mcap_layout import MAGIC
from synchub.agent.formats.mcap_read import TornRecords
from synchub.agent.formats.readers.base import InputError

from .rerun import Decimated


class _Times:
    """Count, first and last of the times >= 0 seen."""

    def __init__(self):
        self.n, self.lo, self.hi = 0, None, None

    def add(self, t: np.ndarray) -> None:
        t = t[t >= 0]
        if len(t):
            self.n += len(t)
            lo, hi = int(t.min()), int(t.max())
            self.lo = lo if self.lo is None else min(self.lo, lo)
            self.hi = hi if self.hi is None else max(self.hi, hi)


class _Stream:
    def __init__(self):
        self.ranges: list[tuple[int, int]] = []
        self.chunks = 0
        self.methods: set[str] = set()
        self.ref, self.host = _Times(), _Times()
        self.corrected = False
        self.unc = Decimated()

    def add(self, d: dict) -> None:
        n = int(d.get("n") or 0)
        self.chunks += 1
        self.ranges.append((int(d["seq"]), n))
        if n:
            self.methods.add(d.get("method"))
        self.host.add(np.frombuffer(d["host_ns"], "<i8") if d.get("host_ns") is not None else np.zeros(0, np.int64))
        if d.get("ref_ns") is not None:
            self.corrected = True
            self.ref.add(np.frombuffer(d["ref_ns"], "<i8"))
        if d.get("unc_ns") is not None:
            u = np.frombuffer(d["unc_ns"], "<i8")
            self.unc.add(u[u >= 0])

    def holes(self) -> tuple[int, int, int, int | None, int | None]:
        """(missing, duplicates, holes, first, last) of the sequence numbers, from the message ranges."""
        rs = sorted((s, s + n - 1) for s, n in self.ranges if n > 0)
        if not rs:
            return 0, 0, 0, None, None
        total = sum(b - a + 1 for a, b in rs)
        merged = [list(rs[0])]
        for a, b in rs[1:]:
            if a <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        unique = sum(b - a + 1 for a, b in merged)
        first, last = merged[0][0], merged[-1][1]
        return (last - first + 1) - unique, total - unique, len(merged) - 1, first, last


def read_summary_inputs(paths) -> dict[str, Any]:
    """What ``summarize_streaming`` needs of the session's parts, read a record at a time."""
    acc: dict[str, _Stream] = {}
    infos: dict[str, dict] = {}
    out = {"metadata": [], "agents": set(), "gaps": [], "utc_updates": [], "resets": {}}
    for p in paths:
        with open(p, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:  # a foreign file is an error, not a session of 0 streams
                raise InputError(p, "not an MCAP file (no MCAP magic)")
            f.seek(0)
            records = TornRecords(f, p)
            for rec in records:
                if isinstance(rec, Metadata):
                    out["metadata"].append((rec.name, dict(rec.metadata)))
                    if rec.name == "synchub.session":
                        out["agents"].add(rec.metadata.get("agent", ""))
                elif (ch := records.channels.get(rec.channel_id)) is not None:
                    _message(ch.topic, msgpack.unpackb(rec.data, raw=False), acc, infos, out)
            records.raise_if_nothing_read()  # torn before its first chunk ended: not a session of 0 streams
    out["streams"], out["infos"] = acc, infos
    return out


def _message(topic: str, d: dict, acc: dict, infos: dict, out: dict) -> None:
    if topic.endswith("/_gaps"):
        out["gaps"].append(d)
    elif topic.endswith("/_meta"):
        if d.get("kind") == "stream_info":
            infos[topic.rsplit("/", 1)[0] + "/" + d["stream"]] = d["info"]
        meta = d.get("meta") or {}
        if d.get("kind") == "update" and isinstance(meta.get("utc_minus_mono_ns"), int):
            out["utc_updates"].append(meta["utc_minus_mono_ns"])
        if meta.get("kind") == "evidence" and meta.get("type") == "reset":
            out["resets"][meta.get("stream")] = out["resets"].get(meta.get("stream"), 0) + 1
    else:
        acc.setdefault(topic, _Stream()).add(d)


def summarize_streaming(paths) -> dict[str, Any]:
    """``inspect_cmd.summarize(read_session(paths))``, read a record at a time (see the module docstring)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    r = read_summary_inputs(paths)
    utc_map = None
    for name, md in r["metadata"]:
        if name == "synchub.session" and md.get("agent_utc_ns") and md.get("agent_mono_ns"):
            utc_map = int(md["agent_utc_ns"]) - int(md["agent_mono_ns"])
    if r["utc_updates"]:
        utc_map = r["utc_updates"][-1]
    resets = dict(r["resets"])
    gaps_by: dict[str, list] = {}
    for g in r["gaps"]:
        gaps_by.setdefault(g["stream"], []).append(g)
        if g.get("cause") == "device_reset":
            resets[g["stream"]] = resets.get(g["stream"], 0) + 1
    topics = set(r["streams"]) | set(r["infos"])
    names = [t.rsplit("/", 1)[-1] for t in topics]
    rows = {}
    for topic in sorted(topics):
        name = topic.rsplit("/", 1)[-1]
        key = name if names.count(name) == 1 else topic.lstrip("/")
        rows[key] = _row(key, r["streams"].get(topic) or _Stream(), r["infos"].get(topic) or {},
                         gaps_by.get(key, []), resets.get(key, 0), utc_map)
    return {"streams": [rows[k] for k in sorted(rows)], "gap_records": len(r["gaps"]),
            "agents": sorted(r["agents"])}


def _row(name: str, s: _Stream, info: dict, gl: list, resets: int, utc_map: int | None) -> dict:
    n = sum(k for _, k in s.ranges)
    missing, dups, holes, first, last = s.holes()
    row = {
        "name": name, "modality": info.get("type", "?"), "format": info.get("channel_format", "?"),
        "channels": info.get("channel_count"), "nominal_hz": info.get("nominal_srate"),
        "samples": n, "chunks": s.chunks, "seq_first": first, "seq_last": last,
        "seq_missing": missing, "seq_holes": holes, "seq_duplicates": dups,
        "gap_records": len(gl), "gap_samples": int(sum(g["count"] for g in gl)),
        "gap_causes": sorted({g["cause"] for g in gl}), "clock_resets": resets,
        "corrected": s.corrected, "methods": sorted(s.methods) if n else [],
    }
    t = s.ref if s.corrected else s.host
    if t.n >= 2:
        span = (t.hi - t.lo) / 1e9
        row["measured_hz"] = round((t.n - 1) / span, 3) if span > 0 else None
        row["t_first_ns"], row["t_last_ns"], row["duration_s"] = t.lo, t.hi, round(span, 6)
        if utc_map is not None:
            row["utc_first"] = iso(t.lo + utc_map)
            row["utc_last"] = iso(t.hi + utc_map)
    if s.corrected and n and s.unc.held:
        row["uncertainty_us_median"] = round(s.unc.median() / 1e3, 3)
    return row


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat()
