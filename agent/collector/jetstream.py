"""The collector on NATS JetStream: ``NatsCollector`` pulls agents' messages from a durable consumer and records them
exactly as the ZeroMQ ``Collector`` does (it is one, without the socket: same ``Ledger``, ``PartFile``, ``Fsyncer``).

* **Durable consumer.**  One pull consumer per partition (``bus.ConsumerPlan``: explicit acks, never given up); a
  collector that restarts binds the same durable and gets back whatever it had not acked (after ``ack_wait_s``).
  Several collectors share a site by partitions (``--partition K``: ``bus.partition_filter``), so each agent's
  session stays in one collector's file.
* **Ack after fsync.**  A JetStream message is acked only when what it carries is durable in the session's file (the
  fsync that covers its ``mid`` returned); duplicates (a resend, a redelivery) are acked once what they repeat is
  durable; a hello once the session's first data is, or when the session ends.
* **Order.**  JetStream stores an agent's resends after what followed them, so messages can come out of ``mid``
  order: those ahead of a hole wait in memory (unacked) until the hole is filled; data of a session whose hello has
  not come yet is redelivered later (``nak`` with a delay).
* **Restart.**  A session the collector has no ledger for (its hello acked and gone) is resumed from its part files
  on disk (``hello_from_disk``): the next part continues after the last mid on disk, nothing is recorded twice.
* **Identity.**  A session belongs to the ``SITE/AGENT`` of the subject its hello came on (the server's permissions
  let an agent publish only its own subjects); a message on another agent's subject for it is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import defaultdict
from typing import Any

from synchub.agent.core.stream import StreamInfo
from synchub.agent.formats import mcap_read
from synchub.agent.transport import wire
from synchub.agent.transport.nats import bus
from synchub.agent.transport.nats.publish import PublishError, _connect_failure, _nats

from .ledger import Ledger
from .server import Collector

log = logging.getLogger("synchub.agent.collector")

NAK_DELAY_S = 1.0


def hello_from_disk(out_dir, sid: str) -> tuple[wire.Message, str] | None:
    """The hello of session ``sid`` rebuilt from its newest part file in ``out_dir``, and the identity it was
    recorded under; None if there is no part."""
    parts = sorted(out_dir.glob(f"*-{sid}-p*.mcap"), key=lambda p: int(p.stem.rsplit("-p", 1)[1]))
    if not parts:
        return None
    data = mcap_read.read_session([parts[-1]])
    md = next((m for name, m in data["metadata"] if name == "synchub.session"), None)
    if md is None:
        return None
    infos = [StreamInfo.from_dict(s["info"]) for s in data["streams"].values() if s.get("info")]
    frames = wire.encode_hello(md["agent"], sid, infos, md.get("agent_synchub_version", ""),
                               int(md.get("agent_utc_ns", 0)), int(md.get("agent_mono_ns", 0)))
    return wire.decode(frames), md.get("agent_key", "")


def fetch_failed(exc: BaseException) -> bool:
    """Whether a pull ``fetch`` failed; a timeout (nats-py's, or asyncio's: the builtin TimeoutError) only means no
    message came in time."""
    return not isinstance(exc, TimeoutError)


class NatsCollector(Collector):
    """Record the agents of one partition (or of the whole site) from the JetStream stream ``stream``.

    ``servers``: NATS URLs; ``connect_options``: ``Credentials.connect_options()`` of the collector's identity;
    ``tls``: ``auth.client_tls(ca)`` or None (plain text); ``filter_subject``: the consumer's filter
    (``bus.partition_filter(k)`` for partition k, else ``PREFIX.>``); ``durable``: the consumer's name.
    """

    def __init__(self, servers, out_dir, *, stream: str = bus.DEFAULT_STREAM, durable: str = "collector",
                 filter_subject: str = f"{bus.DEFAULT_PREFIX}.>", connect_options: dict | None = None, tls=None,
                 inbox_prefix: str = "_INBOX.collector", name: str | None = None, flush_s: float = 0.05,
                 flush_bytes: int = 8 << 20, compression: str = "zstd", ack_wait_s: float = 10.0,
                 max_ack_pending: int = 65536, batch: int = 512, prefix: str = bus.DEFAULT_PREFIX,
                 admission=None, part_chunks: int = 6000):
        self._init_recording(out_dir, name, flush_s, flush_bytes, compression, admission, part_chunks)
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.credit = self.credit_bytes = 0  # no credit window on NATS: the consumer's max_ack_pending bounds it
        self.stream, self.prefix, self.batch = stream, prefix, batch
        self.plan = bus.ConsumerPlan(durable=durable, filter_subject=filter_subject, ack_wait_s=ack_wait_s,
                                     max_ack_pending=max_ack_pending)
        self.options = {"connect_options": dict(connect_options or {}), "tls": tls, "inbox_prefix": inbox_prefix}
        self.endpoint = f"nats {', '.join(self.servers)} {stream}/{durable} ({filter_subject})"
        self._waiting: dict[str, list[tuple[int, Any]]] = defaultdict(list)  # sid -> (durable mid needed, msg)
        self._ahead: dict[str, dict[int, tuple[wire.Message, list]]] = defaultdict(dict)  # sid -> mid -> held
        self._ack_out: list = []
        self.errors: list[str] = []
        self.nc = None

    # ------------------------------------------------------------------ serving
    def run(self, stop_event: threading.Event, on_tick=None) -> None:
        """Serve until ``stop_event`` is set (the ZeroMQ collector's interface)."""
        asyncio.run(self.serve(stop_event, on_tick))

    async def connect(self, timeout: float = 10.0):
        nats = _nats()
        opts: dict[str, Any] = {"servers": self.servers, "name": f"synchub collector {self.name}",
                                "error_cb": self._on_error, "max_reconnect_attempts": -1, "reconnect_time_wait": 0.5,
                                "connect_timeout": 2, **self.options["connect_options"]}
        if self.options["tls"] is not None:
            opts["tls"] = self.options["tls"]
        if self.options["inbox_prefix"]:
            opts["inbox_prefix"] = self.options["inbox_prefix"]
        nc = nats.NATS()
        try:
            await asyncio.wait_for(nc.connect(**opts), timeout)
        except (asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - nats-py raises many types
            with contextlib.suppress(Exception):
                await nc.close()
            seen = self.errors[-1] if self.errors else f"{type(exc).__name__}: {exc}"
            kind = next((_connect_failure(e) for e in reversed(self.errors) if _connect_failure(e)), "") or "unreachable"
            raise PublishError(kind, f"cannot connect to {', '.join(self.servers)}: {seen}") from None
        self.nc = nc
        js = nc.jetstream(timeout=10)
        import nats.js.api as api  # nats-py is present: _nats() said so
        try:
            return await js.pull_subscribe(self.plan.filter_subject, durable=self.plan.durable, stream=self.stream,
                                           config=api.ConsumerConfig.from_response(self.plan.api_config()))
        except Exception as exc:  # noqa: BLE001 - no stream, no permission: say which
            await nc.close()
            raise PublishError("setup", f"cannot bind consumer {self.plan.durable} on stream {self.stream}: "
                                        f"{type(exc).__name__}: {exc}") from None

    async def _on_error(self, exc: Exception) -> None:
        self.errors = [*self.errors[-19:], f"{type(exc).__name__}: {exc}"]

    async def _bind(self, stop_event: threading.Event):
        """Connect and bind the durable consumer, retrying while the cluster is unreachable or has no stream leader;
        refused credentials or TLS raise at once (``PublishError``)."""
        backoff = 0.2
        while True:
            try:
                return await self.connect()
            except PublishError as exc:
                if exc.kind in ("auth", "tls") or stop_event.is_set():
                    raise
                self.counts["bind_retries"] += 1
                log.warning("collector: %s; retrying in %.1f s", exc.text, backoff)
                await asyncio.sleep(backoff)
                backoff = min(2 * backoff, 5.0)

    async def serve(self, stop_event: threading.Event, on_tick=None) -> None:
        nats = _nats()
        sub = await self._bind(stop_event)
        log.info("collector %s: consuming %s, recording to %s", self.name, self.endpoint, self.out_dir)
        last_tick = 0.0
        wait = max(0.01, self.flush_s / 2)
        try:
            while not stop_event.is_set():
                try:
                    batch = await sub.fetch(self.batch, timeout=wait)
                except (nats.errors.Error, OSError) as exc:  # OSError: the builtin TimeoutError is one
                    batch = []
                    if fetch_failed(exc):
                        self.counts["fetch_errors"] += 1
                        log.debug("collector: fetch failed (%s); retrying", exc)
                        await asyncio.sleep(0.2)
                for m in batch:
                    self._guarded(self._take, m, "left unacked")
                self._acks_due()
                now = time.monotonic()
                if now - self._last_flush >= self.flush_s:
                    self.flush()
                await self._send_acks()
                if on_tick is not None and now - last_tick > 0.1:
                    last_tick = now
                    on_tick(self)
            self.flush()
            self._wait_fsyncs()
            await self._send_acks()
        finally:
            self.close()
            await self._send_acks()
            with contextlib.suppress(Exception):
                await self.nc.flush(timeout=2)
                await self.nc.close()

    async def _send_acks(self) -> None:
        out, self._ack_out = self._ack_out, []
        for kind, m in out:
            try:
                if kind == "nak":
                    await m.nak(delay=NAK_DELAY_S)
                elif kind == "term":
                    await m.term()
                else:
                    await m.ack()
                self.counts[f"js_{kind}"] += 1
            except Exception as exc:  # noqa: BLE001 - a lost ack only means a redelivery (a duplicate, dropped)
                self.counts["ack_failed"] += 1
                log.debug("collector: %s not sent: %s", kind, exc)

    # ------------------------------------------------------------------ messages
    def _take(self, m) -> None:
        try:
            addr = bus.parse_subject(m.subject, self.prefix)
            msg = wire.decode(bus.unpack_frames(m.data))
        except (bus.BusError, wire.WireError) as exc:
            self._complain("invalid", f"{m.subject}: {exc}")
            self._ack_out.append(("term", m))
            return
        user = f"{addr.site}/{addr.agent}"
        kind = msg.kind
        if kind in wire.COLLECTOR_KINDS or kind == "ping":
            self._complain("wrong_direction", f"{kind} on {m.subject}")
            self._ack_out.append(("term", m))
            return
        s = self.sessions.get(msg.session)
        if kind == "hello":
            if s is not None and s.user != user:
                self._complain("identity", f"hello for session {msg.session} on {m.subject}, which is {s.user}'s")
                self._ack_out.append(("term", m))
                return
            if msg.env.get("agent") != addr.agent:
                self._complain("identity", f"hello of agent {msg.env.get('agent')!r} on {m.subject}")
                self._ack_out.append(("term", m))
                return
            self._hello(b"", user, msg)
            if msg.session not in self.sessions:  # refused (admission: too many sessions of this agent): later
                self._ack_out.append(("nak", m))
                return
            # acked once a part file with the session's metadata is durable (mid 1 on, or a resumed session)
            self._hold_ack(self.sessions[msg.session], 1, m)
            return
        if s is None:
            s = self._resume(msg.session, user)
            if s is None:  # its hello has not come yet (a failed publish resent later): ask again later
                self.counts["before_hello"] += 1
                self._ack_out.append(("nak", m))
                return
        if s.user != user:
            self._complain("identity", f"{kind} for session {s.sid} on {m.subject}, which is {s.user}'s")
            self._ack_out.append(("term", m))
            return
        mid, last = msg.mid, msg.mid_last
        if s.closed and mid > s.written_mid:
            self._complain("unknown_session", f"{kind} {mid} after the bye of session {s.sid}")
            self._ack_out.append(("term", m))
            return
        where = s.order(mid, last)
        if where == "duplicate":
            self.counts["duplicate_messages"] += 1
            self._hold_ack(s, last, m)
            return
        if where == "ahead":
            held = self._ahead[s.sid].setdefault(mid, (msg, []))
            held[1].append(m)
            self.counts["held_ahead"] += 1
            return
        self._record(s, msg)
        self._hold_ack(s, last, m)
        ahead = self._ahead.get(s.sid)
        while ahead and s.next_mid in ahead and not s.closed:
            msg, ms = ahead.pop(s.next_mid)
            self._record(s, msg)
            for m in ms:
                self._hold_ack(s, msg.mid_last, m)
        if ahead is not None:
            for mid in [k for k in ahead if k < s.next_mid]:  # redeliveries of what is recorded now
                for m in ahead.pop(mid)[1]:
                    self._hold_ack(s, mid, m)

    def _resume(self, sid: str, user: str) -> Ledger | None:
        """A session known only from its part files (this collector restarted after acking its hello)."""
        found = hello_from_disk(self.out_dir, sid)
        if found is None:
            return None
        msg, owner = found
        if owner and owner != user:
            self._complain("identity", f"session {sid} on disk belongs to {owner}, not {user}")
            return None
        self._hello(b"", owner or user, msg)
        log.info("collector: session %s resumed from its part files (after mid %d)", sid, self.sessions[sid].written_mid)
        return self.sessions[sid]

    def _hold_ack(self, s: Ledger, need: int, m) -> None:
        """Ack ``m`` once the session's file holds mid ``need`` durably (or the session is closed)."""
        if s.durable_mid >= need or s.closed and s.sid not in self.parts:
            self._ack_out.append(("ack", m))
        else:
            self._waiting[s.sid].append((need, m))

    # ------------------------------------------------------------------ Collector's hooks
    def _ack(self, s: Ledger, rewind: bool = False) -> None:
        done = s.closed and s.sid not in self.parts
        waiting = self._waiting.get(s.sid)
        if not waiting:
            return
        keep = []
        for need, m in waiting:
            if done or s.durable_mid >= need:
                self._ack_out.append(("ack", m))
            else:
                keep.append((need, m))
        self._waiting[s.sid] = keep

    def _send(self, identity: bytes, frames: list) -> None:
        """No replies on NATS: acks are JetStream acks (``_ack``)."""

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out["held"] = sum(len(a) for a in self._ahead.values())
        out["unacked"] = sum(len(w) for w in self._waiting.values())
        return out

    def close(self) -> None:
        """Finalize every open file; what is durable then is acked by ``serve``."""
        if self._finish_all():
            self._fsync.close()
