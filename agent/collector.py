"""The collector: a ZeroMQ ROUTER that records agent sessions to MCAP (one file per session; see ``mcap_io``).

Per session it accepts data messages in ``mid`` order only: a duplicate (mid already recorded) is dropped and
counted; a message from the future (a hole, e.g. after a reconnect) is dropped and the agent is told where to
resume (an ack with ``rewind``).  Per stream it checks sequence continuity (duplicated samples dropped and counted,
holes counted; the agent's Gap records explain them).

**Durable** means: the messages are in a finished MCAP chunk that has been written and ``fsync``-ed.  The collector
flushes (cuts a chunk, writes it, fsyncs the file) every ``flush_s`` seconds while data is pending, or sooner when
``flush_bytes`` are pending, and only then sends the cumulative ack.  A crash loses at most unacked data, which the
agent still holds in its spool and resends.  On start, unfinished files in the output directory (a crashed
collector) are recovered into finished ones; a session that comes back continues in a new part file and the
welcome tells the agent the last mid on disk, so nothing is recorded twice.

Bad input (undecodable frames, unknown kinds, schema violations, oversized messages, data for an unknown session,
a session claimed by a different CURVE key) is counted by reason, logged (rate-limited) and dropped; the collector
keeps serving.  An optional live-view PUB socket republishes chunks for dashboards; it is lossy by design
(small HWM, never blocks recording).
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import re
import socket as pysocket
import threading
import time
from collections import Counter, deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgpack
import zmq

from synchub.agent import mcap_io
from synchub.agent.core.stream import StreamInfo
from synchub.agent.core.units import now_ns, utc_now_ns

from .transport import wire

log = logging.getLogger(__name__)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64] or "agent"


class _Session:
    def __init__(self, sid: str, agent: str, user: str):
        self.sid = sid
        self.agent = agent
        self.user = user
        self.identity = b""
        self.streams: dict[str, StreamInfo] = {}
        self.channels: dict[str, int] = {}
        self.writer = None
        self.fh = None
        self.path: Path | None = None
        self.next_mid = 1
        self.written_mid = 0
        self.durable_mid = 0
        self.next_seq: dict[str, int] = {}
        self.dirty = False
        self.pending_bytes = 0
        self.rewind_sent_for = 0
        self.closed = False
        self.fsync_pending = False
        self.hello_env: dict[str, Any] = {}
        self.counts: Counter = Counter()
        self.samples: Counter = Counter()
        self.last_rx = 0.0
        self.schema_ids: dict[str, int] = {}
        self.part = 1


class Collector:
    """Bind ``bind`` (e.g. ``tcp://0.0.0.0:7100``; port 0 picks one, see ``endpoint``) and record to ``out_dir``.

    ``curve``: a ``synchub.agent.security.ServerKeys`` (CURVE Ironhouse with an allow-list directory) or None for
    plain text (only with ``insecure=True``).  ``live``: endpoint of the lossy live-view PUB socket, or None.
    """

    def __init__(self, bind: str, out_dir, *, name: str | None = None, curve=None, insecure: bool = True,
                 live: str | None = None, flush_s: float = 0.05, flush_bytes: int = 8 << 20, credit: int = 2000,
                 credit_bytes: int = 64 << 20, compression: str = "zstd", context: zmq.Context | None = None):
        if curve is None and not insecure:
            raise ValueError("no CURVE keys given: pass curve=... or insecure=True")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.name = name or pysocket.gethostname()
        self.flush_s = flush_s
        self.flush_bytes = flush_bytes
        self.credit = credit
        self.credit_bytes = credit_bytes
        self.compression = compression
        self.curve = curve
        self.sessions: dict[str, _Session] = {}
        self.bad: Counter = Counter()
        self.counts: Counter = Counter()
        self.files: list[Path] = []
        self._last_log: dict[str, float] = {}
        self._refused_at: dict[str, float] = {}
        self._last_flush = time.monotonic()
        self._closed = False
        self._fsync_q: queue.Queue = queue.Queue()
        self._fsync_done: deque = deque()
        self._done_r, self._done_w = os.pipe()
        os.set_blocking(self._done_r, False)
        self._fsync_thread = threading.Thread(target=self._fsync_worker, name="synchub-fsync", daemon=True)
        self._fsync_thread.start()
        for p in sorted(self.out_dir.glob("*.mcap")):
            if not mcap_io.is_finished(p):
                mcap_io.recover(p, compression)
        self._ctx = context or zmq.Context()
        if curve is not None and curve.auth is None:
            curve.start(self._ctx)
        self.sock = self._ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 20000)
        self.sock.setsockopt(zmq.SNDHWM, 20000)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 4 * wire.MAX_FRAME)
        self.sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        self.sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
        self.sock.setsockopt(zmq.HEARTBEAT_TTL, 5000)
        if curve is not None:
            curve.apply_server(self.sock)
        else:
            log.warning("collector: INSECURE: plain-text ZeroMQ, any client may send data (--insecure)")
        self.sock.bind(bind)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if curve is not None:
            from synchub.agent.transport.security import self_test

            try:
                self_test(self.sock, self.endpoint, curve.public)
            except Exception:
                self.sock.close(0)
                curve.stop()
                raise
            log.info("collector: CURVE on; self-test passed (an unknown key is refused); %d allowed keys in %s",
                     len(curve.allowed_keys()), curve.allow_dir)
        self.live = None
        if live:
            self.live = self._ctx.socket(zmq.PUB)
            self.live.setsockopt(zmq.LINGER, 0)
            self.live.setsockopt(zmq.SNDHWM, 200)
            self.live.bind(live)
            self.live_endpoint = self.live.getsockopt_string(zmq.LAST_ENDPOINT)
        log.info("collector %s: listening on %s, recording to %s", self.name, self.endpoint, self.out_dir)

    # ------------------------------------------------------------------ loop
    def run(self, stop_event: threading.Event, on_tick=None) -> None:
        """Serve until ``stop_event`` is set; ``on_tick(self)`` is called about every 100 ms (watchdog hook)."""
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self._done_r, zmq.POLLIN)
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
        while any(s.fsync_pending for s in self.sessions.values()) and time.monotonic() < deadline:
            time.sleep(0.002)
            self._acks_due()

    def poll_once(self, max_messages: int = 2000) -> int:
        n = 0
        for n in range(1, max_messages + 1):  # noqa: B007
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return n - 1
            self.counts["messages"] += 1
            try:
                self._handle(frames)
            except Exception:  # noqa: BLE001 - a bug must not stop the recording of everyone else
                self.counts["internal_errors"] += 1
                log.exception("collector: internal error handling a message (dropped; serving on)")
            if any(s.pending_bytes > self.flush_bytes for s in self.sessions.values()):
                self.flush()
        return n

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
        user = ""
        if self.curve is not None:
            try:
                user = body[0].get("User-Id") or ""
            except zmq.ZMQError:
                user = ""
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
        if last < s.next_mid:
            s.counts["duplicate_messages"] += 1
            self.counts["duplicate_messages"] += 1
            if s.durable_mid >= mid:
                self._ack(s)
            return
        if mid > s.next_mid:
            s.counts["out_of_order"] += 1
            if s.rewind_sent_for != s.next_mid:
                s.rewind_sent_for = s.next_mid
                self._ack(s, rewind=True)
            return
        recv = now_ns()
        if s.writer is None and kind != "bye":
            self._open(s, s.part)
        if kind == "chunk":
            self._chunk(s, msg, recv)
        elif kind == "gap":
            self._gap(s, msg, recv)
        elif kind == "meta":
            self._write(s, "_meta", {"mid": mid, "stream": msg.env["stream"], "kind": "update",
                                     "meta": msg.env["meta"], "recv_ns": recv}, recv, recv)
        elif kind == "bye":
            s.closed = True
        if mid < s.next_mid:  # a gap span reaching back over recorded messages (should not happen): count it
            s.counts["partial_span"] += 1
        s.next_mid = last + 1
        s.written_mid = last
        s.dirty = True
        if s.closed:
            self._finish(s, "bye")

    # ------------------------------------------------------------------ sessions
    def _hello(self, identity: bytes, user: str, msg: wire.Message) -> None:
        sid = msg.session
        env = msg.env
        s = self.sessions.get(sid)
        if s is not None and self.curve is not None and s.user != user:
            self._complain("identity", f"hello for session {sid} from another key")
            self._send(identity, wire.encode_refuse(sid, "session belongs to another key"))
            return
        if s is None:
            s = _Session(sid, env["agent"], user)
            s.hello_env = env
            last = 0
            parts = sorted(self.out_dir.glob(f"*-{sid}-p*.mcap"))
            for p in parts:
                try:
                    last = max(last, mcap_io.session_last_mid(p))
                except Exception as exc:  # noqa: BLE001 - an unreadable old part must not stop us
                    log.warning("collector: cannot read %s: %s", p, exc)
            s.next_mid = last + 1
            s.written_mid = s.durable_mid = last
            self.sessions[sid] = s
            log.info("collector: session %s from agent %r%s (%d streams)%s", sid, s.agent,
                     f" key {user[:8]}..." if user else "", len(msg.streams),
                     f", continuing after mid {last}" if last else "")
            s.part = len(parts) + 1  # the file opens with the first data message (a bare hello/bye makes none)
        for info in msg.streams:
            if info.name not in s.streams:
                s.streams[info.name] = info
                if s.writer is not None:
                    self._add_stream(s, info)
        s.identity = identity
        s.last_rx = time.monotonic()
        self._send(identity, wire.encode_welcome(sid, s.durable_mid, self.credit, self.credit_bytes, self.name,
                                                 s.next_mid))

    def _open(self, s: _Session, part: int) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        s.path = self.out_dir / f"{_safe(s.agent)}-{stamp}-{s.sid}-p{part}.mcap"
        s.fh = open(s.path, "wb")
        s.writer, s.schema_ids = mcap_io.new_writer(s.fh, self.compression)
        s.part = part + 1
        from synchub import __version__

        env = s.hello_env
        s.writer.add_metadata("synchub.session", {
            "agent": s.agent, "session": s.sid, "part": str(part), "synchub_version": __version__,
            "agent_synchub_version": str(env.get("version", "")), "collector": self.name,
            "start_utc": datetime.now(timezone.utc).isoformat(), "collector_start_utc_ns": str(utc_now_ns()),
            "agent_utc_ns": str(env.get("utc_ns", 0)), "agent_mono_ns": str(env.get("mono_ns", 0)),
            "agent_key": s.user})
        base = f"/{s.agent}"
        s.channels["_gaps"] = s.writer.register_channel(f"{base}/_gaps", "msgpack", s.schema_ids["synchub.Gap"])
        s.channels["_meta"] = s.writer.register_channel(f"{base}/_meta", "msgpack", s.schema_ids["synchub.Meta"])
        for info in s.streams.values():
            self._add_stream(s, info)
        self.files.append(s.path)

    def _add_stream(self, s: _Session, info: StreamInfo) -> None:
        d = info.to_dict()
        s.channels[info.name] = s.writer.register_channel(
            f"/{s.agent}/{info.name}", "msgpack", s.schema_ids["synchub.Chunk"], mcap_io.channel_metadata(d))
        t = now_ns()
        self._write(s, "_meta", {"mid": 0, "stream": info.name, "kind": "stream_info", "info": d, "recv_ns": t}, t, t)

    def _finish(self, s: _Session, why: str) -> None:
        if s.writer is None:
            s.durable_mid = s.written_mid
            self._ack(s)
            return
        deadline = time.monotonic() + 10.0
        while s.fsync_pending and time.monotonic() < deadline:  # never close a file under a running fsync
            time.sleep(0.001)
            self._acks_due()
        s.writer.add_metadata("synchub.transport", {"last_mid": str(s.written_mid), "ended": why,
                                                    "counts": str(dict(s.counts))})
        s.writer.finish()
        s.fh.flush()
        os.fsync(s.fh.fileno())
        s.fh.close()
        s.writer = s.fh = None
        s.durable_mid = s.written_mid
        s.dirty = False
        s.fsync_pending = False
        self._ack(s)
        log.info("collector: session %s closed (%s): %s, %s", s.sid, why, s.path,
                 ", ".join(f"{k}={v}" for k, v in sorted(s.samples.items())))

    # ------------------------------------------------------------------ data
    def _write(self, s: _Session, channel: str, payload: dict, log_time: int, recv: int, seq: int = 0) -> None:
        data = msgpack.packb(payload, use_bin_type=True)
        s.writer.add_message(s.channels[channel], max(0, int(log_time)), data, max(0, recv), seq & 0xFFFFFFFF)
        s.pending_bytes += len(data)

    def _chunk(self, s: _Session, msg: wire.Message, recv: int) -> None:
        c = msg.chunk
        info = s.streams.get(c.stream)
        if info is None:
            s.counts["unknown_stream"] += 1
            self._complain("unknown_stream", f"chunk of stream {c.stream!r} not in session {s.sid}'s hello")
            return
        want = "str" if info.dtype is None else info.dtype.newbyteorder("<").str
        if msg.env["dtype"] != want or (info.dtype is not None and tuple(msg.env["shape"]) != info.sample_shape):
            s.counts["schema_mismatch"] += 1
            self._complain("schema_mismatch", f"chunk of {c.stream!r} is {msg.env['dtype']} x {msg.env['shape']}, "
                           f"the stream declared {want} x {list(info.sample_shape)}")
            return
        b = msg.buffers
        start = 0
        nxt = s.next_seq.get(c.stream)
        if nxt is not None:
            if c.seq_end <= nxt:
                s.counts["duplicate_samples"] += c.n
                return
            if c.seq < nxt:
                start = nxt - c.seq
                s.counts["duplicate_samples"] += start
            elif c.seq > nxt:
                s.counts["seq_holes"] += c.seq - nxt
        if start:
            c = c.slice(start, c.n)
            b = {}
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
        self._write(s, c.stream, payload, log_time, recv, c.seq)
        s.next_seq[c.stream] = c.seq_end
        s.samples[c.stream] += c.n
        self.counts["samples"] += c.n
        if self.live is not None:
            try:
                self.live.send_multipart([f"/{s.agent}/{c.stream}".encode(), *self._body], zmq.NOBLOCK)
            except zmq.ZMQError:
                pass

    def _gap(self, s: _Session, msg: wire.Message, recv: int) -> None:
        for gap in msg.gaps:
            g = gap.to_dict()
            g["mid"] = msg.mid
            g["recv_ns"] = recv
            s.counts["gap_records"] += 1
            s.counts["gap_samples"] += gap.count
            self._write(s, "_gaps", g, recv, recv, gap.seq)

    # ------------------------------------------------------------------ durability and acks
    def flush(self) -> None:
        """Cut and write the MCAP chunk of every session with new data, then fsync it on the fsync thread; the
        ack follows when the fsync returns (``_acks_due``)."""
        self._last_flush = time.monotonic()
        self._acks_due()
        for s in self.sessions.values():
            if not s.dirty or s.writer is None or s.fsync_pending:
                continue
            try:
                s.writer.flush()
            except OSError as exc:  # disk full, I/O error: no ack; the agents keep the data in their spools
                self.counts["write_errors"] += 1
                log.error("collector: writing %s failed: %s", s.path, exc)
                continue
            s.dirty = False
            s.pending_bytes = 0
            s.fsync_pending = True
            self._fsync_q.put((s, s.written_mid, s.fh.fileno()))

    def _fsync_worker(self) -> None:
        while True:
            item = self._fsync_q.get()
            if item is None:
                return
            s, mid, fd = item
            try:
                os.fsync(fd)
            except OSError as exc:
                if exc.errno != errno.EBADF:  # EBADF: the file was finished (and fsynced) meanwhile
                    log.error("collector: fsync of %s failed (%s); not acking, the agent keeps the data", s.path, exc)
                    self.counts["fsync_errors"] += 1
                    mid = 0
            self._fsync_done.append((s, mid))
            os.write(self._done_w, b"x")

    def _acks_due(self) -> None:
        while self._fsync_done:
            s, mid = self._fsync_done.popleft()
            s.fsync_pending = False
            if mid > s.durable_mid:
                s.durable_mid = mid
                self._ack(s)
        try:
            while os.read(self._done_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _ack(self, s: _Session, rewind: bool = False) -> None:
        self._send(s.identity, wire.encode_ack(s.sid, s.durable_mid, self.credit, self.credit_bytes, s.next_mid,
                                               rewind))

    def _send(self, identity: bytes, frames: list) -> None:
        try:
            self.sock.send_multipart([identity, *frames], zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError) as exc:
            self.counts["send_failed"] += 1
            log.debug("collector: reply to %r not sent: %s", identity, exc)

    def stats(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "counts": dict(self.counts), "bad": dict(self.bad),
                "files": [str(p) for p in self.files],
                "sessions": {sid: {"agent": s.agent, "path": str(s.path), "written_mid": s.written_mid,
                                   "durable_mid": s.durable_mid, "closed": s.closed, "counts": dict(s.counts),
                                   "samples": dict(s.samples)} for sid, s in self.sessions.items()}}

    def close(self) -> None:
        """Finalize every open file (a session not ended by its agent stays resumable in a new part)."""
        if self._closed:
            return
        self._closed = True
        self._wait_fsyncs()
        for s in self.sessions.values():
            if s.writer is not None:
                self._finish(s, "collector shutdown")
        self.sock.close(0)
        if self.live is not None:
            self.live.close(0)
        if self.curve is not None:
            self.curve.stop()
        self._fsync_q.put(None)
        self._fsync_thread.join(5)
        for fd in (self._done_r, self._done_w):
            os.close(fd)
