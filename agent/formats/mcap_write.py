"""Writing synchub's MCAP files (layout: ``mcap_layout``): a writer with the schemas registered, the recovery of a
crashed collector's unfinished file, and a copy of a recording with its correction layer replaced (``synchub
align --out``).  Files are written through file objects; sockets and fsync scheduling belong to the collector.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import msgpack
import numpy as np
from mcap.records import Metadata
from mcap.writer import Writer

from synchub import __version__
from synchub.agent.core.stream import Chunk

from .mcap_layout import COMPRESSION, SCHEMAS
from .mcap_read import CorruptMcap, TornRecords, is_finished, iter_raw

log = logging.getLogger("synchub.agent.formats.mcap")


def new_writer(fh, compression: str = "zstd") -> tuple[Writer, dict[str, int]]:
    """A started writer (chunks are cut only by our own ``flush``) and the schema ids by name."""
    w = Writer(fh, chunk_size=1 << 40, compression=COMPRESSION[compression])
    w.start(profile="", library=f"synchub {__version__}")
    ids = {name: w.register_schema(name, "jsonschema", json.dumps(schema).encode()) for name, schema in
           SCHEMAS.items()}
    return w, ids


def recover(path: str | os.PathLike, compression: str = "zstd") -> int:
    """Rewrite an unfinished MCAP (a crashed collector) into a finished one holding every complete record.
    Returns the highest transport ``mid`` found (0 if none).  The original is replaced atomically."""
    path = Path(path)
    msgs, metas, channels, schemas, _ = iter_raw(path)
    tmp = path.with_suffix(".recovering")
    last_mid = 0
    with open(tmp, "wb") as fh:
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


def write_corrected(src, fo, corrected: list[Chunk]) -> None:
    """Copy ``src`` to the binary file object ``fo`` record by record, replacing each chunk message's correction
    layer with the samples of ``corrected`` (chunks cut anywhere: a message takes its samples by sequence number; one
    not fully covered keeps its layer)."""
    by_stream: dict[str, list[Chunk]] = {}
    for c in corrected:
        if c.n and c.ref_ns is not None:
            by_stream.setdefault(c.stream, []).append(c)
    table = {}
    for name, cs in by_stream.items():
        cs.sort(key=lambda c: c.seq)
        seq = np.concatenate([c.seq + np.arange(c.n, dtype=np.int64) for c in cs])
        seg = None if all(c.segment is None for c in cs) else np.concatenate(
            [c.segment if c.segment is not None else np.zeros(c.n, np.int32) for c in cs])
        first = np.cumsum([0] + [c.n for c in cs[:-1]])
        table[name] = (seq, np.concatenate([c.ref_ns for c in cs]), np.concatenate([c.unc_ns for c in cs]), seg,
                       first, [c.method for c in cs])

    def correct(stream: str, d: dict) -> Chunk | None:
        t = table.get(stream)
        n = int(d.get("n") or 0)
        if t is None or not n:
            return None
        seq, ref, unc, seg, first, methods = t
        want = int(d["seq"]) + np.arange(n, dtype=np.int64)
        i = np.searchsorted(seq, want)
        if i[-1] >= len(seq) or not np.array_equal(seq[i], want):
            return None
        dev = np.frombuffer(d["device_ns"], "<i8")
        base = Chunk(stream, int(d["seq"]), np.zeros((n, 0)), dev, np.frombuffer(d["host_ns"], "<i8"))
        method = methods[int(np.searchsorted(first, i[0], side="right")) - 1]
        return base.corrected(ref[i], unc[i], method, segment=None if seg is None else seg[i])

    recorrect(src, correct, fo)


def recorrect(src, correct: Callable[[str, dict], Chunk | None], fo=None) -> None:
    """Each chunk message of ``src`` in file order, decoded (``seq``, ``device_ns``/``host_ns``/``ref_ns`` bytes,
    ...), given to ``correct(stream, message)``; with ``fo``, ``src`` is copied to it record by record, each chunk
    message's correction layer replaced by the ``Chunk`` returned (None: kept).  Memory: a chunk of ``src``.

    Read record by record, finished or not (not by a finished file's summary: a garbled index or footer, the data
    whole, misled the seeking reader into a traceback): an unfinished file up to its tear; a finished file with a
    corrupt record is a ``CorruptMcap`` error."""
    finished = is_finished(src)
    with open(src, "rb") as fi:
        torn = TornRecords(fi, src)
        metas: list = []
        w = None
        schema_ids, channel_ids = {}, {}
        for schema, channel, message in _torn_messages(torn, metas):
            if fo is not None and w is None:
                w = _copy_writer(fo, torn.header)
            if w is not None and schema is not None and schema.id not in schema_ids:
                schema_ids[schema.id] = w.register_schema(schema.name, schema.encoding, schema.data)
            if w is not None and channel.id not in channel_ids:
                channel_ids[channel.id] = w.register_channel(channel.topic, channel.message_encoding,
                                                             schema_ids.get(channel.schema_id, 0),
                                                             dict(channel.metadata))
            data, log_time = message.data, message.log_time
            d = msgpack.unpackb(data, raw=False) if channel.message_encoding == "msgpack" else None
            stream = channel.topic.rsplit("/", 1)[-1]
            c = correct(stream, d) if isinstance(d, dict) and "seq" in d and "device_ns" in d else None
            if c is not None:
                d["ref_ns"] = c.ref_ns.astype("<i8").tobytes()
                d["unc_ns"] = c.unc_ns.astype("<i8").tobytes()
                d["segment"] = c.segment.astype("<i4").tobytes() if c.segment is not None else None
                d["method"] = c.method
                data = msgpack.packb(d, use_bin_type=True)
                log_time = int(max(c.ref_ns[0], 0))
            if w is not None:
                w.add_message(channel_ids[channel.id], log_time=log_time, data=data,
                              publish_time=message.publish_time, sequence=message.sequence)
        if finished and torn.error is not None:
            raise CorruptMcap(src, torn.error)
        if fo is not None:
            w = w or _copy_writer(fo, torn.header)
            for record in metas:
                w.add_metadata(record.name, dict(record.metadata))
            w.finish()


def _copy_writer(fo, header) -> Writer:
    w = Writer(fo)
    w.start(profile=header.profile if header else "",
            library=f"{header.library if header else 'synchub'} + synchub align")
    return w


def _torn_messages(torn: TornRecords, metas: list):
    """(schema, channel, message) of an unfinished MCAP's messages in file order, up to its tear; its metadata
    records are appended to ``metas``."""
    for rec in torn:
        if isinstance(rec, Metadata):
            metas.append(rec)
        elif (ch := torn.channels.get(rec.channel_id)) is not None:
            yield torn.schemas.get(ch.schema_id), ch, rec
