"""The collector: a ZeroMQ ROUTER that records agent sessions to MCAP (one file per session part).

Per session a ``Ledger`` (pure) says which messages and samples are recorded (``mid`` order, duplicates dropped, a
hole answered with a rewinding ack); a ``PartFile`` (``recorder``) writes them, a new part every ``part_chunks``.

**Durable** means: in a finished MCAP chunk, written and ``fsync``-ed.  The collector flushes (cuts a chunk, writes
it, fsyncs the file) every ``flush_s`` seconds while data is pending, or sooner at ``flush_bytes``, and only then
sends the cumulative ack: a crash loses at most unacked data, which the agent's spool resends.  On start, unfinished
files (a crashed collector) are recovered; a session that comes back continues in a new part file and the welcome
tells the agent the last mid on disk, so nothing is recorded twice.

Bad input (undecodable, unknown kinds, schema violations, oversized, an unknown session, a session of another CURVE
key) is counted by reason, logged (rate-limited) and dropped.  What one key may take: ``admission``.  The live-view
PUB socket republishes chunks for dashboards (lossy, never blocks recording).
"""

from __future__ import annotations

import logging
import resource
import socket as pysocket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import zmq

from synchub.agent.core.units import now_ns
from synchub.agent.transport import wire

from .admission import Admission, file_budget, session_views
from .bind import bind_live, bind_router, curve_user
from .ledger import Ledger
from .recorder import Fsyncer, PartFile, last_mid_on_disk, owner_on_disk, recover_unfinished

log = logging.getLogger("synchub.agent.collector")


