"""The agent side of the transport: ``Sender`` (a ZeroMQ DEALER) with acked, spooled, credit-limited delivery.

Protocol (see ``agent/transport/wire.py``): the sender numbers every data message of a session (``mid`` = 1, 2, ...) and
appends it to its ``Spool`` before sending.  The collector acks cumulatively (``acked`` = highest mid durably in the
MCAP file) and the spool forgets what is acked.  At most ``credit`` messages / ``credit_bytes`` bytes are unacked in
flight (credit-based flow control; the collector sets the window in its welcome/acks).  The collector accepts mids in
order only and drops duplicates; after a reconnect, or when the collector says it expects an earlier mid (``next``),
the sender goes back to that mid and resends (go-back-N).

Liveness: ZMTP heartbeats on the socket, plus an app-level check: the sender pings when idle and reconnects
(with backoff, moving to the next endpoint of the failover list) when the collector has said nothing for
``liveness_s`` seconds.  A brand-new socket is made on every reconnect so no stale queued frames are sent.

Threads: callers (``send_chunk``/``send_gap``/``send_meta``) only encode and append to the spool; one I/O thread owns
the socket.  Sessions left in a disk spool by an earlier agent process are replayed first (their hello is spooled),
then closed with a ``bye``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from typing import Any

import numpy as np
import zmq

from synchub import __version__
from synchub.agent.core.stream import Chunk, Gap, StreamInfo
from synchub.agent.core.units import now_ns, utc_now_ns

from . import wire
from .dealer import KEY_REFUSED, new_dealer, summary_line
from .restart import crashed_and_new_marks, sessions_from_spool
from .session import SenderSession, TransportError
from .spool import KIND_DATA, KIND_OTHER, Spool
from .spool_entry import KIND_BYE

log = logging.getLogger(__name__)

class Sender:
    """Ship chunks, gaps and metadata of one agent session to a collector.

    ``endpoints``: a ZeroMQ endpoint or a list tried in order (failover).  ``spool_dir``: on-disk spool (survives an
    agent restart; None: in memory).  ``curve``: ``ClientKeys`` (CURVE) or None for plain text.  ``block_s``: when
    the spool is full, a caller waits up to this long for acks before its drop policy applies (default: 0 for a disk
    spool, so the pipeline never stalls during an outage; 2 s for memory).
    """

    def __init__(self, endpoints, agent_name: str, streams: list[StreamInfo], spool_dir=None, curve=None, *,
                 session: str | None = None, spool_max_bytes: int | None = None,
                 priorities: dict[str, int] | None = None, block_s: float | None = None,
                 heartbeat_s: float = 1.0, liveness_s: float = 5.0, hello_timeout_s: float = 3.0,
                 backoff_max_s: float = 5.0, context: zmq.Context | None = None):
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not self.endpoints:
            raise ValueError("no collector endpoint given")
        self.agent = agent_name
        self.streams = {s.name: s for s in streams}
        self.curve = curve
        self.session = session or uuid.uuid4().hex[:16]
        if priorities is None:
            priorities = {s.name: (2 if s.type in ("trigger", "marker", "text") else 0 if s.type in ("video", "image")
                                   else 1) for s in streams}
        if spool_max_bytes is None:
            spool_max_bytes = (512 << 20) if spool_dir else (64 << 20)
        self.spool = Spool(spool_dir, spool_max_bytes, priorities)
        self.block_s = block_s if block_s is not None else (0.0 if spool_dir else 2.0)
        self.heartbeat_s = heartbeat_s
        self.liveness_s = liveness_s
        self.hello_timeout_s = hello_timeout_s
        self.backoff_max_s = backoff_max_s
        self._ctx = context or zmq.Context.instance()
        self._lock = threading.Lock()
        self._mid = self.spool.last_mid.get(self.session, 0)  # a session resumed with session=... keeps counting
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._space = threading.Condition()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._counters = {"sent": 0, "resent": 0, "acked": 0, "reconnects": 0, "pings": 0, "rx_bad": 0,
                          "samples": 0, "chunks": 0, "refused": 0, "max_inflight": 0}
        self._ack_lat: deque[int] = deque(maxlen=4096)
        self.endpoint = ""
        self.last_error = ""
        hello = wire.encode_hello(agent_name, self.session, list(streams), __version__, utc_now_ns(), now_ns())
        self.spool.save_hello(self.session, hello)
        self._sessions = sessions_from_spool(self.spool, self.session, hello)
        self.marks = None if spool_dir is None else crashed_and_new_marks(self.spool, self._sessions, self.session,
                                                                           list(self.streams))
        self._thread = threading.Thread(target=self._run, name="synchub-sender", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ caller API
    def send_chunk(self, chunk: Chunk) -> None:
        if chunk.stream not in self.streams:
            raise ValueError(f"chunk of unknown stream {chunk.stream!r} (not in this sender's stream list)")
        if chunk.n == 0:
            return
        with self._lock:
            mid = self._mid + 1  # taken only once the message is in the spool: a failed encode leaves no hole
            frames = wire.encode_chunk(self.session, mid, chunk)
            self._wait_space(sum(memoryview(f).nbytes for f in frames))
            self.spool.append(self.session, mid, frames, KIND_DATA, chunk.stream, chunk.seq, chunk.n)
            self._mid = mid
            if self.marks is not None:
                self.marks.covered(chunk.stream, chunk.seq, chunk.seq + chunk.n)
            self._counters["samples"] += chunk.n
            self._counters["chunks"] += 1
        self._wake()

    def send_gap(self, gap: Gap) -> None:
        self._send_other(lambda mid: wire.encode_gap(self.session, mid, gap), gap.stream)
        if gap.cause == "queue_full" and self.marks is not None:  # its samples had numbers: [seq - count, seq)
            self.marks.covered(gap.stream, gap.seq - gap.count, gap.seq)

    def send_meta(self, stream: str, meta: dict[str, Any]) -> None:
        self._send_other(lambda mid: wire.encode_meta(self.session, mid, stream, meta), stream)

    def _send_other(self, make, stream: str, kind: int = KIND_OTHER) -> None:
        with self._lock:
            frames = make(self._mid + 1)
            self.spool.append(self.session, self._mid + 1, frames, kind, stream)
            self._mid += 1
        self._wake()

    def _wait_space(self, size: int) -> None:
        if self.block_s <= 0 or self.spool.live_bytes + size <= self.spool.max_bytes:
            return
        deadline = time.monotonic() + self.block_s
        with self._space:
            while self.spool.live_bytes + size > self.spool.max_bytes and time.monotonic() < deadline:
                self._space.wait(0.05)

    def connect(self, timeout: float = 5.0) -> None:
        """Wait until the collector has welcomed this session; ``TransportError`` with a clear reason if not."""
        if not self._connected.wait(timeout):
            if KEY_REFUSED in self.last_error:
                raise TransportError(f"collector {self.last_error}")
            raise TransportError(
                f"collector not reachable at {', '.join(self.endpoints)} (no welcome within {timeout:g} s"
                + (f"; {self.last_error}" if self.last_error else "") + "); is `synchub collector` running there?")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def pending(self) -> int:
        """Messages of all sessions not yet acked."""
        return sum(self.spool.pending(s) for s in list(self._sessions))

    def flush(self, timeout: float = 10.0, unreachable_s: float = 1.0) -> bool:
        """Wait up to ``timeout`` until everything is acked; give up after ``unreachable_s`` without a collector
        (waiting longer would not deliver anything).  True when nothing is left unacked."""
        now = up = time.monotonic()
        deadline = now + timeout
        while self.pending() > 0 and now < deadline and now - up <= unreachable_s:
            time.sleep(0.005)
            now = time.monotonic()
            up = now if self._connected.is_set() else up
        return self.pending() == 0

    def summary(self) -> str:
        """One line for the end of a run (``dealer.summary_line``)."""
        return summary_line(self.session, self._counters["samples"], self.spool.stats(), self.pending(),
                            self.spool.dir, self.last_error)

    def stats(self) -> dict[str, Any]:
        lat = np.array(self._ack_lat, dtype=np.int64) if self._ack_lat else None
        return {**self._counters, "session": self.session, "connected": self.connected, "endpoint": self.endpoint,
                "pending": self.pending(), "spool": self.spool.stats(), "last_error": self.last_error,
                "ack_latency_ms": None if lat is None else {
                    "p50": float(np.percentile(lat, 50)) / 1e6, "p99": float(np.percentile(lat, 99)) / 1e6}}

    def close(self, timeout: float = 5.0) -> bool:
        """Send ``bye``, wait up to ``timeout`` for everything to be acked, stop.  True when nothing is left unacked
        (anything left stays in a disk spool for the next start)."""
        if self._stop.is_set():
            return self.pending() == 0
        self._send_other(lambda mid: wire.encode_bye(self.session, mid), "", KIND_BYE)
        ok = self.flush(timeout, unreachable_s=self.hello_timeout_s)
        self._stop.set()
        self._wake()
        self._thread.join(timeout=5.0)
        if self.marks is not None:
            self.marks.close(remove=ok)
        if ok:
            self.spool.forget(self.session)
        self.spool.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        return ok

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    # ------------------------------------------------------------------ I/O thread
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._loop()
                return
            except Exception:  # noqa: BLE001 - the sender thread must survive a bug; the spool keeps the data
                self._counters["internal_errors"] = self._counters.get("internal_errors", 0) + 1
                log.exception("transport: internal error in the sender thread; restarting it in 1 s")
                self._connected.clear()
                self._stop.wait(1.0)

    def _loop(self) -> None:
        sock: zmq.Socket | None = None
        ep_i = 0
        backoff = 0.1
        t_open = last_rx = last_tx = last_hello = 0.0
        poller_fd_wake = self._wake_r
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if sock is None:
                    self.endpoint = self.endpoints[ep_i]
                    try:
                        sock = new_dealer(self._ctx, self.endpoint, self.heartbeat_s, self.liveness_s,
                                          self.backoff_max_s, self.curve)
                    except zmq.ZMQError as exc:
                        self.last_error = f"{self.endpoint}: {exc}"
                        log.error("transport: cannot use endpoint %s: %s", self.endpoint, exc)
                        sock = None
                        ep_i = (ep_i + 1) % len(self.endpoints)
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, self.backoff_max_s)
                        continue
                    for s in self._sessions.values():
                        s.new_link()
                    t_open = last_rx = last_tx = last_hello = now
                    self._send_hellos(sock)
                try:
                    ready = zmq.select([sock, poller_fd_wake] + ([sock.monitor_sock] if sock.monitor_sock else []),
                                       [], [], 0.05)[0]
                except zmq.ZMQError:
                    ready = []
                if poller_fd_wake in ready:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                if sock.monitor_sock in ready and (why := sock.refusal()) and why not in self.last_error:
                    self.last_error = f"{self.endpoint}: {why}"
                    log.error("transport: %s", self.last_error)
                if sock in ready:
                    last_rx = time.monotonic()
                    self._receive(sock)
                    if any(s.welcomed for s in self._sessions.values()):
                        backoff = 0.1
                now = time.monotonic()
                welcomed = any(s.welcomed for s in self._sessions.values())
                silent = now - last_rx
                if (not welcomed and now - t_open > self.hello_timeout_s) or (welcomed and silent > self.liveness_s):
                    why = "no welcome" if not welcomed else f"silent for {silent:.1f} s"
                    if KEY_REFUSED not in self.last_error:
                        self.last_error = f"{self.endpoint}: {why}"
                    log.warning("transport: collector %s %s; reconnecting (backoff %.1f s)", self.endpoint, why, backoff)
                    sock.close(0)
                    sock = None
                    self._connected.clear()
                    self._counters["reconnects"] += 1
                    ep_i = (ep_i + 1) % len(self.endpoints)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.backoff_max_s)
                    continue
                if welcomed:
                    if self._pump(sock):
                        last_tx = now
                    if now - last_tx > self.heartbeat_s:
                        self._send(sock, wire.encode_ping(self.session))
                        self._counters["pings"] += 1
                        last_tx = now
                if now - last_hello > 1.0 and not all(s.welcomed for s in self._sessions.values()):
                    self._send_hellos(sock)
                    last_hello = last_tx = now
                self.spool.maintain()
        finally:
            if sock is not None:
                sock.close(0)

    def _send(self, sock: zmq.Socket, frames: list) -> bool:
        try:
            sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            self.last_error = str(exc)
            return False

    def _send_hellos(self, sock: zmq.Socket) -> None:
        for s in self._sessions.values():
            if not s.welcomed:
                self._send(sock, s.hello)

    def _receive(self, sock: zmq.Socket) -> None:
        for _ in range(1000):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = wire.decode(frames)
            except wire.WireError as exc:
                self._counters["rx_bad"] += 1
                log.warning("transport: bad message from collector dropped: %s", exc)
                continue
            s = self._sessions.get(msg.session)
            if msg.kind == "refuse":
                self._counters["refused"] += 1
                self.last_error = f"collector refused session {msg.session}: {msg.env['reason']}"
                log.error("transport: %s", self.last_error)
                if s is not None:
                    s.welcomed = False  # say hello again (a restarted collector does not know the session)
                    s.refused = msg.env["reason"]
                    if s.sid == self.session:
                        self._connected.clear()
                continue
            if s is None or msg.kind not in ("welcome", "ack"):
                continue
            acked = msg.env["acked"]
            s.window(msg.env["credit"], min(msg.env["credit_bytes"], self.spool.max_bytes // 2))  # the rest evictable
            nxt = msg.env.get("next")
            if msg.kind == "welcome":
                if not s.welcomed:
                    log.info("transport: session %s welcomed by %s at %s (acked %d)", s.sid,
                             msg.env.get("collector", "?"), self.endpoint, acked)
                self._on_ack(s, acked)
                s.welcome(acked, nxt)
                self.spool.mark_sent(s.sid, s.cursor - 1)  # the collector has everything before `next`
                if s.sid == self.session:
                    self._connected.set()
                    self.last_error = ""
            else:
                self._on_ack(s, acked)
                if isinstance(nxt, int) and msg.env.get("rewind") and nxt < s.cursor:
                    self._counters["resent"] += s.cursor - nxt
                    s.restart_at(max(nxt, acked + 1))

    def _on_ack(self, s: SenderSession, acked: int) -> None:
        if acked <= s.acked:
            return
        self._counters["acked"] += acked - s.acked
        self._ack_lat.extend(s.ack(acked, now_ns()))
        self.spool.ack(s.sid, acked)
        with self._space:
            self._space.notify_all()

    def _pump(self, sock: zmq.Socket) -> bool:
        sent_any = False
        for s in list(self._sessions.values()):
            if not s.welcomed or s.refused:
                continue
            last = self.spool.last_mid.get(s.sid, 0)
            if s.sid != self.session and s.cursor > last and self.spool.pending(s.sid) == 0:
                if s.bye_mid and s.acked >= s.bye_mid or last == 0:
                    log.info("transport: replayed session %s fully acked", s.sid)
                    self.spool.forget(s.sid)
                    del self._sessions[s.sid]
                    continue
                if not s.bye_mid:
                    s.bye_mid = last + 1
                    self.spool.append(s.sid, last + 1, wire.encode_bye(s.sid, last + 1), KIND_BYE)
                    last += 1
            while s.can_send(last):
                frames, span_last = self.spool.get_span(s.sid, s.cursor, sending=True)
                if frames is None:
                    if s.cursor <= s.acked:
                        s.cursor = s.acked + 1
                        continue
                    log.error("transport: session %s: message %d missing from the spool; skipping it", s.sid,
                              s.cursor)
                    self._counters["missing"] = self._counters.get("missing", 0) + 1
                    s.cursor += 1
                    continue
                if not self._send(sock, frames):
                    return sent_any
                s.sent(span_last, sum(memoryview(f).nbytes for f in frames), now_ns())
                self._counters["sent"] += 1
                if len(s.inflight) > self._counters["max_inflight"]:
                    self._counters["max_inflight"] = len(s.inflight)
                sent_any = True
        return sent_any
