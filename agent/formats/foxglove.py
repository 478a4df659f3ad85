"""A synchub session as an MCAP file Foxglove opens and plots (``synchub export --foxglove OUT.mcap``).

synchub's own recording stays as it is (msgpack chunks: compact, lossless, what ``align``/``inspect``/``export`` read,
old files included); this is a view of it for Foxglove, written in the same streaming pass as the other exports:

* every numeric stream is a JSON channel ``/<stream>`` (schema ``synchub.<stream>``, encoding ``jsonschema``) with
  **one message per sample**, so the Plot panel draws each channel (``/eeg.EEG0``) against time: ``timestamp`` (UTC),
  ``ref``, ``device`` and ``host`` (the raw times, kept) as ``{sec, nsec}`` (JSON numbers cannot hold int64 ns),
  ``unc_ns``, ``segment`` and one field per channel, named by its label;
* text/marker streams are ``foxglove.Log`` messages (the Log panel), gap records ``foxglove.Log`` warnings on
  ``/synchub/gaps``; grayscale frames (video/image ``uint8`` h x w) ``foxglove.RawImage`` (``mono8``);
* ``log_time`` = ``publish_time`` = the sample's corrected time in **UTC ns**, from the agent's reference -> UTC
  samples recorded in the session (``UtcMap``: a least-squares line through them; without any, the reference clock,
  and the file's ``synchub.export`` metadata says so).

The Foxglove schemas are those of ``@foxglove/schemas`` 2.1 (MIT), descriptions shortened; ``tests/formats`` checks
them against the npm package and reads the file back with ``@mcap/core``.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import re

import msgpack
import numpy as np
from mcap.records import Channel, Message, Metadata
from mcap.stream_reader import StreamReader
from mcap.writer import Writer

from synchub.agent.core.evidence import UtcSample, evidence_from_dict
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.core.units import NS

from .mcap_layout import COMPRESSION

log = logging.getLogger("synchub.agent.formats.mcap")

_TIME = {"type": "object", "title": "time", "properties": {"sec": {"type": "integer", "minimum": 0},
                                                            "nsec": {"type": "integer", "minimum": 0,
                                                                     "maximum": 999999999}}}
LOG_SCHEMA = {
    "title": "foxglove.Log", "description": "A log message", "type": "object",
    "properties": {
        "timestamp": {**_TIME, "description": "Timestamp of log message"},
        "level": {"title": "foxglove.LogLevel", "description": "Log level", "oneOf": [
            {"title": t, "const": i} for i, t in enumerate(("UNKNOWN", "DEBUG", "INFO", "WARNING", "ERROR", "FATAL"))]},
        "message": {"type": "string", "description": "Log message"},
        "name": {"type": "string", "description": "Process or node name"},
        "file": {"type": "string", "description": "Filename"},
        "line": {"type": "integer", "minimum": 0, "description": "Line number in the file"},
    },
}
RAW_IMAGE_SCHEMA = {
    "title": "foxglove.RawImage", "description": "A raw image", "type": "object",
    "properties": {
        "timestamp": {**_TIME, "description": "Timestamp of image"},
        "frame_id": {"type": "string", "description": "Frame of reference for the image"},
        "width": {"type": "integer", "minimum": 0, "description": "Image width in pixels"},
        "height": {"type": "integer", "minimum": 0, "description": "Image height in pixels"},
        "encoding": {"type": "string", "description": "Encoding of the raw image data"},
        "step": {"type": "integer", "minimum": 0, "description": "Byte length of a single row"},
        "data": {"type": "string", "contentEncoding": "base64", "description": "Raw image data"},
    },
}
INFO, WARNING = 2, 3


class UtcMap:
    """Reference time (int ns) -> UTC ns: a least-squares line through the session's (reference, UTC) samples
    (one sample: a constant offset; none: the identity)."""

    def __init__(self, pairs: list[tuple[int, int]]):
        self.pairs = sorted(set(pairs))
        self.ok = bool(self.pairs)
        if len(self.pairs) >= 2:
            mono = np.array([p[0] for p in self.pairs], dtype=np.int64)
            off = np.array([p[1] - p[0] for p in self.pairs], dtype=np.int64)
            self.t0, self.o0 = int(mono[0]), int(off[0])
            slope, icept = np.polyfit((mono - self.t0) / NS, (off - self.o0).astype(np.float64), 1)
            self.slope, self.icept = float(slope), float(icept)  # ns of offset per s, ns
        else:
            self.t0, self.o0 = (self.pairs[0][0], self.pairs[0][1] - self.pairs[0][0]) if self.pairs else (0, 0)
            self.slope = self.icept = 0.0

    def __call__(self, ref_ns) -> np.ndarray:
        ref = np.asarray(ref_ns, dtype=np.int64)
        return ref + self.o0 + np.rint(self.icept + self.slope * (ref - self.t0) / NS).astype(np.int64)


def utc_pairs(paths) -> list[tuple[int, int]]:
    """The (reference, UTC) samples of a session's parts, in a quick pass that unpacks only the ``_meta`` messages
    (the session's start pair only when there are fewer than two others, as in the XDF export)."""
    evidence, start = [], []
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else list(paths):
        meta_channels: set[int] = set()
        with open(path, "rb") as f:
            try:
                for rec in StreamReader(f, validate_crcs=True).records:
                    if isinstance(rec, Channel) and rec.topic.endswith("/_meta"):
                        meta_channels.add(rec.id)
                    elif isinstance(rec, Message) and rec.channel_id in meta_channels:
                        meta = msgpack.unpackb(rec.data, raw=False).get("meta") or {}
                        if meta.get("kind") == "evidence" and meta.get("type") in ("utc", "offset"):  # offset: older files
                            try:
                                item = evidence_from_dict(meta)
                            except ValueError:
                                continue
                            if isinstance(item, UtcSample):
                                evidence.append((int(item.mono_ns), int(item.utc_ns)))
                    elif isinstance(rec, Metadata) and rec.name == "synchub.session":
                        utc, mono = int(rec.metadata.get("agent_utc_ns", 0)), int(rec.metadata.get("agent_mono_ns", 0))
                        if utc > 0 and mono > 0:
                            start.append((mono, utc))
            except Exception as exc:  # noqa: BLE001 - a torn tail ends the readable part
                log.info("mcap: %s readable up to a torn/corrupt record (%s)", path, exc)
    return evidence if len(set(evidence)) >= 2 else evidence + start


def _stamp(ns: int) -> dict:
    return {"sec": int(ns) // NS, "nsec": int(ns) % NS}


def _field(label: str, taken: set) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", label) or "ch"
    name = name if name[0].isalpha() or name[0] == "_" else "ch_" + name
    while name in taken or name in ("timestamp", "ref", "device", "host", "unc_ns", "segment", "seq"):
        name += "_"
    taken.add(name)
    return name


class FoxgloveExport:
    """An exporter (``export.export_session``) writing the Foxglove view of the session to ``dest`` (a path)."""

    def __init__(self, dest, utc: UtcMap, compression: str = "zstd"):
        self.fh = open(dest, "wb")  # noqa: SIM115 - closed in close()
        self.w = Writer(self.fh, compression=COMPRESSION[compression], use_chunking=True)
        self.w.start(profile="", library="synchub export")
        self.utc = utc
        self.infos: dict[str, StreamInfo] = {}
        self.kind: dict[str, str] = {}
        self.fields: dict[str, list[str]] = {}
        self.channels: dict[str, int] = {}
        self.samples: dict[str, int] = {}
        self.last_utc: dict[str, int] = {}
        self._schemas: dict[str, int] = {}
        self._templates: dict[str, str] = {}
        self.gaps = 0

    def _schema(self, name: str, schema: dict) -> int:
        if name not in self._schemas:
            self._schemas[name] = self.w.register_schema(name, "jsonschema", json.dumps(schema).encode())
        return self._schemas[name]

    def _channel(self, topic: str, schema_name: str, schema: dict, meta: dict | None = None) -> int:
        return self.w.register_channel(topic, "json", self._schema(schema_name, schema),
                                       {k: str(v) for k, v in (meta or {}).items()})

    def start(self, key: str, info: StreamInfo) -> None:
        self.infos[key] = info
        self.samples[key] = 0
        meta = {"synchub_stream": key, "modality": info.type, "nominal_srate": info.nominal_srate,
                "channel_units": ",".join(info.channel_units)}
        if info.channel_format == "string":
            self.kind[key] = "log"
            self.channels[key] = self._channel(f"/{key}", "foxglove.Log", LOG_SCHEMA, meta)
        elif info.channel_format == "uint8" and len(info.shape) == 2:
            self.kind[key] = "image"
            self.channels[key] = self._channel(f"/{key}", "foxglove.RawImage", RAW_IMAGE_SCHEMA, meta)
        else:
            self.kind[key] = "values"
            taken: set = set()
            labels = info.channel_labels or tuple(f"ch{i}" for i in range(info.channel_count))
            self.fields[key] = [_field(lab, taken) for lab in labels]
            props = {"timestamp": {**_TIME, "description": "corrected time, UTC"},
                     "ref": {**_TIME, "description": "corrected reference time (agent CLOCK_MONOTONIC)"},
                     "device": {**_TIME, "description": "raw device time"},
                     "host": {**_TIME, "description": "agent receive time (CLOCK_MONOTONIC)"},
                     "unc_ns": {"type": "integer", "description": "1-sigma uncertainty of ref"},
                     "segment": {"type": "integer", "description": "device clock segment"},
                     "seq": {"type": "integer", "description": "sample sequence number"},
                     **{f: {"type": "number", "description": lab + (f" ({info.channel_units[i]})"
                                                                    if info.channel_units else "")}
                        for i, (f, lab) in enumerate(zip(self.fields[key], labels, strict=True))}}
            schema = {"title": f"synchub.{key}", "type": "object", "properties": props}
            self.channels[key] = self._channel(f"/{key}", f"synchub.{key}", schema, meta)

    def chunk(self, key: str, c: Chunk) -> None:
        ref = c.ref_ns if c.ref_ns is not None else c.host_ns
        utc = np.maximum(self.utc(ref), 0)
        ch, kind = self.channels[key], self.kind[key]
        times = utc.tolist()
        if kind == "values":
            texts = self._value_texts(key, c, ref, utc)
        else:
            texts = []
            for i in range(c.n):
                if kind == "log":
                    msg = {"timestamp": _stamp(times[i]), "level": INFO, "message": str(c.data[i]), "name": key,
                           "file": "", "line": 0}
                else:
                    frame = np.asarray(c.data[i], dtype=np.uint8)
                    msg = {"timestamp": _stamp(times[i]), "frame_id": key, "width": frame.shape[1],
                           "height": frame.shape[0], "encoding": "mono8", "step": frame.shape[1],
                           "data": base64.b64encode(frame.tobytes()).decode()}
                texts.append(json.dumps(msg, separators=(",", ":")))
        for i, (t, text) in enumerate(zip(times, texts, strict=True)):
            self.w.add_message(ch, t, text.encode(), t, (c.seq + i) & 0xFFFFFFFF)
        self.samples[key] += c.n
        self.last_utc[key] = times[-1]

    def _value_texts(self, key: str, c: Chunk, ref: np.ndarray, utc: np.ndarray) -> list[str]:
        """The JSON of each numeric sample, formatted from columns (a dict and json.dumps per sample cost 3x)."""
        cols = []
        for arr in (utc, ref, c.device_ns, c.host_ns):
            sec, nsec = np.divmod(np.asarray(arr, dtype=np.int64), NS)
            cols += [sec.tolist(), nsec.tolist()]
        cols.append(c.unc_ns.tolist() if c.unc_ns is not None else [-1] * c.n)
        cols.append(c.segment.tolist() if c.segment is not None else [0] * c.n)
        cols.append(range(c.seq, c.seq + c.n))
        values = np.asarray(c.data, dtype=np.float64).reshape(c.n, -1)
        finite = np.isfinite(values).all()
        for j in range(values.shape[1]):  # repr of a finite float is valid JSON; NaN/inf are null
            col = values[:, j].tolist()
            cols.append(col if finite else [repr(v) if math.isfinite(v) else "null" for v in col])
        template = self._templates.get(key)
        if template is None:
            head = ('{"timestamp":{"sec":%d,"nsec":%d},"ref":{"sec":%d,"nsec":%d},"device":{"sec":%d,"nsec":%d},'
                    '"host":{"sec":%d,"nsec":%d},"unc_ns":%d,"segment":%d,"seq":%d')
            template = self._templates[key] = head + "".join(f',"{f}":%r' for f in self.fields[key]) + "}"
        if finite:
            return [template % row for row in zip(*cols, strict=True)]
        template = template.replace("%r", "%s")  # values already JSON text
        return [template % row for row in zip(*cols, strict=True)]

    def gap(self, key: str, gap: dict) -> None:
        self.gaps += 1
        if "_gaps" not in self.channels:
            self.channels["_gaps"] = self._channel("/synchub/gaps", "foxglove.Log", LOG_SCHEMA)
        t = self.last_utc.get(key) or max(self.last_utc.values(), default=0) or int(self.utc(self.utc.t0))
        msg = {"timestamp": _stamp(t), "level": WARNING, "name": key, "file": "", "line": 0,
               "message": f"{gap.get('count', 0)} samples lost ({gap.get('cause', '?')}): {gap.get('detail', '')}"}
        self.w.add_message(self.channels["_gaps"], t, json.dumps(msg).encode(), t)

    def evidence(self, item) -> None:
        pass

    def close(self) -> dict:
        self.w.add_metadata("synchub.export", {"log_time": "UTC ns" if self.utc.ok else "reference clock (no UTC)",
                                               "utc_samples": str(len(self.utc.pairs))})
        self.w.finish()
        self.fh.close()
        return {"streams": {k: {"samples": n, "uncorrected": 0, "gap_samples": 0} for k, n in self.samples.items()},
                "log_time": "UTC" if self.utc.ok else "reference clock", "gap_records": self.gaps}
