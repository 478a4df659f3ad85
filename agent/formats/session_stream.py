"""A synchub session read a record at a time (``iter_session``): memory bounded by one MCAP chunk, however long the
recording.  ``mcap_read.read_session`` loads everything into arrays; exporters and other one-pass consumers use this.

Items, in file order (the collector writes each stream's chunks in sequence order; parts are read in the order
given):

* ``StreamStart(key, info)``: a stream's ``StreamInfo``, before its first chunk (from its ``stream_info`` record, or
  built from the chunk itself when a torn file lost that record: counted in ``SessionCounts.inferred_info``);
* ``ChunkRecord(key, chunk, recv_ns)``: one chunk (``Chunk`` with raw and, when corrected, reference times);
* ``GapRecord(key, gap)``: a ``Gap`` dict as recorded;
* ``EvidenceRecord(item)``: clock evidence the agent recorded (``UtcSample`` from the system clock/NTP every 10 s,
  probes, edges, resets); the ``synchub.session`` metadata's UTC/monotonic pair comes as a ``UtcSample`` too.

Stream keys are the stream names, ``agent/stream`` where two agents' files have the same stream name.  A torn tail
(an unfinished part) ends that part's readable records, as in ``mcap_read.iter_raw``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import msgpack
import numpy as np
from mcap.records import Message, Metadata

from synchub.agent.core.evidence import Evidence, UtcSample, evidence_from_dict
from synchub.agent.core.stream import Chunk, StreamInfo

from .mcap_read import TornRecords

SESSION_START = "session-start"  # the source of the UtcSample made of the synchub.session metadata


@dataclass(frozen=True)
class StreamStart:
    key: str
    info: StreamInfo


@dataclass(frozen=True)
class ChunkRecord:
    key: str
    chunk: Chunk
    recv_ns: int


@dataclass(frozen=True)
class GapRecord:
    key: str
    gap: dict


@dataclass(frozen=True)
class EvidenceRecord:
    item: Evidence


@dataclass
class SessionCounts:
    """What one pass saw (for the caller's summary)."""

    parts: int = 0
    torn_parts: int = 0
    chunks: int = 0
    samples: int = 0
    gaps: int = 0
    evidence: int = 0
    inferred_info: list[str] = field(default_factory=list)
    agents: set[str] = field(default_factory=set)


def _array(b, dtype) -> np.ndarray | None:
    return None if b is None else np.frombuffer(b, dtype=dtype)


def decode_chunk(name: str, d: dict) -> Chunk:
    """A ``synchub.Chunk`` message (msgpack map, ``mcap_layout``) as a ``Chunk``."""
    n = int(d["n"])
    if d["dtype"] == "str":
        data = list(d["data"])
    else:
        data = np.frombuffer(d["data"], dtype=d["dtype"]).reshape((n, *d["shape"]))
    return Chunk(name, int(d["seq"]), data, _array(d["device_ns"], "<i8"), _array(d["host_ns"], "<i8"),
                 _array(d.get("ref_ns"), "<i8"), _array(d.get("unc_ns"), "<i8"), _array(d.get("segment"), "<i4"),
                 str(d.get("method", "none")))


def _info_from_chunk(name: str, d: dict) -> StreamInfo:
    if d["dtype"] == "str":
        return StreamInfo(name, "marker", 0.0, 1, "string")
    fmt = {"<f4": "float32", "<f8": "double64", "<i4": "int32", "<i2": "int16", "|i1": "int8", "<i8": "int64",
           "|u1": "uint8"}.get(d["dtype"], "double64")
    shape = tuple(d["shape"]) or (1,)
    return StreamInfo(name, "other", 0.0, int(np.prod(shape)), fmt, shape=shape if len(shape) > 1 else ())


def _session_utc(meta: dict) -> UtcSample | None:
    try:
        utc, mono = int(meta.get("agent_utc_ns", 0)), int(meta.get("agent_mono_ns", 0))
    except (TypeError, ValueError):
        return None
    return UtcSample(mono, utc, 1_000_000, SESSION_START) if utc > 0 and mono > 0 else None


class SessionReader:
    """``iter_session`` with its counts: ``for item in reader: ...``, then ``reader.counts``."""

    def __init__(self, paths: str | os.PathLike | Iterable):
        self.paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        self.counts = SessionCounts()
        self._keys: dict[str, str] = {}  # topic -> stream key
        self._started: set[str] = set()
        self._pending_info: dict[str, StreamInfo] = {}

    def _key(self, topic: str) -> str:
        key = self._keys.get(topic)
        if key is None:
            name = topic.rsplit("/", 1)[-1]
            key = name if name not in self._keys.values() else topic.lstrip("/")
            self._keys[topic] = key
        return key

    def __iter__(self) -> Iterator:
        for path in self.paths:
            self.counts.parts += 1
            yield from self._part(path)
        for topic, info in self._pending_info.items():  # streams that recorded no sample: announced all the same
            self._started.add(self._key(topic))
            yield StreamStart(self._key(topic), info)
        self._pending_info.clear()

    def _part(self, path) -> Iterator:
        with open(path, "rb") as f:
            records = TornRecords(f, path)
            for rec in records:
                if isinstance(rec, Metadata):
                    if rec.name == "synchub.session":
                        self.counts.agents.add(rec.metadata.get("agent", ""))
                        utc = _session_utc(rec.metadata)
                        if utc is not None:
                            yield EvidenceRecord(utc)
                elif (ch := records.channels.get(rec.channel_id)) is not None:
                    yield from self._message(ch.topic, rec)
            records.raise_if_nothing_read()  # nothing of it readable: an error, as inspect and align say it
            if records.error is not None:
                self.counts.torn_parts += 1

    def _message(self, topic: str, rec: Message) -> Iterator:
        d = msgpack.unpackb(rec.data, raw=False)
        base, last = topic.rsplit("/", 1)
        if last == "_gaps":
            self.counts.gaps += 1
            yield GapRecord(self._key(f"{base}/{d.get('stream', '')}"), d)
        elif last == "_meta":
            yield from self._meta(base, d)
        else:
            key = self._key(topic)
            if key not in self._started:
                info = self._pending_info.pop(topic, None)
                if info is None:
                    info = _info_from_chunk(key, d)
                    self.counts.inferred_info.append(key)
                self._started.add(key)
                yield StreamStart(key, info)
            chunk = decode_chunk(key, d)
            self.counts.chunks += 1
            self.counts.samples += chunk.n
            yield ChunkRecord(key, chunk, int(d.get("recv_ns", 0)))

    def _meta(self, base: str, d: dict) -> Iterator:
        if d.get("kind") == "stream_info":
            topic = f"{base}/{d['stream']}"
            key = self._key(topic)
            info = StreamInfo.from_dict(d["info"])
            if key in self._started:
                return
            self._pending_info[topic] = StreamInfo.from_dict({**info.to_dict(), "name": key})
            return
        meta = d.get("meta") or {}
        if meta.get("kind") == "evidence":
            try:
                item = evidence_from_dict(meta)
            except ValueError:
                return
            self.counts.evidence += 1
            yield EvidenceRecord(item)


def iter_session(paths) -> Iterator:
    """The items of a session's MCAP part(s) (see the module docstring)."""
    yield from SessionReader(paths)
