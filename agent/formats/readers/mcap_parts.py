"""Streaming reader of synchub MCAP sessions: several part files are one session, read a record at a time.

``mcap_read.read_session`` loads a whole session into memory (about 4 MB per second of recording); ``McapInput``
yields the same content piece by piece through the ``mcap`` library's ``StreamReader`` (which decompresses one
MCAP chunk at a time): a ``Piece`` per chunk message (raw device and host times, sequence numbers, data), a
``Reset`` per ``ClockReset`` record (older files: ``device_reset`` gap), a ``GapRecord`` per gap record, a ``Recorded`` per evidence record the agent wrote, in file order, part after
part (parts are ordered by the ``part`` of their ``synchub.session`` metadata, then by name).

Message payloads are decoded by ``decode_message`` alone (msgpack today; another encoding for Foxglove, JSON or
protobuf, goes there, keeping old files readable).  Streams are listed from the channels (``/<agent>/<stream>``,
schema ``synchub.Chunk``) and their ``stream_info`` records; the agent's ``clock_config`` record is kept in
``clock_config``.  A file that is not MCAP is a one-line ``InputError``; an unfinished part (a collector that
crashed) is read up to its last complete record and said so in ``warnings``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import msgpack
import numpy as np
from mcap.reader import make_reader
from mcap.records import Channel, Message, Metadata, Schema

from synchub.agent.core.evidence import ClockReset, evidence_from_dict
from synchub.agent.core.stream import StreamInfo
from synchub.agent.formats.mcap_layout import MAGIC
from synchub.agent.formats.mcap_read import SynchubRecords, is_finished

from .base import FileStream, GapRecord, InputError, InputOptions, Piece, Recorded, Reset

log = logging.getLogger(__name__)


def decode_message(encoding: str, schema_name: str, data: bytes) -> dict | None:
    """A message's payload as a dict (None when it is not synchub's): the one place that knows the encoding."""
    if encoding == "msgpack":
        d = msgpack.unpackb(data, raw=False)
    elif encoding == "json":
        d = json.loads(data)
    else:
        return None
    return d if isinstance(d, dict) else None


def _info_from_metadata(md: dict[str, str]) -> dict:
    out = {}
    for k, v in md.items():
        try:
            out[k] = json.loads(v) if k not in ("name", "type", "channel_format", "source_id") else v
        except (ValueError, TypeError):
            out[k] = v
    return out


class McapInput:
    """The part files of one synchub session (see the module docstring)."""

    kind = "mcap"

    def __init__(self, paths, options: InputOptions | None = None):
        self.options = options or InputOptions()
        self.paths = [str(p) for p in paths]
        self.path = self.paths[0]
        self.warnings: list[str] = []
        parts = []
        for p in self.paths:
            with open(p, "rb") as f:
                if f.read(len(MAGIC)) != MAGIC:
                    raise InputError(p, "not an MCAP file (no MCAP magic)")
            part = 0
            if is_finished(p):
                with open(p, "rb") as f:
                    try:
                        for m in make_reader(f).iter_metadata():
                            if m.name == "synchub.session":
                                part = int(m.metadata.get("part", "0") or 0)
                    except Exception:  # noqa: BLE001 - an index we cannot use: the part stays 0
                        part = 0
            else:
                self.warnings.append(f"{p}: unfinished MCAP (a collector that stopped): read up to its last "
                                     f"complete record")
            parts.append((part, Path(p).name, p))
        self.paths = [p for _, _, p in sorted(parts)]
        self.path = self.paths[0]
        self.clock_config: dict = {}
        self.latency: dict = {}  # the agent's latest ``latency_calibration`` record (``_latency``): what corrected what
        infos: dict[str, dict] = {}
        topics: dict[str, str] = {}
        for _, rec in self._records(meta_only=True):
            if isinstance(rec, Channel) and rec.topic.rsplit("/", 1)[-1][:1] != "_":
                name = rec.topic.rsplit("/", 1)[-1]
                topics[name] = rec.topic
                if rec.metadata and name not in infos:
                    infos[name] = _info_from_metadata(dict(rec.metadata))
            elif isinstance(rec, dict):
                if rec.get("kind") == "stream_info" and isinstance(rec.get("info"), dict):
                    infos[rec["stream"]] = rec["info"]
                meta = rec.get("meta") or {}
                if meta.get("kind") == "clock_config" and not self.clock_config:
                    self.clock_config = meta
                elif meta.get("kind") == "latency_calibration":  # at start, and again at stop with what it measured
                    self.latency = meta
        if not topics:
            raise InputError(self.path, "no synchub streams in this MCAP session")
        self.streams: list[FileStream] = []
        for name in sorted(topics):
            try:
                info = StreamInfo.from_dict(infos[name]) if name in infos else None
            except (ValueError, TypeError) as exc:
                raise InputError(self.path, f"stream {name!r}: bad stream info ({exc})") from None
            if info is None:
                self.warnings.append(f"{self.path}: stream {name!r} has no stream info: skipped")
                continue
            self.streams.append(FileStream(key=name, info=info, local=topics[name], on_file_clock=False))

    def _records(self, meta_only: bool = False) -> Iterator[tuple[str, object]]:
        """(path, record) in file order: Channel records, and decoded payloads (dict) of messages with
        ``_topic``/``_log_time`` added; with ``meta_only`` only the ``_meta``/``_gaps`` messages are decoded."""
        sizes = [os.path.getsize(p) for p in self.paths]
        total, before = max(sum(sizes), 1), 0
        self.fraction = 0.0
        for p, size in zip(self.paths, sizes, strict=True):
            channels: dict[int, Channel] = {}
            schemas: dict[int, str] = {}
            with open(p, "rb") as f:
                try:
                    for rec in SynchubRecords(f).records:
                        self.fraction = (before + f.tell()) / total
                        if isinstance(rec, Schema):
                            schemas[rec.id] = rec.name
                        elif isinstance(rec, Channel):
                            channels[rec.id] = rec
                            yield p, rec
                        elif isinstance(rec, Message):
                            c = channels.get(rec.channel_id)
                            if c is None:
                                continue
                            tail = c.topic.rsplit("/", 1)[-1]
                            if meta_only and tail not in ("_meta", "_gaps"):
                                continue
                            d = decode_message(c.message_encoding, schemas.get(c.schema_id, ""), rec.data)
                            if d is not None:
                                d["_topic"] = tail
                                yield p, d
                        elif isinstance(rec, Metadata):
                            continue
                except Exception as exc:  # noqa: BLE001 - a torn tail ends the readable part
                    if is_finished(p):
                        raise InputError(p, f"corrupt MCAP ({type(exc).__name__}: {exc})") from None
                    log.info("mcap: %s readable up to a torn record (%s)", p, exc)
            before += size

    def read(self, evidence: bool = True, streams: set[str] | None = None) -> Iterator[Piece | Reset | Recorded]:
        known = {s.key: s for s in self.streams}
        for _, d in self._records(meta_only=False):
            if not isinstance(d, dict):
                continue
            topic = d.pop("_topic")
            if topic == "_gaps":
                if evidence and d.get("cause") == "device_reset" and d.get("stream") in known:
                    yield Reset(str(d["stream"]), int(d["seq"]))
                if d.get("stream") in known:
                    yield GapRecord(str(d["stream"]), d)
            elif topic == "_meta":
                meta = d.get("meta") or {}
                if evidence and meta.get("kind") == "evidence":
                    try:
                        item = evidence_from_dict(meta)
                    except ValueError:
                        continue
                    if isinstance(item, ClockReset):  # a driver-reported reset (older files: a device_reset gap)
                        if item.stream in known:
                            yield Reset(item.stream, item.seq)
                    else:
                        yield Recorded(item)
            elif topic in known and (streams is None or topic in streams):
                yield self._piece(topic, known[topic].info, d)

    def evidence_items(self) -> Iterator[object]:
        """The clock evidence the agent recorded (``ClockReset`` aside), in file order: a pass that decodes only the
        ``_meta`` messages (a two-sided rerun judges a stream's aligner offsets all together before feeding any)."""
        for _, d in self._records(meta_only=True):
            if isinstance(d, dict) and d.get("_topic") == "_meta" and (d.get("meta") or {}).get("kind") == "evidence":
                try:
                    item = evidence_from_dict(d["meta"])
                except ValueError:
                    continue
                if not isinstance(item, ClockReset):
                    yield item

    @staticmethod
    def _piece(name: str, info: StreamInfo, d: dict) -> Piece:
        n = int(d["n"])
        dev = np.frombuffer(d["device_ns"], dtype="<i8").astype(np.int64)
        host = np.frombuffer(d["host_ns"], dtype="<i8").astype(np.int64)
        if d.get("dtype") == "str" or info.channel_format == "string":
            data = list(d["data"])
        else:
            data = np.frombuffer(d["data"], dtype=d["dtype"]).reshape((n, *d["shape"]))
        return Piece(name, int(d["seq"]), dev, data, host)
