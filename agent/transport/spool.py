"""The agent's bounded spool of unacknowledged messages (zguide "Titanic" pattern), on disk or in memory.

Every message the ``Sender`` sends is first appended here under its (session, mid) and stays until the collector's
cumulative ack covers it: resent after a reconnect, a collector restart or an agent restart (disk spool only).

On disk (``path`` given) the spool is a directory of append-only segment files (``spool_log.SegmentLog``), one
record per message: ``[session, mid, kind, stream, seq, n, priority, [frames...], last]``.  Records are written to
the OS on every append and ``fsync``-ed at most every ``fsync_s`` seconds and on segment roll and close (an agent
*process* crash loses nothing; a power cut loses at most ``fsync_s``).
Acks are kept in ``acked.msgpack`` (``AckFile``: atomic replace every second, fsync-ed every 5 s), hellos in
``hello-<session>.msgpack``.  On start the segments are scanned in order; a record with a bad CRC or a torn tail
ends that segment; a later record for the same (session, mid) supersedes an earlier one.

**Full policy.**  Live (unacked) bytes stay <= ``max_bytes``.  When an append would pass the bound, data records are
evicted: lowest stream priority first, oldest first within a priority; records already sent (``mark_sent``; they may
be at the collector) are never evicted.  Evicted records become a *gap span*: one ``gap`` message standing for the
consecutive mids ``mid..mid_last`` it replaces, with one ``spool_full`` Gap per run of lost samples of a stream, so the
collector records every lost sample and message numbering stays contiguous.  Neighbouring spans merge, so spans never
outnumber the live records between them and the spool stays bounded however long the outage.  Gap/meta records and
spans are never evicted.
Dead space is reclaimed by deleting segments with no live record and compacting the oldest segment while the files
exceed the bound (or the live records, when those pass it) plus a segment.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import msgpack

from . import wire
from .spool_entry import KIND_DATA, KIND_OTHER, KIND_TOMBSTONE, PROTECT_MARGIN, Drops, Entry, coalesce
from .spool_log import AckFile, SegmentLog, atomic_write

log = logging.getLogger(__name__)

class SpoolError(Exception):
    """The spool directory cannot be used (e.g. another agent holds it)."""


class Spool:
    def __init__(self, path: str | os.PathLike | None = None, max_bytes: int = 64 << 20,
                 priorities: dict[str, int] | None = None, segment_bytes: int | None = None, fsync_s: float = 1.0):
        self.dir = Path(path) if path else None
        self.max_bytes = int(max_bytes)
        # a quarter of the bound (64 KiB..8 MiB): the files stay within about 1.25x the bound at every size
        self.segment_bytes = int(segment_bytes or min(8 << 20, max(64 << 10, self.max_bytes // 4)))
        self.priorities = dict(priorities or {})
        self.fsync_s = fsync_s
        self.lock = threading.RLock()
        self.entries: dict[tuple[str, int], Entry] = {}
        self._span_end: dict[tuple[str, int], int] = {}  # (session, last mid of a gap span) -> its first mid
        self.protect: dict[str, int] = {}  # session -> highest mid ever sent: never evicted (the collector may have it)
        self.acked: dict[str, int] = {}
        self.last_mid: dict[str, int] = {}
        self.hellos: dict[str, list[bytes]] = {}
        self.live_bytes = 0
        self.live_disk = 0  # bytes of the live records on disk (what compaction cannot reclaim)
        self.over_bound = 0  # appends that found the bound taken by records already sent (unevictable)
        self.disk_errors = 0
        self.delivered: dict[str, int] = {}  # session -> samples of its acked data records
        self._over_logged = 0.0
        self.drops = Drops()
        self.appended = 0
        self.log: SegmentLog | None = None
        # acks: saved every second, fsync-ed every 5 (a stale file only means resends the collector drops)
        self._acks = AckFile(self.dir / "acked.msgpack", max(5.0, fsync_s), 1.0) if self.dir is not None else None
        self._lock_fd = -1
        self._compacting = False
        self._loading = False
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(self._lock_fd)
                raise SpoolError(f"spool {self.dir} is in use by another process") from None
            self.log = SegmentLog(self.dir, self.segment_bytes)
            self.log.before_delete = self._save_acks  # else a restart finds records neither acked nor spooled
            self._load()
            self.log.roll()

    # ------------------------------------------------------------------ public API
    def append(self, session: str, mid: int, frames: list, kind: int = KIND_OTHER, stream: str = "",
               seq: int = 0, n: int = 0) -> None:
        size = sum(memoryview(f).nbytes for f in frames)
        prio = self.priorities.get(stream, 0)
        with self.lock:
            if kind == KIND_DATA:
                self._make_room(size)
            e = Entry(session, mid, kind, stream, seq, n, prio, size)
            self._store(e, frames)
            self._put(e)
            if self.dir is not None and self.disk_bytes() > self._disk_bound():
                try:
                    self._reclaim()
                except OSError as exc:  # the records stay where they are; the next append tries again
                    log.error("spool: compacting %s failed: %s", self.dir, exc)
            self.last_mid[session] = max(self.last_mid.get(session, 0), mid)
            self.appended += 1

    def get(self, session: str, mid: int) -> list | None:
        """The frames of (session, mid), or None if acked or never appended."""
        return self.get_span(session, mid)[0]

    def get_span(self, session: str, mid: int, sending: bool = False) -> tuple[list | None, int]:
        """(frames, last mid it stands for) of the record at ``mid``, or (None, mid).  ``sending``: marked sent in the
        same step, so an append on another thread cannot evict it (or span over it) before it is sent."""
        with self.lock:
            e = self.entries.get((session, mid))
            if e is None:
                return None, mid
            if sending:
                self.mark_sent(session, e.last)
            if e.frames is not None:
                return e.frames, e.last
            where = (e.seg, e.offset, e.length)
        rec = self.log.read(*where)
        if rec is None:  # a compaction moved the record meanwhile: look it up again and read it under the lock
            with self.lock:
                e = self.entries.get((session, mid))
                if e is None:
                    return None, mid
                if e.frames is not None:
                    return e.frames, e.last
                rec = self.log.read(e.seg, e.offset, e.length)
        return (None if rec is None else rec[7]), e.last

    def mark_sent(self, session: str, last: int) -> None:
        """The sender sent up to ``last``: those messages may be at the collector and are never evicted."""
        with self.lock:
            if last > self.protect.get(session, 0):
                self.protect[session] = last

    def ack(self, session: str, mid: int) -> None:
        with self.lock:
            old = self.acked.get(session, 0)
            if mid <= old:
                return
            self.acked[session] = mid  # before _unref: a segment it deletes saves the acks first
            for m in range(old + 1, mid + 1):
                e = self.entries.pop((session, m), None)
                if e is not None:
                    self.delivered[session] = self.delivered.get(session, 0) + (e.n if e.kind == KIND_DATA else 0)
                    self._unref(e)
            if self._acks is not None:
                self._acks.dirty = True
                if self._acks.due(time.monotonic()):
                    self._save_acks()

    def first_unacked(self, session: str) -> int:
        return self.acked.get(session, 0) + 1

    def pending(self, session: str) -> int:
        with self.lock:
            return self.last_mid.get(session, 0) - self.acked.get(session, 0)

    def sessions(self) -> list[str]:
        """Sessions with a hello on record, oldest first."""
        with self.lock:
            return list(self.hellos)

    def save_hello(self, session: str, frames: list[bytes]) -> None:
        with self.lock:
            self.hellos[session] = [bytes(f) for f in frames]
            if self.dir is not None:
                atomic_write(self.dir / f"hello-{session}.msgpack", msgpack.packb(self.hellos[session]))

    def forget(self, session: str) -> None:
        """The session is over and fully acked: drop its hello and state."""
        with self.lock:
            for d in (self.hellos, self.acked, self.last_mid, self.protect):  # first: a segment deleted below
                d.pop(session, None)  # saves the acks, and they must not bring the session back
            for key in [k for k in self.entries if k[0] == session]:
                self._unref(self.entries.pop(key))
            if self.dir is not None:
                (self.dir / f"hello-{session}.msgpack").unlink(missing_ok=True)
                (self.dir / f"marks-{session}.bin").unlink(missing_ok=True)
                self._save_acks()

    def maintain(self) -> None:
        """Periodic work: fsync, save acks (called by the sender's I/O thread)."""
        with self.lock:
            if self.dir is None:
                return
            if self._acks.due(time.monotonic()):
                self._save_acks()
            self.log.fsync_due(self.fsync_s)

    def disk_bytes(self) -> int:
        return self.log.disk_bytes() if self.log is not None else 0

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"records": len(self.entries), "live_bytes": self.live_bytes, "disk_bytes": self.disk_bytes(),
                    "dropped_samples": self.drops.samples, "dropped_records": self.drops.records,
                    "drops_by_stream": dict(self.drops.by_stream), "appended": self.appended,
                    "over_bound": self.over_bound, "disk_errors": self.disk_errors, "delivered": dict(self.delivered)}

    def close(self) -> None:
        with self.lock:
            if self.dir is not None:
                self._save_acks(durable=True)
                self.log.close()
                if self._lock_fd >= 0:
                    os.close(self._lock_fd)
                    self._lock_fd = -1

    # ------------------------------------------------------------------ internals
    def _put(self, e: Entry) -> None:
        old = self.entries.get((e.session, e.mid))
        if old is not None:
            self._unref(old)
        if e.kind == KIND_TOMBSTONE:
            self._span_end[(e.session, e.last)] = e.mid
        self.entries[(e.session, e.mid)] = e
        self.live_bytes += e.size
        if e.seg >= 0:
            self.log.segs[e.seg][1] += 1
            self.live_disk += e.length

    def _unref(self, e: Entry) -> None:
        self.live_bytes -= e.size
        if e.kind == KIND_TOMBSTONE and self._span_end.get((e.session, e.last)) == e.mid:
            del self._span_end[(e.session, e.last)]
        if e.seg >= 0:
            self.live_disk -= e.length
        if e.seg >= 0 and e.seg in self.log.segs:
            s = self.log.segs[e.seg]
            s[1] -= 1
            if s[1] <= 0 and e.seg != self.log.seg and not self._loading:
                self.log.delete(e.seg)

    def _make_room(self, size: int) -> None:
        if self.live_bytes + size <= self.max_bytes:
            return
        target = min(self.max_bytes - size, int(self.max_bytes * 0.95))  # evict a little extra: amortized
        cands = [e for e in self.entries.values() if e.kind == KIND_DATA and e.mid > self.protect.get(e.session, 0)]
        for prio in sorted({e.priority for e in cands}):
            for e in [e for e in cands if e.priority == prio]:
                if self.entries.get((e.session, e.mid)) is not e:
                    continue
                if self.live_bytes <= target:
                    return
                self._tombstone(e)
        if self.live_bytes + size > self.max_bytes:  # what is left was sent (or is a gap): it must stay
            self.over_bound += 1
            now = time.monotonic()
            if now - self._over_logged > 10.0:
                self._over_logged = now
                log.warning("spool: over its bound (%d of %d bytes are records already sent or gap records, which "
                            "are never dropped); keeping the new record (%d times so far)", self.live_bytes,
                            self.max_bytes, self.over_bound)

    def _tombstone(self, e: Entry) -> None:
        """Evict data record ``e``: it joins (or starts) a gap span with the neighbouring evicted mids, so the spool
        keeps one small record per run of consecutive evicted messages (bounded by the live records between runs)."""
        sess = e.session
        gaps = [{"stream": e.stream, "seq": e.seq + e.n, "count": e.n, "cause": "spool_full"}]
        start, last = e.mid, e.mid
        self._drop_entry(e)
        prev_start = self._span_end.get((sess, e.mid - 1))
        prev = self.entries.get((sess, prev_start)) if prev_start is not None else None
        # a span already sent stays as it was: the collector may hold it and the sender's cursor is past it, so
        # growing it backwards over this mid would leave the mid nowhere (the "missing from the spool" jam)
        if prev is not None and prev.kind == KIND_TOMBSTONE and prev.mid > self.protect.get(sess, 0):
            gaps = prev.gaps + gaps
            start = prev.mid
            self._drop_entry(prev)
        nxt = self.entries.get((sess, e.mid + 1))
        if nxt is not None and nxt.kind == KIND_TOMBSTONE and nxt.gaps is not None:
            gaps = gaps + nxt.gaps
            last = nxt.last
            self._drop_entry(nxt)
        gaps = coalesce(gaps)
        frames = wire.encode_gap_span(sess, start, last, gaps)
        t = Entry(sess, start, KIND_TOMBSTONE, "", 0, 0, 1 << 30, len(frames[0]), last=last, gaps=gaps)
        self._store(t, frames)
        self._put(t)
        self.drops.add(e.stream, e.n, self.max_bytes)

    def _drop_entry(self, e: Entry) -> None:
        if self.entries.get((e.session, e.mid)) is e:
            del self.entries[(e.session, e.mid)]
            self._unref(e)

    def _reclaim(self) -> None:
        """Compact segments while the files pass the bound, the one with the most dead space first (its live records
        move to the newest segment); one three quarters live is left alone (the bound is taken by sent records)."""
        if self._compacting:
            return
        self._compacting = True
        try:
            guard = 0
            while self.disk_bytes() > self._disk_bound() and len(self.log.segs) > 2 and guard < 64:
                guard += 1
                live: dict[int, int] = {}
                for e in self.entries.values():
                    if e.seg >= 0:
                        live[e.seg] = live.get(e.seg, 0) + e.length
                seg = max((s for s in self.log.segs if s != self.log.seg),
                          key=lambda s: self.log.segs[s][0] - live.get(s, 0))
                if live.get(seg, 0) > self.log.segs[seg][0] * 3 // 4:
                    return
                self._compact(seg)
        finally:
            self._compacting = False

    def _store(self, e: Entry, frames: list) -> None:
        """The record's frames to disk (memory spool: kept as they are)."""
        if self.dir is None:
            e.frames = list(frames)
            return
        try:
            self._write(e, [bytes(memoryview(f)) for f in frames])
        except OSError as exc:  # disk full, I/O error: the record stays in memory (until acked), loudly
            e.seg, e.frames = -1, list(frames)
            self.disk_errors += 1
            if self.disk_errors == 1 or self.disk_errors % 1000 == 0:
                log.error("spool: cannot write to %s (%s); keeping records in memory (%d so far): they are lost if "
                          "the agent is killed before the collector acks them", self.dir, exc, self.disk_errors)

    def _disk_bound(self) -> int:
        return max(self.max_bytes, self.live_disk) + self.segment_bytes

    def _write(self, e: Entry, frames: list[bytes]) -> None:
        e.seg, e.offset, e.length = self.log.append([e.session, e.mid, e.kind, e.stream, e.seq, e.n, e.priority,
                                                     frames, e.last])

    def _compact(self, seg: int) -> None:
        live = [e for e in self.entries.values() if e.seg == seg]
        for e in live:
            rec = self.log.read(e.seg, e.offset, e.length)
            if rec is None:
                continue
            ne = Entry(e.session, e.mid, e.kind, e.stream, e.seq, e.n, e.priority, e.size, last=e.last, gaps=e.gaps)
            self._write(ne, rec[7])
            self._put(ne)
        self.log.delete(seg)

    def _load(self) -> None:
        self._loading = True
        try:
            self._load_files()
        finally:
            self._loading = False

    def _load_files(self) -> None:
        try:
            state = msgpack.unpackb((self.dir / "acked.msgpack").read_bytes())
            self.acked = {str(k): int(v) for k, v in state["acked"].items()}
            # messages sent after the last save may have reached the collector: keep a margin unevictable
            self.protect = {str(k): int(v) + PROTECT_MARGIN for k, v in state["sent"].items()}
        except (OSError, ValueError, AttributeError, KeyError, TypeError, msgpack.UnpackException):
            self.acked, self.protect = {}, {}
        for p in sorted(self.dir.glob("hello-*.msgpack"), key=lambda p: p.stat().st_mtime):
            try:
                self.hellos[p.name[6:-8]] = list(msgpack.unpackb(p.read_bytes()))
            except (OSError, ValueError, msgpack.UnpackException):
                log.warning("spool: unreadable %s ignored", p)
        for seg, offset, length, rec in self.log.scan():
            session, mid, kind, stream, seq, n, prio, frames, last = rec
            if last > self.acked.get(session, 0):
                gaps = None
                if kind == KIND_TOMBSTONE:
                    try:
                        gaps = msgpack.unpackb(frames[0], raw=False).get("gaps")
                    except (ValueError, msgpack.UnpackException, AttributeError):
                        gaps = None
                e = Entry(session, mid, kind, stream, seq, n, prio, sum(len(f) for f in frames), None,
                          seg, offset, length, last=last, gaps=gaps)
                self._put(e)
                self.last_mid[session] = max(self.last_mid.get(session, 0), last)
        # a gap span supersedes the records of the mids it stands for (older data records, older smaller spans)
        cover: dict[str, int] = {}
        for key in sorted(self.entries):
            e = self.entries[key]
            if e.mid <= cover.get(e.session, 0):
                del self.entries[key]
                self._unref(e)
                continue
            if e.last > e.mid:
                cover[e.session] = e.last
        for seg in [s for s, v in self.log.segs.items() if v[1] <= 0]:
            self.log.delete(seg)
        for session, last in self.last_mid.items():  # not in the ack file: every record it left may have been sent
            self.protect.setdefault(session, last)  # (evicted, it spanned mids the collector had: lost and doubled)
        if self.entries:
            log.info("spool: %d unacked records (%d bytes) to replay from %s", len(self.entries), self.live_bytes,
                     self.dir)

    def _save_acks(self, durable: bool = False) -> None:
        self._acks.save(msgpack.packb({"acked": self.acked, "sent": self.protect}), time.monotonic(), durable)
