"""The spool's files on disk: append-only segment files of CRC-framed msgpack records.

A directory of ``seg-NNNNNNNN.log`` files; a record is ``u32 length | u32 crc32(payload) | payload`` with payload
a msgpack list (the spool's ``[session, mid, kind, stream, seq, n, priority, [frames...], last]``).  Records go to
the OS on every append; ``fsync`` when the spool asks (``fsync_s``), on a segment roll and on close.  A segment
rolls at ``segment_bytes``.  ``scan`` reads the segments back in order; a record with a bad CRC or a torn tail
ends its segment.  ``segs`` keeps each segment's size and how many of its records are live (the spool counts them;
a segment with none is deleted).
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import msgpack

log = logging.getLogger(__name__)

_HDR = struct.Struct("<II")


class SegmentLog:
    def __init__(self, directory: Path, segment_bytes: int):
        self.dir = directory
        self.segment_bytes = int(segment_bytes)
        self.segs: dict[int, list[int]] = {}  # seg -> [file bytes, live records]
        self.fd = -1
        self.seg = 0  # the segment appended to
        self.size = 0
        self.last_fsync = time.monotonic()
        self.before_delete = None  # called before a segment file goes (the spool saves its acks first)

    def path(self, seg: int) -> Path:
        return self.dir / f"seg-{seg:08d}.log"

    def roll(self) -> None:
        """Start a new segment (fsync and close the current one; delete segments with no live record)."""
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
        self.seg = max(self.segs, default=0) + 1
        self.fd = os.open(self.path(self.seg), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = 0
        self.segs[self.seg] = [0, 0]
        self.last_fsync = time.monotonic()
        for seg in [s for s, v in self.segs.items() if v[1] <= 0 and s != self.seg]:
            self.delete(seg)

    def append(self, fields: list) -> tuple[int, int, int]:
        """Write one record; returns where it is: ``(segment, offset, length)``."""
        payload = msgpack.packb(fields, use_bin_type=True)
        rec = _HDR.pack(len(payload), zlib.crc32(payload)) + payload
        if self.size and self.size + len(rec) > self.segment_bytes:
            self.roll()
        os.write(self.fd, rec)
        where = (self.seg, self.size, len(rec))
        self.size += len(rec)
        self.segs[self.seg][0] += len(rec)
        return where

    def read(self, seg: int, offset: int, length: int) -> list | None:
        try:
            with open(self.path(seg), "rb") as f:
                f.seek(offset)
                raw = f.read(length)
        except OSError:
            return None
        return parse_record(raw)[0] if raw else None

    def delete(self, seg: int) -> None:
        if self.before_delete is not None:
            self.before_delete()
        self.segs.pop(seg, None)
        self.path(seg).unlink(missing_ok=True)

    def disk_bytes(self) -> int:
        return sum(s[0] for s in self.segs.values())

    def fsync_due(self, fsync_s: float) -> None:
        now = time.monotonic()
        if now - self.last_fsync > fsync_s and self.fd >= 0:
            os.fsync(self.fd)
            self.last_fsync = now

    def close(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
        for seg in [s for s, v in self.segs.items() if v[1] <= 0]:
            self.delete(seg)

    def scan(self) -> Iterator[tuple[int, int, int, list]]:
        """Every good record of the segments on disk, in order: ``(segment, offset, length, fields)``."""
        for p in sorted(self.dir.glob("seg-*.log")):
            seg = int(p.stem[4:])
            data = p.read_bytes()
            self.segs[seg] = [len(data), 0]
            offset = 0
            for rec, length in iter_records(data):
                yield seg, offset, length, rec
                offset += length
            if offset < len(data):
                log.warning("spool: %s has a torn or corrupt tail after %d bytes; ignored", p, offset)


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content (the spool's acks, hellos);
    ``durable=False`` skips the fsync: a process crash still leaves old or new, a power cut may leave an older one."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if durable:
            os.fsync(f.fileno())
    os.replace(tmp, path)


def parse_record(raw: bytes) -> tuple[list | None, int]:
    """``(fields, record length)`` of the record at the start of ``raw``; ``(None, 0)`` when it is not a good one."""
    if len(raw) < _HDR.size:
        return None, 0
    length, crc = _HDR.unpack_from(raw)
    end = _HDR.size + length
    payload = raw[_HDR.size:end]
    if len(payload) != length or zlib.crc32(payload) != crc:
        return None, 0
    try:
        rec = msgpack.unpackb(payload, raw=False)
    except (ValueError, msgpack.UnpackException):
        return None, 0
    if not isinstance(rec, list) or len(rec) not in (8, 9):
        return None, 0
    if len(rec) == 8:
        rec.append(rec[1])
    return rec, end


def iter_records(data: bytes):
    offset = 0
    while offset < len(data):
        rec, length = parse_record(data[offset:offset + _HDR.size + _HDR.unpack_from(data, offset)[0]]
                                   if offset + _HDR.size <= len(data) else b"")
        if rec is None:
            return
        yield rec, length
        offset += length


class AckFile:
    """The spool's ``acked.msgpack``: replaced (atomically) at most every ``every_s`` while acks change, fsync-ed at
    most every ``fsync_s`` (an fsync, and even a rename, per ack blocked the sender's I/O loop for milliseconds).  A stale file after a power cut only
    means resends, which the collector drops as duplicates."""

    def __init__(self, path: Path, fsync_s: float, every_s: float = 0.2):
        self.path, self.fsync_s, self.every_s = path, fsync_s, every_s
        self.last_save = self.last_fsync = 0.0
        self.dirty = False  # acks changed since the last save
        self.unsynced = False  # replaced without an fsync since the last fsync

    def due(self, now: float) -> bool:
        return (self.dirty and now - self.last_save > self.every_s) or (
            self.unsynced and now - self.last_fsync >= self.fsync_s)

    def save(self, data: bytes, now: float, durable: bool = False) -> None:
        durable = durable or now - self.last_fsync >= self.fsync_s
        atomic_write(self.path, data, durable)
        self.last_save, self.dirty, self.unsynced = now, False, not durable
        if durable:
            self.last_fsync = now
