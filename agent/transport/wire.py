"""The synchub wire format: pure encode/decode of transport messages (no sockets; msgpack and raw arrays only, never Python-object serialization).

A message is a list of ZeroMQ frames: frame 0 is a msgpack **envelope** (a map), the following frames are raw,
little-endian numpy buffers named by the envelope's ``fields`` list (zero copy on both ends).

Envelope keys common to every message: ``v`` (protocol version, ``PROTOCOL_VERSION``), ``k`` (kind).

Agent -> collector (data messages carry ``session`` and ``mid``, the sender's message number: consecutive from 1
within a session, the unit of acks, spooling and duplicate detection):

* ``hello``:  ``agent``, ``session``, ``streams`` (list of ``StreamInfo.to_dict()``), ``version`` (synchub),
  ``utc_ns``/``mono_ns`` (the agent's UTC and CLOCK_MONOTONIC when the session started).  Answered by ``welcome``.
* ``chunk``:  ``session``, ``mid``, ``stream``, ``seq`` (per-stream sequence number of the first sample), ``n``,
  ``dtype`` (numpy dtype string, little endian) and ``shape`` (per-sample shape) of the data, ``method``,
  ``fields`` (names of the buffer frames in order, from ``device_ns host_ns ref_ns unc_ns segment data``),
  and for string streams ``strings`` (list of str; no data frame).
* ``gap``:    ``session``, ``mid``, ``gap`` (``Gap.to_dict()``); a gap *span* (samples the agent's spool dropped) also
  has ``mid_last`` (it stands for messages ``mid..mid_last``) and ``gaps`` (a list of ``Gap.to_dict()``).
* ``meta``:   ``session``, ``mid``, ``stream`` (a stream name or ``""`` for the agent), ``meta`` (map of updates:
  NTP health, clock model state, ...).
* ``bye``:    ``session``, ``mid``: the session ended cleanly.
* ``ping``:   ``session``: app-level liveness; answered by an ``ack``.

Collector -> agent:

* ``welcome``: ``session``, ``acked`` (highest mid durably recorded, 0 for none), ``next`` (the mid the collector
  expects next: the agent resumes sending there), ``credit`` (messages the agent may have unacked in flight),
  ``credit_bytes``, ``collector`` (its name).
* ``ack``:    ``session``, ``acked``, ``next``, ``rewind`` (true: go back and resend from ``next``), ``credit``,
  ``credit_bytes``: cumulative acknowledgement.
* ``refuse``: ``session``, ``reason``: the collector will not take this session (the agent logs and retries later).

``decode`` validates everything (kind, keys, types, lengths, dtypes, size limits) and raises only ``WireError``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from synchub.agent.core.stream import CHANNEL_FORMATS, GAP_CAUSES, METHODS, Chunk, Gap, StreamInfo

PROTOCOL_VERSION = 1

#: Size limits (bytes / counts).  A message over them is refused by the decoder.
MAX_ENVELOPE = 4 << 20
MAX_FRAME = 64 << 20
MAX_SAMPLES = 1 << 22
MAX_STREAMS = 256
MAX_NAME = 200
MAX_STRING_TOTAL = 8 << 20

#: session ids name files at the collector: keep them plain
SESSION_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

TIME_FIELDS = ("device_ns", "host_ns", "ref_ns", "unc_ns", "segment")
ALL_FIELDS = (*TIME_FIELDS, "data")
FIELD_DTYPES = {"device_ns": np.dtype("<i8"), "host_ns": np.dtype("<i8"), "ref_ns": np.dtype("<i8"),
                "unc_ns": np.dtype("<i8"), "segment": np.dtype("<i4")}
#: Data dtypes allowed on the wire (little endian); strings travel in the envelope.
DATA_DTYPES = {np.dtype(d).newbyteorder("<").str: np.dtype(d).newbyteorder("<")
               for d in CHANNEL_FORMATS.values() if d is not None}

AGENT_KINDS = ("hello", "chunk", "gap", "meta", "bye", "ping")
COLLECTOR_KINDS = ("welcome", "ack", "refuse")
KINDS = AGENT_KINDS + COLLECTOR_KINDS


class WireError(ValueError):
    """A message that is not valid synchub wire format; the text says why."""


@dataclass
class Message:
    """A decoded message.  ``chunk`` is set for chunk messages (its arrays are read-only views of the frames),
    ``gap`` for gap messages, ``streams`` for hello."""

    kind: str
    env: dict[str, Any]
    chunk: Chunk | None = None
    gap: Gap | None = None
    gaps: list[Gap] = field(default_factory=list)
    streams: list[StreamInfo] = field(default_factory=list)
    buffers: dict[str, memoryview] = field(default_factory=dict)

    @property
    def session(self) -> str:
        return self.env.get("session", "")

    @property
    def mid(self) -> int:
        return self.env.get("mid", 0)

    @property
    def mid_last(self) -> int:
        """The last message number this message stands for (a gap span covers several)."""
        return self.env.get("mid_last", self.env.get("mid", 0))


def _pack(env: dict[str, Any]) -> bytes:
    return msgpack.packb(env, use_bin_type=True)


# ---------------------------------------------------------------------------------------------------- encoding
def encode_hello(agent: str, session: str, streams: list[StreamInfo], version: str, utc_ns: int, mono_ns: int
                 ) -> list[bytes]:
    return [_pack({"v": PROTOCOL_VERSION, "k": "hello", "agent": agent, "session": session,
                   "streams": [s.to_dict() for s in streams], "version": version,
                   "utc_ns": int(utc_ns), "mono_ns": int(mono_ns)})]


def _le(a: np.ndarray, dtype: np.dtype | None = None) -> np.ndarray:
    if dtype is not None:
        a = np.asarray(a, dtype=dtype)
    elif a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and np.little_endian is False):
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.ascontiguousarray(a)


def encode_chunk(session: str, mid: int, chunk: Chunk) -> list:
    """Envelope plus buffer frames (numpy arrays, sent zero-copy by pyzmq)."""
    fields, frames = [], []
    for name in TIME_FIELDS:
        a = getattr(chunk, name)
        if a is not None:
            fields.append(name)
            frames.append(_le(a, FIELD_DTYPES[name]))
    env = {"v": PROTOCOL_VERSION, "k": "chunk", "session": session, "mid": int(mid), "stream": chunk.stream,
           "seq": int(chunk.seq), "n": chunk.n, "method": chunk.method}
    if isinstance(chunk.data, np.ndarray):
        data = _le(chunk.data)
        env["dtype"] = data.dtype.str
        env["shape"] = list(data.shape[1:])
        fields.append("data")
        frames.append(data)
    else:
        env["dtype"] = "str"
        env["shape"] = []
        env["strings"] = [str(s) for s in chunk.data]
    env["fields"] = fields
    return [_pack(env), *frames]


def encode_gap(session: str, mid: int, gap: Gap) -> list[bytes]:
    return [_pack({"v": PROTOCOL_VERSION, "k": "gap", "session": session, "mid": int(mid), "gap": gap.to_dict()})]


def encode_gap_span(session: str, mid: int, mid_last: int, gaps: list[dict]) -> list[bytes]:
    """One gap message standing for the consecutive message numbers ``mid..mid_last`` (data the agent's spool
    dropped when full); ``gaps`` has one record per contiguous run of lost samples of a stream."""
    return [_pack({"v": PROTOCOL_VERSION, "k": "gap", "session": session, "mid": int(mid), "mid_last": int(mid_last),
                   "gap": gaps[0], "gaps": gaps})]


def encode_meta(session: str, mid: int, stream: str, meta: dict[str, Any]) -> list[bytes]:
    return [_pack({"v": PROTOCOL_VERSION, "k": "meta", "session": session, "mid": int(mid), "stream": stream,
                   "meta": meta})]


def encode_bye(session: str, mid: int) -> list[bytes]:
    return [_pack({"v": PROTOCOL_VERSION, "k": "bye", "session": session, "mid": int(mid)})]


def encode_ping(session: str) -> list[bytes]:
    return [_pack({"v": PROTOCOL_VERSION, "k": "ping", "session": session})]


def encode_welcome(session: str, acked: int, credit: int, credit_bytes: int, collector: str, next_mid: int = 0
                   ) -> list[bytes]:
    return [_pack({"v": PROTOCOL_VERSION, "k": "welcome", "session": session, "acked": int(acked),
                   "next": int(next_mid or acked + 1), "credit": int(credit), "credit_bytes": int(credit_bytes),
                   "collector": collector})]


def encode_ack(session: str, acked: int, credit: int, credit_bytes: int, next_mid: int = 0, rewind: bool = False
               ) -> list[bytes]:
    return [_pack({"v": PROTOCOL_VERSION, "k": "ack", "session": session, "acked": int(acked),
                   "next": int(next_mid or acked + 1), "rewind": bool(rewind), "credit": int(credit),
                   "credit_bytes": int(credit_bytes)})]


def encode_refuse(session: str, reason: str) -> list[bytes]:
    return [_pack({"v": PROTOCOL_VERSION, "k": "refuse", "session": session, "reason": str(reason)[:500]})]


# ---------------------------------------------------------------------------------------------------- decoding
def _buf(frame: Any) -> memoryview:
    b = getattr(frame, "buffer", None)  # zmq.Frame
    if b is not None:
        return b
    try:
        mv = memoryview(frame)
        return mv if mv.ndim == 1 and mv.itemsize == 1 else mv.cast("B")
    except (TypeError, ValueError):
        raise WireError(f"frame of type {type(frame).__name__} is not a contiguous buffer") from None


def _int(env: dict, key: str, lo: int = 0, hi: int = (1 << 63) - 1) -> int:
    v = env.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise WireError(f"{key!r} must be an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise WireError(f"{key!r} = {v} out of range [{lo}, {hi}]")
    return v


def _str(env: dict, key: str, maxlen: int = MAX_NAME, empty: bool = False) -> str:
    v = env.get(key)
    if not isinstance(v, str):
        raise WireError(f"{key!r} must be a string, got {type(v).__name__}")
    if len(v) > maxlen:
        raise WireError(f"{key!r} longer than {maxlen}")
    if not v and not empty:
        raise WireError(f"{key!r} is empty")
    return v


def _dict(env: dict, key: str) -> dict:
    v = env.get(key)
    if not isinstance(v, dict):
        raise WireError(f"{key!r} must be a map, got {type(v).__name__}")
    return v


def decode(frames: list) -> Message:
    """Validate and decode a list of frames.  Raises ``WireError`` (only) for anything invalid."""
    try:
        return _decode(frames)
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - the decoder's contract: nothing but WireError escapes
        raise WireError(f"invalid message: {type(exc).__name__}: {exc}") from None


def _decode(frames: list) -> Message:
    if not isinstance(frames, (list, tuple)) or not frames:
        raise WireError("empty message")
    head = _buf(frames[0])
    if len(head) > MAX_ENVELOPE:
        raise WireError(f"envelope of {len(head)} bytes exceeds {MAX_ENVELOPE}")
    try:
        env = msgpack.unpackb(head, raw=False, strict_map_key=True)
    except Exception as exc:  # noqa: BLE001
        raise WireError(f"envelope is not msgpack: {exc}") from None
    if not isinstance(env, dict):
        raise WireError("envelope is not a map")
    v = env.get("v")
    if v != PROTOCOL_VERSION:
        raise WireError(f"protocol version {v!r} not supported (this side speaks {PROTOCOL_VERSION})")
    kind = env.get("k")
    if kind not in KINDS:
        raise WireError(f"unknown message kind {kind!r}")
    rest = frames[1:]
    if kind != "chunk" and rest:
        raise WireError(f"{kind} message has {len(rest)} unexpected extra frames")
    msg = Message(kind=kind, env=env)
    if not SESSION_RE.fullmatch(_str(env, "session", 64)):
        raise WireError("'session' must be 1-64 letters, digits, '_' or '-'")
    if kind in ("chunk", "gap", "meta", "bye"):
        _int(env, "mid", 1)
    if kind == "hello":
        _str(env, "agent")
        _str(env, "version", 50)
        _int(env, "utc_ns", -(1 << 63))
        _int(env, "mono_ns", -(1 << 63))
        streams = env.get("streams")
        if not isinstance(streams, list) or len(streams) > MAX_STREAMS:
            raise WireError(f"'streams' must be a list of at most {MAX_STREAMS}")
        names = set()
        for s in streams:
            if not isinstance(s, dict):
                raise WireError("stream info must be a map")
            try:
                info = StreamInfo.from_dict(s)
            except (ValueError, TypeError) as exc:
                raise WireError(f"bad stream info: {exc}") from None
            if len(info.name) > MAX_NAME or info.name in names or info.name.startswith("_"):
                raise WireError(f"bad or duplicate stream name {info.name[:MAX_NAME]!r}")
            names.add(info.name)
            msg.streams.append(info)
    elif kind == "chunk":
        _decode_chunk(env, rest, msg)
    elif kind == "gap":
        msg.gap = _gap(_dict(env, "gap"))
        if "mid_last" in env or "gaps" in env:
            _int(env, "mid_last", env["mid"])
            gaps = env.get("gaps")
            if not isinstance(gaps, list) or not 1 <= len(gaps) <= MAX_STREAMS * 16:
                raise WireError("'gaps' must be a non-empty list")
            msg.gaps = [_gap(g) for g in gaps]
        else:
            msg.gaps = [msg.gap]
    elif kind == "meta":
        _str(env, "stream", empty=True)
        _dict(env, "meta")
    elif kind in ("welcome", "ack"):
        _int(env, "acked")
        _int(env, "credit", 1)
        _int(env, "credit_bytes", 1)
        _int(env, "next", 1)
        if not isinstance(env.get("rewind", False), bool):
            raise WireError("'rewind' must be a bool")
        if kind == "welcome":
            _str(env, "collector", empty=True)
    elif kind == "refuse":
        _str(env, "reason", 500, empty=True)
    return msg


def _gap(g: Any) -> Gap:
    if not isinstance(g, dict):
        raise WireError("gap must be a map")
    try:
        gap = Gap(**g)
    except (TypeError, ValueError) as exc:
        raise WireError(f"bad gap: {exc}") from None
    if not isinstance(gap.stream, str) or not gap.stream or len(gap.stream) > MAX_NAME:
        raise WireError("bad gap stream")
    for k in ("seq", "count", "device_ns_from", "device_ns_to"):
        if k in g or k in ("seq", "count"):
            _int(g, k, -(1 << 63))
    if gap.cause not in GAP_CAUSES or not isinstance(gap.detail, str) or len(gap.detail) > 1000:
        raise WireError("bad gap cause/detail")
    return gap


def _decode_chunk(env: dict, rest: list, msg: Message) -> None:
    stream = _str(env, "stream")
    seq = _int(env, "seq")
    n = _int(env, "n", 1, MAX_SAMPLES)
    method = env.get("method")
    if method not in METHODS:
        raise WireError(f"unknown method {method!r}")
    fields = env.get("fields")
    if not isinstance(fields, list) or len(fields) != len(rest) or len(set(fields)) != len(fields):
        raise WireError(f"'fields' must list the {len(rest)} buffer frames")
    for f in fields:
        if f not in ALL_FIELDS:
            raise WireError(f"unknown field {f!r}")
    for f in ("device_ns", "host_ns"):
        if f not in fields:
            raise WireError(f"missing field {f!r}")
    if ("ref_ns" in fields) != ("unc_ns" in fields):
        raise WireError("ref_ns and unc_ns come together")
    shape = env.get("shape")
    if not isinstance(shape, list) or len(shape) > 4 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_FRAME for d in shape):
        raise WireError("'shape' must be a list of up to 4 positive integers")
    dtype = env.get("dtype")
    arrays: dict[str, Any] = {}
    for name, frame in zip(fields, rest, strict=True):
        buf = _buf(frame)
        if len(buf) > MAX_FRAME:
            raise WireError(f"frame {name!r} of {len(buf)} bytes exceeds {MAX_FRAME}")
        msg.buffers[name] = buf
        if name == "data":
            continue
        dt = FIELD_DTYPES[name]
        if len(buf) != n * dt.itemsize:
            raise WireError(f"frame {name!r} has {len(buf)} bytes, expected {n} x {dt.itemsize}")
        arrays[name] = np.frombuffer(buf, dtype=dt)
    if dtype == "str":
        if "data" in fields or shape:
            raise WireError("string chunk has a data frame or a shape")
        strings = env.get("strings")
        if not isinstance(strings, list) or len(strings) != n or not all(isinstance(s, str) for s in strings):
            raise WireError(f"'strings' must be a list of {n} strings")
        if sum(len(s) for s in strings) > MAX_STRING_TOTAL:
            raise WireError("strings too large")
        data: Any = strings
    else:
        dt = DATA_DTYPES.get(dtype) if isinstance(dtype, str) else None
        if dt is None:
            raise WireError(f"dtype {dtype!r} not allowed; allowed: {', '.join(sorted(DATA_DTYPES))}, str")
        if "data" not in fields:
            raise WireError("missing data frame")
        per = math.prod(shape) if shape else 1
        buf = msg.buffers["data"]
        if n * per * dt.itemsize != len(buf):
            raise WireError(f"data frame has {len(buf)} bytes, expected {n} x {shape} x {dt.itemsize}")
        data = np.frombuffer(buf, dtype=dt).reshape((n, *shape))
    try:
        msg.chunk = Chunk(stream=stream, seq=seq, data=data, device_ns=arrays["device_ns"], host_ns=arrays["host_ns"],
                          ref_ns=arrays.get("ref_ns"), unc_ns=arrays.get("unc_ns"), segment=arrays.get("segment"),
                          method=method)
    except ValueError as exc:
        raise WireError(f"bad chunk: {exc}") from None