class Collector:
    """Bind ``bind`` (e.g. ``tcp://0.0.0.0:7100``; port 0 picks one, see ``endpoint``) and record to ``out_dir``.

    ``curve``: a ``synchub.agent.security.ServerKeys`` (CURVE Ironhouse with an allow-list directory) or None for
    plain text (only with ``insecure=True``).  ``live``: endpoint of the lossy live-view PUB socket, or None; it
    has the same CURVE keys and allow-list (``synchub live`` reads it).
    """

    def __init__(self, bind: str, out_dir, *, name: str | None = None, curve=None, insecure: bool = True,
                 live: str | None = None, flush_s: float = 0.05, flush_bytes: int = 8 << 20, credit: int = 2000,
                 credit_bytes: int = 64 << 20, compression: str = "zstd", context: zmq.Context | None = None,
                 admission: Admission | None = None, part_chunks: int = 6000):
        if curve is None and not insecure:
            raise ValueError("no CURVE keys given: pass curve=... or insecure=True")
        self._init_recording(out_dir, name, flush_s, flush_bytes, compression, admission, part_chunks)
        self.credit, self.credit_bytes, self.curve = credit, credit_bytes, curve
        self._ctx = context or zmq.Context()
        if curve is not None and curve.auth is None:
            curve.start(self._ctx)
        self.sock, self.endpoint = bind_router(self._ctx, bind, curve)
        if live:
            self.live, self.live_endpoint = bind_live(self._ctx, live, curve)
        log.info("collector %s: listening on %s, recording to %s", self.name, self.endpoint, self.out_dir)

    def _init_recording(self, out_dir, name: str | None, flush_s: float, flush_bytes: int, compression: str,
                        admission: Admission | None, part_chunks: int) -> None:
        """The recording state, whatever the transport (``jetstream.NatsCollector`` shares it)."""
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.name = name or pysocket.gethostname()
        self.flush_s, self.flush_bytes, self.compression = flush_s, flush_bytes, compression
        self.curve = self.live = self.lsl = None  # lsl: an lsl_tap.LslTap (--lsl-outlet) sees what is recorded
        self.sessions: dict[str, Ledger] = {}
        self.parts: dict[str, PartFile] = {}  # session -> its open part file
        self.paths: dict[str, Path] = {}  # session -> its latest part file
        self.bad, self.counts = Counter(), Counter()  # bad input by reason; everything else
        self.files: list[Path] = []
        self._last_log: dict[str, float] = {}
        self._refused_at: dict[str, float] = {}
        self._last_flush = time.monotonic()
        self._closed = False
        self._fsync = Fsyncer(self.counts)
        recover_unfinished(self.out_dir, compression)
        # what one key may take (sessions, files, in-flight bytes)
        self.part_chunks = part_chunks  # a part file ends after this many MCAP chunks (5 min at 50 ms flushes)
        self.admission = admission or Admission(file_budget(resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
        self._open_by_key: Counter = Counter()
        self._last_evict = time.monotonic()

    # ------------------------------------------------------------------ loop
    def run(self, stop_event: threading.Event, on_tick=None) -> None:
        """Serve until ``stop_event`` is set; ``on_tick(self)`` is called about every 100 ms (watchdog hook)."""
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self._fsync.fileno(), zmq.POLLIN)
        last_tick = 0.0
        while not stop_event.is_set():
            timeout = max(1, int(self.flush_s * 1000 / 2))
            if poller.poll(timeout):
                self._acks_due()
                self.poll_once()
            now = time.monotonic()
            if now - self._last_flush >= self.flush_s:
                self.flush()
            if on_tick is not None and now - last_tick > 0.1:
                last_tick = now
                on_tick(self)
        self.flush()
        self._wait_fsyncs()

    def _wait_fsyncs(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while any(f.fsync_pending for f in self.parts.values()) and time.monotonic() < deadline:
            time.sleep(0.002)
            self._acks_due()

    def poll_once(self, max_messages: int = 2000) -> int:
        n = 0
        for n in range(1, max_messages + 1):  # noqa: B007
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return n - 1
            self._guarded(self._handle, frames, "dropped")
        return n

    def _guarded(self, handle, message, fate: str) -> None:
        """``handle(message)``; a bug in it is counted and logged, and everyone else's recording goes on."""
        self.counts["messages"] += 1
        try:
            handle(message)
        except Exception:  # noqa: BLE001 - a bug must not stop the recording of everyone else
            self.counts["internal_errors"] += 1
            log.exception("collector: internal error handling a message (%s; serving on)", fate)
        if any(f.pending_bytes > self.flush_bytes for f in self.parts.values()):
            self.flush()

    def _complain(self, reason: str, detail: str) -> None:
        self.bad[reason] += 1
        now = time.monotonic()
        if now - self._last_log.get(reason, 0.0) > 2.0:
            self._last_log[reason] = now
            log.warning("collector: dropped bad message (%s, %d so far): %s", reason, self.bad[reason], detail)

    def _handle(self, frames: list) -> None:
        if len(frames) < 2:
            self._complain("no_payload", "message with only a routing id")
            return
        identity = frames[0].bytes
        body = self._body = frames[1:]
        try:
            msg = wire.decode(body)
        except wire.WireError as exc:
            self._complain("invalid", str(exc))
            return
        user = curve_user(body[0], self.curve)
        kind = msg.kind
        if kind in wire.COLLECTOR_KINDS:
            self._complain("wrong_direction", f"{kind} sent to a collector")
            return
        if kind == "hello":
            self._hello(identity, user, msg)
            return
        s = self.sessions.get(msg.session)
        if s is None or s.closed and kind != "ping" and msg.mid > s.written_mid:
            self._complain("unknown_session", f"{kind} for session {msg.session!r} without a hello")
            now = time.monotonic()
            if now - self._refused_at.get(msg.session, 0.0) > 0.5:
                self._refused_at[msg.session] = now
                self._send(identity, wire.encode_refuse(msg.session, "unknown session; send hello"))
            return
        if self.curve is not None and user != s.user:
            self._complain("identity", f"session {s.sid} belongs to another key")
            return
        s.identity = identity
        s.last_rx = time.monotonic()
        if kind == "ping":
            self._ack(s)
            return
        mid, last = msg.mid, msg.mid_last
        where = s.order(mid, last)
        if where == "duplicate":
            self.counts["duplicate_messages"] += 1
            if s.durable_mid >= mid:
                self._ack(s)
            return
        if where == "ahead":
            if s.rewind_due():
                self._ack(s, rewind=True)
            return
        self._record(s, msg)

    def _record(self, s: Ledger, msg: wire.Message) -> None:
        """Write message ``msg``, the next one of session ``s`` (``s.order`` said so)."""
        kind, mid, last = msg.kind, msg.mid, msg.mid_last
        recv = now_ns()
        f = self.parts.get(s.sid)
        if f is None and kind != "bye":
            f = self._open(s, s.part)
            if f is None:
                return
        if kind == "chunk":
            self._chunk(s, f, msg, recv)
        elif kind == "gap":
            for gap in msg.gaps:
                s.counts["gap_records"] += 1
                s.counts["gap_samples"] += gap.count
                f.gap(gap, msg.mid, recv)
        elif kind == "meta":
            f.meta(mid, msg.env["stream"], msg.env["meta"], recv)
        elif kind == "bye":
            s.closed, s.closed_at = True, time.monotonic()
        s.took(mid, last)
        if self.lsl is not None:  # --lsl-outlet: what was just recorded, as LSL outlets (never raises)
            self.lsl.took(s, msg)
        if f is not None:
            f.dirty = True
        if s.closed:
            self._finish(s, "bye")

    # ------------------------------------------------------------------ sessions
    def _hello(self, identity: bytes, user: str, msg: wire.Message) -> None:
        sid = msg.session
        env = msg.env
        s = self.sessions.get(sid)
        owner = s.user if s is not None else owner_on_disk(self.out_dir, sid) if self.curve is not None else None
        if self.curve is not None and owner is not None and owner != user:  # also a session forgotten, on disk
            self._complain("identity", f"hello for session {sid} from another key")
            self._send(identity, wire.encode_refuse(sid, "session belongs to another key"))
            return
        if s is None:
            why = self.admission.refuse_hello(user, session_views(self.sessions, self.parts))
            if why:
                self._complain("session_limit", f"hello for session {sid} of agent {env['agent']!r}: {why}")
                self._send(identity, wire.encode_refuse(sid, why))
                return
            s = Ledger(sid, env["agent"], user)
            s.hello_env = env
            last, parts = last_mid_on_disk(self.out_dir, sid)
            s.resume_after(last)
            self.sessions[sid] = s
            log.info("collector: session %s from agent %r%s (%d streams)%s", sid, s.agent,
                     f" key {user[:8]}..." if user else "", len(msg.streams),
                     f", continuing after mid {last}" if last else "")
            s.part = parts + 1  # the file opens with the first data message (a bare hello/bye makes none)
        for info in msg.streams:
            if info.name not in s.streams:
                s.streams[info.name] = info
                if s.sid in self.parts:
                    self.parts[s.sid].add_stream(info)
        s.identity = identity
        s.last_rx = time.monotonic()
        self._open_by_key = self.admission.open_by_key(session_views(self.sessions, self.parts))
        self._send(identity, wire.encode_welcome(sid, s.durable_mid, self.credit, self._credit_bytes(s), self.name,
                                                 s.next_mid))

    def _open(self, s: Ledger, part: int) -> PartFile | None:
        """The session's next part file; None when the file budget is full of busy files or the open fails (the
        message is not taken: no ack, the agent resends)."""
        free = self.admission.file_to_free(session_views(self.sessions, self.parts), time.monotonic())
        if free is None:
            self._complain("file_budget", f"{len(self.parts)} files open (the budget); session {s.sid} waits")
            return None
        if free:  # the file to close first has an fsync in flight: not now (the agent resends), or EMFILE
            if self.parts[free].fsync_pending:
                return None
            self._finish(self.sessions[free], "idle (file budget)")
        try:
            f = PartFile(self.out_dir, s, part, self.name, self.compression)
        except OSError as exc:  # e.g. EMFILE, ENOSPC: nothing taken, the agent resends
            self._complain("open_failed", f"cannot open a file for session {s.sid}: {exc}")
            return None
        self.parts[s.sid] = f
        s.part = part + 1
        self.paths[s.sid] = f.path
        self.files.append(f.path)
        return f

    def _finish(self, s: Ledger, why: str) -> None:
        f = self.parts.get(s.sid)
        if f is None:
            s.durable_mid = s.written_mid
            self._ack(s)
            return
        deadline = time.monotonic() + 10.0
        while f.fsync_pending and time.monotonic() < deadline:  # never close a file under a running fsync
            time.sleep(0.001)
            self._acks_due()
        f.finish(s.written_mid, why, dict(s.counts))
        del self.parts[s.sid]
        s.durable_mid = s.written_mid
        self._ack(s)
        log.info("collector: session %s closed (%s): %s, %s", s.sid, why, f.path,
                 ", ".join(f"{k}={v}" for k, v in sorted(s.samples.items())))

    # ------------------------------------------------------------------ data
    def _chunk(self, s: Ledger, f: PartFile, msg: wire.Message, recv: int) -> None:
        c = msg.chunk
        problem = s.schema_problem(c.stream, msg.env["dtype"], msg.env["shape"])
        if problem is not None:
            self._complain(*problem)
            return
        new = s.new_samples(c)
        if new is None:
            return
        start, c = new
        f.chunk(msg, c, start == 0, recv)
        s.recorded(c)
        self.counts["samples"] += c.n
        if self.live is not None:
            try:
                self.live.send_multipart([f"/{s.agent}/{c.stream}".encode(), *self._body], zmq.NOBLOCK)
            except zmq.ZMQError:
                pass

    # ------------------------------------------------------------------ durability and acks
    def flush(self) -> None:
        """Cut and write the MCAP chunk of every session with new data, then fsync it on the fsync thread; the
        ack follows when the fsync returns (``_acks_due``)."""
        self._last_flush = time.monotonic()
        self._acks_due()
        if self._last_flush - self._last_evict > 1.0:
            self._evict()
        for sid, f in self.parts.items():
            if not f.dirty or f.fsync_pending:
                continue
            try:
                f.flush()
            except OSError as exc:  # disk full, I/O error: no ack; the agents keep the data in their spools
                self.counts["write_errors"] += 1
                log.error("collector: writing %s failed: %s", f.path, exc)
                continue
            f.fsync_pending = True
            self._fsync.submit(sid, self.sessions[sid].written_mid, f.fh.fileno(), f.path)

    def _acks_due(self) -> None:
        for sid, mid in self._fsync.done():
            f = self.parts.get(sid)
            if f is not None:
                f.fsync_pending = False
            s = self.sessions[sid]
            if mid > s.durable_mid:
                s.durable_mid = mid
                self._ack(s)
            if f is not None and f.chunks >= self.part_chunks:  # memory flat: the session goes on in a new part
                self._finish(s, f"part of {f.chunks} chunks")

    def _ack(self, s: Ledger, rewind: bool = False) -> None:
        self._send(s.identity, wire.encode_ack(s.sid, s.durable_mid, self.credit, self._credit_bytes(s), s.next_mid,
                                               rewind))

    def _credit_bytes(self, s: Ledger) -> int:
        return self.admission.credit_bytes(s.user, self._open_by_key, self.credit_bytes)

    def _evict(self) -> None:
        """Forget finished and long-silent sessions (admission); finish the files of silent ones."""
        now = time.monotonic()
        self._last_evict = now
        for sid in self.admission.evictable(session_views(self.sessions, self.parts), now):
            if sid in self.parts and not self.parts[sid].fsync_pending:
                self._finish(self.sessions[sid], "idle")
            if sid not in self.parts:
                del self.sessions[sid]
                self.paths.pop(sid, None)
        self._refused_at = {k: t for k, t in self._refused_at.items() if now - t < 60.0}
        self._open_by_key = self.admission.open_by_key(session_views(self.sessions, self.parts))

    def _send(self, identity: bytes, frames: list) -> None:
        try:
            self.sock.send_multipart([identity, *frames], zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError) as exc:
            self.counts["send_failed"] += 1
            log.debug("collector: reply to %r not sent: %s", identity, exc)

    def stats(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "counts": dict(self.counts), "bad": dict(self.bad),
                "files": [str(p) for p in self.files],
                "sessions": {sid: {"agent": s.agent, "path": str(self.paths.get(sid)), "written_mid": s.written_mid,
                                   "durable_mid": s.durable_mid, "closed": s.closed, "counts": dict(s.counts),
                                   "samples": dict(s.samples)} for sid, s in self.sessions.items()}}

    def _finish_all(self) -> bool:
        """Finalize every open file (a session its agent did not end stays resumable); False if done already."""
        if self._closed:
            return False
        self._closed = True
        self._wait_fsyncs()
        for sid in list(self.parts):
            self._finish(self.sessions[sid], "collector shutdown")
        return True

    def close(self) -> None:
        if not self._finish_all():
            return
        self.sock.close(0)
        if self.live is not None:
            self.live.close(0)
        if self.curve is not None:
            self.curve.stop()
        self._fsync.close()
