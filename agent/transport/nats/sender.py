"""The agent side of the NATS transport: ``NatsSender``, the ``Sender`` with JetStream instead of ZeroMQ.

The caller API, the spool and the sessions are ``Sender``'s (``agent/transport/sender.py``): every message of a
session gets its ``mid`` and is appended to the spool (on disk or in memory) before it is published, and stays there
until JetStream has acked it.  Only the I/O thread differs: an asyncio loop with an ``AsyncPublisher``.

* Subjects (``bus.Route``): a chunk goes to ``PREFIX.SITE.AGENT.STREAM`` with ``Nats-Msg-Id`` =
  ``SESSION.STREAM.SEQ`` (its first sample's sequence number); hello, bye, meta, gaps and clock evidence go to
  ``PREFIX.SITE.AGENT._s`` with ``SESSION._s.MID`` (the hello is mid 0).  A resend within the stream's duplicate
  window is acked as a duplicate and stored once.
* Acks: at most ``window`` messages in flight; per-message publish acks become the cumulative "acked through mid N"
  (``bus.AckWatermark``) the spool forgets by.  A retryable failure (no stream leader, a timeout, a lost link) rewinds
  the session to the failed mid after a short backoff (go-back-N; what was stored meanwhile is acked as a duplicate).
* Unreachable cluster: data keeps going to the spool; the loop reconnects with backoff and replays from the first
  unacked mid.  Sessions left in a disk spool by an earlier run are replayed first and closed with a bye.
* Refusals (credentials, TLS, a subject outside the agent's permissions, a payload over ``max_payload``) are not
  retried blindly: ``last_error`` says why in one line and ``connect()`` raises ``TransportError`` with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

from synchub.agent.core.units import now_ns

from .. import wire
from ..sender import KIND_BYE, Sender
from ..session import SenderSession, TransportError
from ..spool import KIND_DATA
from . import bus
from .publish import AsyncPublisher, Published, PublishError

log = logging.getLogger(__name__)

PERMANENT = ("permission", "too-large", "auth", "tls", "setup")


class NatsSender(Sender):
    """Ship one agent's sessions to a NATS JetStream cluster.

    ``servers``: NATS URLs (``tls://host:4222``, ...); ``route``: the agent's ``bus.Route`` (site, agent name);
    ``connect_options``: ``Credentials.connect_options()``; ``tls``: an ``ssl.SSLContext`` (``auth.client_tls``) or
    None for plain text.  The other keyword arguments are ``Sender``'s.
    """

    def __init__(self, servers, route: bus.Route, streams, spool_dir=None, *, connect_options: dict | None = None,
                 tls=None, window: int = 256, ack_timeout_s: float = 5.0, connect_timeout_s: float = 5.0,
                 **kwargs: Any):
        # set before Sender.__init__: it starts the I/O thread (self._run)
        self.route = route
        self.nats_options = {"connect_options": dict(connect_options or {}), "tls": tls,
                             "inbox_prefix": route.inbox_prefix, "window": window, "ack_timeout_s": ack_timeout_s,
                             "connect_timeout_s": connect_timeout_s, "name": f"synchub {route.site}/{route.agent}"}
        self.refused = ""
        self._marks: dict[str, bus.AckWatermark] = {}
        self._rewind: dict[str, int] = {}
        self._hellos_due: set[str] = set()
        self._probing = self._probe_out = False
        self._fail_rounds = 0
        self._event: asyncio.Event | None = None
        self.pub: AsyncPublisher | None = None
        super().__init__(servers, route.agent, streams, spool_dir, **kwargs)
        for k in ("published", "duplicates", "publish_failed"):
            self._counters[k] = 0

    # ------------------------------------------------------------------ caller API (beyond Sender's)
    def connect(self, timeout: float = 5.0) -> None:
        """Wait until the cluster accepted the connection; ``TransportError`` with the reason if not."""
        deadline = time.monotonic() + timeout
        while not self._connected.is_set() and not self.refused and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.refused:
            raise TransportError(f"NATS refused agent {self.route.agent!r}: {self.refused}")
        if not self._connected.is_set():
            raise TransportError(f"NATS cluster not reachable at {', '.join(self.endpoints)} within {timeout:g} s"
                                 + (f" ({self.last_error})" if self.last_error else ""))

    def close(self, timeout: float = 5.0) -> bool:
        """As ``Sender.close``; a refused agent does not wait for acks that will not come (its spool keeps all)."""
        return super().close(0.0 if self.refused else timeout)

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out["refused"] = self.refused
        return out

    # ------------------------------------------------------------------ I/O thread
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                asyncio.run(self._main())
                return
            except Exception:  # noqa: BLE001 - the sender thread must survive a bug; the spool keeps the data
                self._counters["internal_errors"] = self._counters.get("internal_errors", 0) + 1
                log.exception("transport: internal error in the NATS sender thread; restarting it in 1 s")
                self._connected.clear()
                self._stop.wait(1.0)

    def _wake_loop(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        if self._event is not None:
            self._event.set()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        loop.add_reader(self._wake_r, self._wake_loop)
        backoff = 0.1
        try:
            while not self._stop.is_set():
                pub = AsyncPublisher(self.endpoints, on_result=self._on_result, **self.nats_options)
                attempt = asyncio.ensure_future(pub.connect())
                while not attempt.done() and not self._stop.is_set():  # a stop does not wait for the attempt
                    await asyncio.wait({attempt}, timeout=0.1)
                if not attempt.done():
                    attempt.cancel()
                    with contextlib.suppress(BaseException):
                        await attempt
                    return
                try:
                    attempt.result()
                except PublishError as exc:
                    self.last_error = exc.text
                    if exc.kind in PERMANENT:
                        self.refused = exc.text
                        log.error("transport: NATS refused agent %r: %s", self.route.agent, exc.text)
                    else:
                        log.warning("transport: NATS %s; retrying in %.1f s", exc.text, backoff)
                    await self._sleep(backoff if exc.kind not in PERMANENT else max(backoff, 2.0))
                    backoff = min(backoff * 2, self.backoff_max_s)
                    continue
                self.pub, backoff = pub, 0.1
                self.endpoint = pub.nc.connected_url.netloc if pub.nc.connected_url else ""
                self.refused = ""
                self._counters["connections"] = self._counters.get("connections", 0) + 1
                log.info("transport: connected to NATS %s as %s/%s", self.endpoint, self.route.site, self.route.agent)
                try:
                    await self._serve(pub)
                finally:
                    self.pub = None
                    self._connected.clear()
                    await pub.close(timeout=0.5)
        finally:
            loop.remove_reader(self._wake_r)

    async def _sleep(self, s: float, clear: bool = True) -> None:
        """Wait ``s`` seconds or until woken (new data, stop); ``clear=False`` keeps a wake that came since the
        caller last cleared the event (clearing here lost it: up to 0.25 s of latency for the next chunk)."""
        if clear:
            self._event.clear()
        try:
            await asyncio.wait_for(self._event.wait(), s)
        except asyncio.TimeoutError:
            pass

    async def _serve(self, pub: AsyncPublisher) -> None:
        for s in self._sessions.values():
            s.new_link()
            s.acked = max(s.acked, self.spool.acked.get(s.sid, 0))  # a session replayed from the spool
            s.welcome(s.acked, None)
            s.credit, s.credit_bytes = 1 << 30, 1 << 40  # the publisher's window bounds what is in flight
        self._hellos_due = set(self._sessions)
        self._connected.set()
        while not self._stop.is_set() and not pub.nc.is_closed:
            for sid in list(self._hellos_due):  # first on every connection, and again when one failed
                self._hellos_due.discard(sid)
                s = self._sessions.get(sid)
                if s is not None:
                    await pub.publish(self.route.session_subject, bus.pack_frames(s.hello),
                                      bus.msg_id(sid, bus.SESSION_TOKEN, 0), (sid, 0, 0))
            if self.refused:
                self._connected.clear()
                await self._sleep(1.0)
                continue
            if self._rewind:
                # a stream leader election (4-9 s in nats-server 2.9) or a lost node: back off, then resend one
                # message as a probe until one is acked again
                self._fail_rounds += 1
                self._probing = True
                await self._sleep(min(0.1 * 2 ** self._fail_rounds, 1.0))
                for sid, mid in list(self._rewind.items()):
                    s = self._sessions.get(sid)
                    if s is not None and mid < s.cursor:
                        self._counters["resent"] += s.cursor - mid
                        s.cursor = max(mid, s.acked + 1)
                self._rewind.clear()
            self._event.clear()
            if not await self._pump(pub):
                await self._sleep(0.25, clear=False)  # cleared above, before the pump looked
            self.spool.maintain()

    async def _pump(self, pub: AsyncPublisher) -> bool:
        """Publish what is spooled and not yet sent; False when there was nothing to send."""
        sent = False
        for s in list(self._sessions.values()):
            last = self.spool.last_mid.get(s.sid, 0)
            if s.sid != self.session and s.cursor > last:
                last = self._close_replayed(s, last)
                if last < 0:
                    continue
            while s.cursor <= last and not self._rewind and not self.refused and not self._stop.is_set():
                if self._probing:
                    if self._probe_out:
                        return sent
                    self._probe_out = True
                mid = s.cursor
                frames, span_last = self.spool.get_span(s.sid, mid, sending=True)  # marked sent in the same step
                if frames is None:
                    s.cursor = max(mid + 1, s.acked + 1) if mid <= s.acked else mid + 1
                    if mid > s.acked:
                        log.error("transport: session %s: message %d missing from the spool; skipping it", s.sid, mid)
                        self._counters["missing"] = self._counters.get("missing", 0) + 1
                    continue
                subject, msg_id = self._address(s.sid, mid)
                s.cursor = span_last + 1
                await pub.publish(subject, bus.pack_frames(frames), msg_id, (s.sid, mid, span_last))
                s.inflight.append((span_last, 0, now_ns()))
                self._counters["sent"] += 1
                sent = True
        return sent

    def _close_replayed(self, s: SenderSession, last: int) -> int:
        """A session of an earlier run, all sent: append its bye, or forget it once acked (then -1)."""
        if self.spool.pending(s.sid) == 0 and (s.bye_mid and s.acked >= s.bye_mid or last == 0):
            log.info("transport: replayed session %s fully acked", s.sid)
            self.spool.forget(s.sid)
            del self._sessions[s.sid]
            return -1
        if not s.bye_mid:
            s.bye_mid = last + 1
            self.spool.append(s.sid, last + 1, wire.encode_bye(s.sid, last + 1), KIND_BYE)
            return last + 1
        return last

    def _address(self, sid: str, mid: int) -> tuple[str, str]:
        with self.spool.lock:
            e = self.spool.entries.get((sid, mid))
            kind, stream, seq = (e.kind, e.stream, e.seq) if e is not None else (-1, "", 0)
        if kind == KIND_DATA and stream:
            return self.route.stream_subject(stream), bus.msg_id(sid, stream, seq)
        return self.route.session_subject, bus.msg_id(sid, bus.SESSION_TOKEN, mid)

    def _on_result(self, r: Published) -> None:
        sid, mid, last = r.token
        s = self._sessions.get(sid)
        self._probe_out = False
        if r.error is None:
            self._counters["published"] += 1
            if self._probing:
                self._probing, self._fail_rounds = False, 0
                if self._event is not None:
                    self._event.set()
            self._counters["duplicates"] += r.duplicate
            if s is None or mid == 0:
                return
            w = self._marks.setdefault(sid, bus.AckWatermark(acked=s.acked)).ack(mid, last)
            self._on_ack(s, w)
            if sid != self.session and s.bye_mid and w >= s.bye_mid:  # a replayed session is done with
                log.info("transport: replayed session %s fully acked", sid)
                self.spool.forget(sid)
                del self._sessions[sid]
            return
        self._counters["publish_failed"] += 1
        err = r.error
        self.last_error = f"{r.subject}: {err.text}"
        if not err.retry:
            if not self.refused:
                why = err.text
                if "inbox" in why:
                    why = (f"the credentials are not agent {self.route.site}/{self.route.agent}'s (its reply "
                           f"inbox {self.route.inbox_prefix} is not theirs): {why}")
                self.refused = why
                log.error("transport: NATS refused agent %s/%s (%s): %s; not retrying", self.route.site,
                          self.route.agent, err.kind, why)
            return
        if s is not None and not mid:  # the hello: publish it again, and what followed it
            self._hellos_due.add(sid)
            mid = s.acked + 1
        if s is not None:
            self._rewind[sid] = min(self._rewind.get(sid, mid), mid)
        if self._event is not None:
            self._event.set()
