"""synchub's MCAP layout: the schemas and channels of a recording (``mcap_write`` writes it, ``mcap_read`` reads it).

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
from typing import Any

from mcap.writer import CompressionType

MAGIC = b"\x89MCAP0\r\n"
BIN = {"type": "string", "contentEncoding": "msgpack-bin"}
BIN_OR_NIL = {"oneOf": [BIN, {"type": "null"}]}

SCHEMAS: dict[str, dict[str, Any]] = {
    "synchub.Chunk": {
        "title": "synchub.Chunk",
        "description": "A chunk of consecutive samples of one stream; arrays are little-endian msgpack bin.",
        "type": "object",
        "properties": {
            "mid": {"type": "integer"}, "seq": {"type": "integer"}, "n": {"type": "integer"},
            "method": {"type": "string"}, "dtype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "device_ns": {**BIN, "description": "int64[n] raw device time, ns"},
            "host_ns": {**BIN, "description": "int64[n] agent CLOCK_MONOTONIC at receipt, ns"},
            "ref_ns": {**BIN_OR_NIL, "description": "int64[n] corrected reference time, ns"},
            "unc_ns": {**BIN_OR_NIL, "description": "int64[n] 1-sigma uncertainty of ref_ns, ns"},
            "segment": {**BIN_OR_NIL, "description": "int32[n] device clock segment"},
            "data": {"oneOf": [BIN, {"type": "array", "items": {"type": "string"}}],
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


def channel_metadata(info: dict[str, Any]) -> dict[str, str]:
    """LSL-style stream fields as MCAP channel metadata (all values str)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in info.items()}
