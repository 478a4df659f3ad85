"""synchub's MCAP layout: schemas, writing helpers, reading a session back, recovering a crashed file.

File: one MCAP per agent session (a restarted collector continues a session in a new *part* file:
``<agent>-<YYYYmmddTHHMMSSZ>-<session>-p<N>.mcap``).  Profile ``""``, library ``synchub <version>``.

Channels (``message_encoding = "msgpack"``; each schema is a JSON Schema, schema encoding ``jsonschema``, that
documents the msgpack map; binary fields are msgpack ``bin`` holding little-endian arrays):

* ``/<agent>/<stream>``, schema ``synchub.Chunk``: one message per chunk of samples::

      mid        int     transport message number (per session, consecutive)
      seq        int     per-stream sequence number of the first sample (sample i has seq + i)
      n          int     number of samples
      method     str     clock correction method ("none" when uncorrected)
      dtype      str     numpy dtype string of data ("<f4", "<i2", "|u1", ...), or "str" for string streams
      shape      [int]   per-sample shape (e.g. [8] channels, [48, 64] video frame)
      device_ns  bin     int64[n]   raw device time (unwrapped by the driver)
      host_ns    bin     int64[n]   agent host CLOCK_MONOTONIC at receipt
      ref_ns     bin|nil int64[n]   corrected reference time (the agent's CLOCK_MONOTONIC timeline)
      unc_ns     bin|nil int64[n]   1-sigma uncertainty of ref_ns
      segment    bin|nil int32[n]   device clock segment (bumps at a detected clock reset)
      data       bin | [str]        samples, n x shape of dtype (or n strings)
      recv_ns    int     collector CLOCK_MONOTONIC when the message arrived

  MCAP ``log_time`` = ``ref_ns[0]`` (falls back to ``host_ns[0]`` when uncorrected), ``publish_time`` = ``recv_ns``,
  ``sequence`` = ``seq`` mod 2**32.  The channel metadata holds the LSL-style stream fields.
* ``/<agent>/_gaps``, schema ``synchub.Gap``: ``Gap.to_dict()`` plus ``mid``, ``recv_ns``.
* ``/<agent>/_meta``, schema ``synchub.Meta``: ``{"mid", "stream", "kind", "meta"|"info", "recv_ns"}``; kind is
  ``stream_info`` (a ``StreamInfo.to_dict()`` for every stream, written when the file opens) or ``update`` (a
  ``meta`` message from the agent: NTP health, clock model state, ...).
* MCAP metadata ``synchub.session``: agent, session, part, synchub version, collector, start time UTC, the agent's
  UTC/monotonic pair at session start; ``synchub.transport`` (written when the file is closed or recovered):
  ``last_mid`` and how it ended.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from mcap.reader import make_reader
from mcap.stream_reader import StreamReader
from mcap.writer import CompressionType, Writer

log = logging.getLogger(__name__)

MAGIC = b"\x89MCAP0\r\n"
_BIN = {"type": "string", "contentEncoding": "msgpack-bin"}
_BIN_OR_NIL = {"oneOf": [_BIN, {"type": "null"}]}

SCHEMAS: dict[str, dict[str, Any]] = {
    "synchub.Chunk": {
        "title": "synchub.Chunk",
        "description": "A chunk of consecutive samples of one stream; arrays are little-endian msgpack bin.",
        "type": "object",
        "properties": {
            "mid": {"type": "integer"}, "seq": {"type": "integer"}, "n": {"type": "integer"},
            "method": {"type": "string"}, "dtype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "device_ns": {**_BIN, "description": "int64[n] raw device time, ns"},
            "host_ns": {**_BIN, "description": "int64[n] agent CLOCK_MONOTONIC at receipt, ns"},
            "ref_ns": {**_BIN_OR_NIL, "description": "int64[n] corrected reference time, ns"},
            "unc_ns": {**_BIN_OR_NIL, "description": "int64[n] 1-sigma uncertainty of ref_ns, ns"},
            "segment": {**_BIN_OR_NIL, "description": "int32[n] device clock segment"},
            "data": {"oneOf": [_BIN, {"type": "array", "items": {"type": "string"}}],
                     "description": "n x shape samples of dtype, or n strings"},
            "recv_ns": {"type": "integer", "description": "collector CLOCK_MONOTONIC at arrival, ns"},
        },
        "required": ["mid", "seq", "n", "method", "dtype", "shape", "device_ns", "host_ns", "data", "recv_ns"],
    },
    "synchub.Gap": {
        "title": "synchub.Gap",
        "description": "Samples that were lost, and why (seq = sequence number of the next real sample).",
        "type": "object",
        "properties": {
            "mid": {"type": "integer"}, "stream": {"type": "string"}, "seq": {"type": "integer"},
            "count": {"type": "integer"}, "cause": {"type": "string"}, "device_ns_from": {"type": "integer"},
            "device_ns_to": {"type": "integer"}, "detail": {"type": "string"}, "recv_ns": {"type": "integer"},
        },
        "required": ["stream", "seq", "count", "cause"],
    },
    "synchub.Meta": {
        "title": "synchub.Meta",
        "description": "Stream info (kind=stream_info, info=StreamInfo dict) or a metadata update (kind=update).",
        "type": "object",
        "properties": {
            "mid": {"type": "integer"}, "stream": {"type": "string"},
            "kind": {"enum": ["stream_info", "update"]}, "info": {"type": "object"}, "meta": {"type": "object"},
            "recv_ns": {"type": "integer"},
        },
        "required": ["stream", "kind"],
    },
}

COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}


def new_writer(fh, compression: str = "zstd") -> tuple[Writer, dict[str, int]]:
    """A started writer (chunks are cut only by our own ``flush``) and the schema ids by name."""
    from synchub import __version__

    w = Writer(fh, chunk_size=1 << 40, compression=COMPRESSION[compression])
    w.start(profile="", library=f"synchub {__version__}")
    ids = {name: w.register_schema(name, "jsonschema", json.dumps(schema).encode()) for name, schema in
           SCHEMAS.items()}
    return w, ids


def channel_metadata(info: dict[str, Any]) -> dict[str, str]:
    """LSL-style stream fields as MCAP channel metadata (all values str)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in info.items()}


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


