"""The collector's files: one MCAP file per agent session part, written, flushed, fsync-ed and finished.

``PartFile`` is one open part (``<agent>-<UTC start>-<session>-p<N>.mcap``, the layout of
``synchub.agent.formats.mcap_layout``): the session metadata, a channel per stream plus ``_gaps`` and ``_meta``,
chunk/gap/meta messages, ``flush`` (cut and write the MCAP chunk) and ``finish``.  ``Fsyncer`` fsyncs flushed
files on its own thread and reports the durable mids back through a pipe the collector polls, so that a slow disk
never stalls the socket.  ``recover_unfinished`` turns the files of a crashed collector into finished ones;
``last_mid_on_disk`` is where a returning session continues.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgpack

from synchub import __version__
from synchub.agent.core.stream import Chunk, Gap, StreamInfo, safe_name
from synchub.agent.core.units import now_ns, utc_now_ns
from synchub.agent.formats import mcap_layout, mcap_read, mcap_write
from synchub.agent.transport import wire

from .ledger import Ledger

log = logging.getLogger("synchub.agent.collector")


class PartFile:
    """One MCAP part file of a session, open for writing."""

    def __init__(self, out_dir: Path, s: Ledger, part: int, collector: str, compression: str):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.path = out_dir / f"{safe_name(s.agent)}-{stamp}-{s.sid}-p{part}.mcap"
        self.agent = s.agent
        self.fh = open(self.path, "wb")  # noqa: SIM115 - closed by finish()
        self.writer, self.schema_ids = mcap_write.new_writer(self.fh, compression)
        self.channels: dict[str, int] = {}
        self.pending_bytes = 0
        self.dirty = False
        self.fsync_pending = False
        self.chunks = 0
        env = s.hello_env
        self.writer.add_metadata("synchub.session", {
            "agent": s.agent, "session": s.sid, "part": str(part), "synchub_version": __version__,
            "agent_synchub_version": str(env.get("version", "")), "collector": collector,
            "start_utc": datetime.now(timezone.utc).isoformat(), "collector_start_utc_ns": str(utc_now_ns()),
            "agent_utc_ns": str(env.get("utc_ns", 0)), "agent_mono_ns": str(env.get("mono_ns", 0)),
            "agent_key": s.user})
        base = f"/{s.agent}"
        self.channels["_gaps"] = self.writer.register_channel(f"{base}/_gaps", "msgpack", self.schema_ids["synchub.Gap"])
        self.channels["_meta"] = self.writer.register_channel(f"{base}/_meta", "msgpack",
                                                              self.schema_ids["synchub.Meta"])
        for info in s.streams.values():
            self.add_stream(info)

    def add_stream(self, info: StreamInfo) -> None:
        d = info.to_dict()
        self.channels[info.name] = self.writer.register_channel(
            f"/{self.agent}/{info.name}", "msgpack", self.schema_ids["synchub.Chunk"], mcap_layout.channel_metadata(d))
        t = now_ns()
        self.write("_meta", {"mid": 0, "stream": info.name, "kind": "stream_info", "info": d, "recv_ns": t}, t, t)

    def write(self, channel: str, payload: dict, log_time: int, recv: int, seq: int = 0) -> None:
        data = msgpack.packb(payload, use_bin_type=True)
        self.writer.add_message(self.channels[channel], max(0, int(log_time)), data, max(0, recv), seq & 0xFFFFFFFF)
        self.pending_bytes += len(data)

    def chunk(self, msg: wire.Message, c: Chunk, whole: bool, recv: int) -> None:
        """A chunk message (``c`` is the part not recorded before; ``whole``: all of the message's chunk, whose
        array frames are written as they came)."""
        b = msg.buffers if whole else {}
        payload = {"mid": msg.mid, "seq": c.seq, "n": c.n, "method": c.method, "dtype": msg.env["dtype"],
                   "shape": msg.env["shape"]}
        for name in wire.TIME_FIELDS:
            if name in b:
                payload[name] = b[name]
            else:
                a = getattr(c, name)
                payload[name] = None if a is None else a.tobytes()
        if isinstance(c.data, list):
            payload["data"] = c.data
        else:
            payload["data"] = b["data"] if "data" in b else c.data.tobytes()
        payload["recv_ns"] = recv
        log_time = int(c.ref_ns[0]) if c.ref_ns is not None else int(c.host_ns[0])
        self.write(c.stream, payload, log_time, recv, c.seq)

    def gap(self, gap: Gap, mid: int, recv: int) -> None:
        g = gap.to_dict()
        g["mid"] = mid
        g["recv_ns"] = recv
        self.write("_gaps", g, recv, recv, gap.seq)

    def meta(self, mid: int, stream: str, meta: dict, recv: int) -> None:
        self.write("_meta", {"mid": mid, "stream": stream, "kind": "update", "meta": meta, "recv_ns": recv}, recv, recv)

    def flush(self) -> None:
        """Cut and write the MCAP chunk (``OSError`` when the disk refuses); the caller fsyncs."""
        self.writer.flush()
        self.dirty = False
        self.pending_bytes = 0
        self.chunks += 1  # the writer keeps an index entry per chunk until finish: the server rolls long parts

    def finish(self, last_mid: int, why: str, counts: dict[str, Any]) -> None:
        """The summary, the ``synchub.transport`` metadata, fsync, close."""
        self.writer.add_metadata("synchub.transport", {"last_mid": str(last_mid), "ended": why,
                                                       "counts": str(counts)})
        self.writer.finish()
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()


class Fsyncer:
    """fsync on a thread: ``submit(key, mid, fd)``; ``done()`` returns ``(key, mid)`` for each finished one (mid 0
    when the fsync failed); ``fileno()`` becomes readable when there are some."""

    def __init__(self, counts):
        self.counts = counts
        self._q: queue.Queue = queue.Queue()
        self._done: deque = deque()
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self._thread = threading.Thread(target=self._work, name="synchub-fsync", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        return self._r

    def submit(self, key: Any, mid: int, fd: int, path) -> None:
        self._q.put((key, mid, fd, path))

    def done(self) -> list[tuple[Any, int]]:
        out = []
        while self._done:
            out.append(self._done.popleft())
        try:
            while os.read(self._r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        return out

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            key, mid, fd, path = item
            try:
                os.fsync(fd)
            except OSError as exc:
                if exc.errno != errno.EBADF:  # EBADF: the file was finished (and fsynced) meanwhile
                    log.error("collector: fsync of %s failed (%s); not acking, the agent keeps the data", path, exc)
                    self.counts["fsync_errors"] += 1
                    mid = 0
            self._done.append((key, mid))
            os.write(self._w, b"x")

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(5)
        for fd in (self._r, self._w):
            os.close(fd)


def recover_unfinished(out_dir: Path, compression: str) -> None:
    """Finish the files a crashed collector left open (their last complete records kept)."""
    for p in sorted(out_dir.glob("*.mcap")):
        if not mcap_read.is_finished(p):
            mcap_write.recover(p, compression)


def last_mid_on_disk(out_dir: Path, sid: str) -> tuple[int, int]:
    """``(last mid recorded, number of part files)`` of session ``sid`` in ``out_dir``."""
    last = 0
    parts = sorted(out_dir.glob(f"*-{sid}-p*.mcap"))
    for p in parts:
        try:
            last = max(last, mcap_read.session_last_mid(p))
        except Exception as exc:  # noqa: BLE001 - an unreadable old part must not stop us
            log.warning("collector: cannot read %s: %s", p, exc)
    return last, len(parts)


def owner_on_disk(out_dir: Path, sid: str) -> str | None:
    """The CURVE key session ``sid``'s part files were recorded for (None: no part, or none says): a session the
    collector has forgotten is resumed only by its own key."""
    for p in sorted(out_dir.glob(f"*-{sid}-p*.mcap"), reverse=True):
        try:
            return mcap_read.session_metadata(p).get("agent_key")
        except Exception as exc:  # noqa: BLE001 - an unreadable part: look at the next one
            log.warning("collector: cannot read %s: %s", p, exc)
    return None


def wait_for(condition, on_tick, timeout: float = 10.0) -> None:
    """Poll ``on_tick`` until ``condition()`` is false (at most ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while condition() and time.monotonic() < deadline:
        time.sleep(0.001)
        on_tick()
