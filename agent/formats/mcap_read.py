"""Reading synchub's MCAP files back (layout: ``synchub.agent.formats.mcap_layout``): a session's parts as
per-stream arrays (``read_session``), whether a file was finished, the last transport message it holds, and its
records one by one even when the file was torn (``iter_raw``).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterator
from typing import Any, NamedTuple

import msgpack
import numpy as np
from mcap.exceptions import McapError
from mcap.opcode import Opcode
from mcap.reader import make_reader
from mcap.records import Channel, Header, Message, Metadata, Schema
from mcap.stream_reader import StreamReader

from synchub.agent.core.evidence import ClockReset, Evidence, evidence_from_dict
from synchub.agent.core.stream import Chunk, StreamInfo

from .mcap_layout import MAGIC

log = logging.getLogger("synchub.agent.formats.mcap")


def is_finished(path: str | os.PathLike) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < 2 * len(MAGIC):
                return False
            f.seek(-len(MAGIC), os.SEEK_END)
            return f.read() == MAGIC
    except OSError:
        return False


_OPCODES = frozenset(int(o) for o in Opcode)


class CorruptMcap(ValueError):
    """An MCAP file with a corrupt record: one line, ``"<path>: <what> (<the record's error>)"``."""

    def __init__(self, path, exc: Exception, what: str = "corrupt MCAP"):
        super().__init__(f"{path}: {what} ({type(exc).__name__}: {exc})")


class SynchubRecords(StreamReader):
    """The ``mcap`` library's ``StreamReader`` (CRCs checked) for synchub's files, which hold only the records MCAP
    defines: a record of any other opcode is a corrupt one (a flipped opcode byte), not a record to skip as the
    library does unsaid (a chunk read so lost every message in it without a word).  Hooks the library's
    ``_read_record`` (mcap 1.x)."""

    def __init__(self, f):
        super().__init__(f, validate_crcs=True)

    def _read_record(self, opcode: int, length: int):
        if opcode not in _OPCODES:
            at = getattr(getattr(self, "_stream", None), "count", None)  # the library's counter, where it has one
            raise McapError(f"a record of unknown opcode 0x{opcode:02x} ({length} bytes)"
                            + (f" at byte {at - 9}" if isinstance(at, int) else ""))
        return super()._read_record(opcode, length)


class TornRecords:
    """The messages and metadata records of one open MCAP file in file order, read record by record, so a torn or
    corrupt record (an unfinished part) ends the readable part instead of the read: logged once at WARNING (the
    data after it is lost), ``error`` says what it was.  The schemas and channels seen so far are in ``schemas`` and
    ``channels`` (a message's channel: ``channels.get(message.channel_id)``), the file's ``Header`` in ``header``."""

    def __init__(self, f, path):
        self.f, self.path = f, path
        self.header: Header | None = None
        self.messages = 0  # message records read so far
        self.schemas: dict[int, Schema] = {}
        self.channels: dict[int, Channel] = {}
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[Message | Metadata]:
        try:
            for rec in SynchubRecords(self.f).records:
                if isinstance(rec, Header):
                    self.header = rec
                elif isinstance(rec, Schema):
                    self.schemas[rec.id] = rec
                elif isinstance(rec, Channel):
                    self.channels[rec.id] = rec
                elif isinstance(rec, (Message, Metadata)):
                    self.messages += isinstance(rec, Message)
                    yield rec
        except Exception as exc:  # noqa: BLE001 - a torn tail ends the readable part
            self.error = exc
            log.warning("mcap: %s readable up to a torn/corrupt record (%s: %s)", self.path, type(exc).__name__, exc)

    def raise_if_nothing_read(self) -> None:
        """After reading: ``CorruptMcap`` where the file was torn or corrupt before any message (a session part of
        which nothing is readable, not one of 0 streams)."""
        if self.error is not None and not self.messages:
            raise CorruptMcap(self.path, self.error, "torn or corrupt before any message is readable")


def iter_raw(path) -> tuple[list, list, dict, dict, bool]:
    """(messages[(channel, message)], metadata, channels, schemas, complete) from a possibly truncated file."""
    msgs, metas = [], []
    with open(path, "rb") as f:
        records = TornRecords(f, path)
        for rec in records:
            (msgs if isinstance(rec, Message) else metas).append(rec)
    return msgs, metas, records.channels, records.schemas, records.error is None


def session_last_mid(path: str | os.PathLike) -> int:
    """The last transport mid recorded in a finished file (from its ``synchub.transport`` metadata)."""
    with open(path, "rb") as f:
        r = make_reader(f)
        best = 0
        for m in r.iter_metadata():
            if m.name == "synchub.transport":
                best = max(best, int(m.metadata.get("last_mid", "0")))
        return best


def session_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``synchub.session`` metadata of a file (agent, session, agent_key, ...); {} if it has none."""
    with open(path, "rb") as f:
        for m in make_reader(f).iter_metadata():
            if m.name == "synchub.session":
                return dict(m.metadata)
    return {}


def _arr(b, dtype) -> np.ndarray | None:
    return None if b is None else np.frombuffer(b, dtype=dtype)


def read_session(paths) -> dict[str, Any]:
    """Read one or more MCAP files (the parts of a session, or one file) back into arrays.

    Streams are keyed by name, or by ``agent/name`` when several agents in the files have a stream of that name.
    Returns ``{"streams": {name: {"info", "seq", "device_ns", "host_ns", "ref_ns", "unc_ns", "segment", "data",
    "method", "recv_ns", "chunks"}}, "gaps": [dict], "meta": [dict], "metadata": [(name, dict)], "agents": set}``.
    Per stream, chunks are ordered by ``seq``; arrays are concatenated (``ref_ns``/``unc_ns`` are None if no chunk was
    corrected; uncorrected samples get ``ref_ns = unc_ns = -1`` when others are).  Unfinished files are read up to
    their last complete record.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    parts: dict[str, list[dict]] = defaultdict(list)
    infos: dict[str, dict] = {}
    gaps, meta, metadata = [], [], []
    agents = set()
    for p in paths:
        msgs, metas, channels, _, _ = iter_raw(p)
        for m in metas:
            metadata.append((m.name, dict(m.metadata)))
            if m.name == "synchub.session":
                agents.add(m.metadata.get("agent", ""))
        for m in msgs:
            c = channels.get(m.channel_id)
            if c is None:
                continue
            d = msgpack.unpackb(m.data, raw=False)
            topic = c.topic
            if topic.endswith("/_gaps"):
                gaps.append(d)
            elif topic.endswith("/_meta"):
                meta.append(d)
                if d.get("kind") == "stream_info":
                    infos[topic.rsplit("/", 1)[0] + "/" + d["stream"]] = d["info"]
            else:
                d["_log_time"] = m.log_time
                parts[topic].append(d)
    topics = set(parts) | set(infos)
    names = [t.rsplit("/", 1)[-1] for t in topics]
    streams = {}
    for topic in sorted(topics):
        name = topic.rsplit("/", 1)[-1]
        key = name if names.count(name) == 1 else topic.lstrip("/")  # "agent/stream" when names clash
        chunks = parts.get(topic, [])
        chunks.sort(key=lambda d: d["seq"])
        streams[key] = _assemble(chunks, infos.get(topic))
    return {"streams": streams, "gaps": gaps, "meta": meta, "metadata": metadata, "agents": agents}


def _assemble(chunks: list[dict], info: dict | None) -> dict[str, Any]:
    def cat(name, dtype):
        arrs = [_arr(c.get(name), dtype) for c in chunks]
        return np.concatenate(arrs) if arrs else np.zeros(0, dtype)

    out: dict[str, Any] = {"info": info, "chunks": len(chunks)}
    out["seq"] = np.concatenate([np.arange(c["seq"], c["seq"] + c["n"], dtype=np.int64) for c in chunks]) \
        if chunks else np.zeros(0, np.int64)
    out["device_ns"] = cat("device_ns", "<i8")
    out["host_ns"] = cat("host_ns", "<i8")
    out["recv_ns"] = np.concatenate([np.full(c["n"], c["recv_ns"], np.int64) for c in chunks]) \
        if chunks else np.zeros(0, np.int64)
    out["log_time"] = np.array([c["_log_time"] for c in chunks], dtype=np.int64)
    out["method"] = np.concatenate([np.full(c["n"], c["method"], dtype=object) for c in chunks]) \
        if chunks else np.zeros(0, object)
    if any(c.get("ref_ns") is not None for c in chunks):
        out["ref_ns"] = np.concatenate([_arr(c["ref_ns"], "<i8") if c.get("ref_ns") is not None
                                        else np.full(c["n"], -1, np.int64) for c in chunks])
        out["unc_ns"] = np.concatenate([_arr(c["unc_ns"], "<i8") if c.get("unc_ns") is not None
                                        else np.full(c["n"], -1, np.int64) for c in chunks])
    else:
        out["ref_ns"] = out["unc_ns"] = None
    if any(c.get("segment") is not None for c in chunks):
        out["segment"] = np.concatenate([_arr(c["segment"], "<i4") if c.get("segment") is not None
                                         else np.zeros(c["n"], np.int32) for c in chunks])
    else:
        out["segment"] = None
    if chunks and chunks[0]["dtype"] == "str":
        out["data"] = [s for c in chunks for s in c["data"]]
    elif chunks:
        out["data"] = np.concatenate([np.frombuffer(c["data"], dtype=c["dtype"]).reshape((c["n"], *c["shape"]))
                                      for c in chunks])
    else:
        out["data"] = np.zeros(0)
    return out


class RawRecording(NamedTuple):
    """What the clock layer needs of a recording: the stream infos, the agent's ``clock_config`` record (a dict; the
    clock layer's ``ClockLayerConfig.from_dict`` reads it), the evidence the agent saw (``ClockReset`` items
    included) and the chunks as shipped (raw times only)."""

    infos: dict[str, StreamInfo]
    clock_config: dict[str, Any]
    evidence: list[Evidence]
    chunks: list[Chunk]


def read_raw(path) -> RawRecording:
    """``raw_recording`` of the file(s) at ``path``."""
    return raw_recording(read_session(path))


def raw_recording(data: dict) -> RawRecording:
    """The raw recording of a session read by ``read_session``.  Derived streams (fused vectors) were made on the
    reference clock: they have no raw times to correct, so no chunks.  Recordings made before ``ClockReset`` and
    ``UtcSample`` existed read the same: a ``device_reset`` gap is a reset, an ``_utc`` offset a UTC sample."""
    infos, chunks = {}, []
    for name, rec in data["streams"].items():
        if rec["info"] is None:
            continue
        info = StreamInfo.from_dict(rec["info"])
        infos[name] = info
        if not len(rec["seq"]) or info.type == "fused":
            continue
        # rebuild chunks as the agent shipped them (one per received message keeps arrival structure)
        bounds = np.flatnonzero(np.diff(rec["host_ns"]) != 0) + 1
        for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(rec["seq"])], strict=True):
            chunks.append(Chunk(stream=name, seq=int(rec["seq"][a]), data=rec["data"][a:b],
                                device_ns=rec["device_ns"][a:b], host_ns=rec["host_ns"][a:b]))
    config: dict[str, Any] = {}
    evidence: list[Evidence] = []
    resets: dict[tuple[str, int], ClockReset] = {}
    for g in data.get("gaps", []):  # a reset recorded the old way (before ClockReset): a device_reset gap
        if g.get("cause") == "device_reset" and g.get("stream") in infos:
            r = ClockReset(str(g["stream"]), int(g["seq"]), int(g.get("device_ns_to", 0)),
                           int(g.get("device_ns_from", 0)), str(g.get("detail", "")))
            resets[(r.stream, r.seq)] = r
    for m in data["meta"]:
        meta = m.get("meta") or {}
        if meta.get("kind") == "clock_config":
            config = meta
        elif meta.get("kind") == "evidence":
            try:
                item = evidence_from_dict(meta)
            except ValueError:
                continue
            if isinstance(item, ClockReset):
                resets[(item.stream, item.seq)] = item
            else:
                evidence.append(item)
    return RawRecording(infos, config, evidence + list(resets.values()), chunks)