def _iter_raw(path) -> tuple[list, list, dict, dict, bool]:
    """(messages[(channel, message)], metadata, channels, schemas, complete) from a possibly truncated file."""
    from mcap.records import Channel, Message, Metadata, Schema

    msgs, metas, channels, schemas = [], [], {}, {}
    complete = True
    with open(path, "rb") as f:
        try:
            for rec in StreamReader(f, validate_crcs=True).records:
                if isinstance(rec, Schema):
                    schemas[rec.id] = rec
                elif isinstance(rec, Channel):
                    channels[rec.id] = rec
                elif isinstance(rec, Message):
                    msgs.append(rec)
                elif isinstance(rec, Metadata):
                    metas.append(rec)
        except Exception as exc:  # noqa: BLE001 - a torn tail ends the readable part
            complete = False
            log.info("mcap: %s readable up to a torn/corrupt record (%s: %s)", path, type(exc).__name__, exc)
    return msgs, metas, channels, schemas, complete


def recover(path: str | os.PathLike, compression: str = "zstd") -> int:
    """Rewrite an unfinished MCAP (a crashed collector) into a finished one holding every complete record.
    Returns the highest transport ``mid`` found (0 if none).  The original is replaced atomically."""
    path = Path(path)
    msgs, metas, channels, schemas, _ = _iter_raw(path)
    tmp = path.with_suffix(".recovering")
    last_mid = 0
    with open(tmp, "wb") as fh:
        from synchub import __version__

        w = Writer(fh, chunk_size=1 << 22, compression=COMPRESSION[compression])
        w.start(profile="", library=f"synchub {__version__}")
        sid_map = {sid: w.register_schema(s.name, s.encoding, s.data) for sid, s in schemas.items()}
        cid_map = {cid: w.register_channel(c.topic, c.message_encoding, sid_map.get(c.schema_id, 0), c.metadata)
                   for cid, c in channels.items()}
        for m in metas:
            w.add_metadata(m.name, m.metadata)
        for m in msgs:
            w.add_message(cid_map[m.channel_id], m.log_time, m.data, m.publish_time, m.sequence)
            try:
                d = msgpack.unpackb(m.data, raw=False)
                last_mid = max(last_mid, int(d.get("mid", 0)))
            except (ValueError, msgpack.UnpackException, AttributeError, TypeError):
                pass
        w.add_metadata("synchub.transport", {"last_mid": str(last_mid), "ended": "recovered after a crash",
                                             "messages": str(len(msgs))})
        w.finish()
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    log.warning("mcap: recovered unfinished %s: %d messages, last mid %d", path, len(msgs), last_mid)
    return last_mid


def session_last_mid(path: str | os.PathLike) -> int:
    """The last transport mid recorded in a finished file (from its ``synchub.transport`` metadata)."""
    with open(path, "rb") as f:
        r = make_reader(f)
        best = 0
        for m in r.iter_metadata():
            if m.name == "synchub.transport":
                best = max(best, int(m.metadata.get("last_mid", "0")))
        return best


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
        msgs, metas, channels, _, _ = _iter_raw(p)
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
