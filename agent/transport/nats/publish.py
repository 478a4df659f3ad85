"""A thin JetStream publisher with a bounded in-flight window: publish, wait for the stream's acks, report each
message's fate.  ``AsyncPublisher`` lives in an asyncio loop; ``ThreadedPublisher`` runs one in its own thread for
the agent's threaded transport.  Needs ``nats-py`` (``pip install 'synchub[nats]'``).

Each ``publish`` takes a subject, a payload (``natsbus.pack_frames``), a message id (``natsbus.msg_id``) and an
opaque ``token`` (e.g. the mid) and waits only while the window (``window`` messages / ``window_bytes``) is full.
The outcome arrives at ``on_result(Published)`` (in the loop's thread), in ack order, which may differ from publish
order (``natsbus.AckWatermark`` makes it cumulative).  A failed message says why, in ``Published.error``
(a ``PublishError`` whose ``kind`` tells the caller what to do):

* ``permission``: the server refused the subject (the agent publishes outside its own subjects); permanent.
* ``too-large``: payload over the server's ``max_payload``; permanent.
* ``no-stream``: no JetStream stream takes the subject (nobody answered); retry later.
* ``stream``: the stream refused it (full: ``maximum bytes exceeded``, ...); retry later, keep spooling.
* ``timeout``: no ack within ``ack_timeout_s`` (link or node lost); resend (the duplicate window drops repeats).
* ``unreachable``: disconnected and nats-py's reconnect buffer is full; resend later.
* ``closed``: the publisher was closed with the message in flight.

``connect`` raises ``PublishError`` with kind ``auth`` (credentials refused), ``tls`` (certificate not trusted,
or TLS required) or ``unreachable`` (no server answered within ``connect_timeout_s``), ``setup`` (nats-py missing).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .bus import MSG_ID_HEADER, unpartitioned

_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"', re.I)
RETRY_KINDS = ("no-stream", "stream", "timeout", "unreachable", "closed")


def _nats():
    try:
        import nats
        import nats.errors
    except ImportError:
        raise PublishError("setup", "the NATS transport needs nats-py: pip install 'synchub[nats]'") from None
    return nats


def _connect_failure(text: str) -> str:
    """"auth" or "tls" where a connection error will not go away by retrying, else ""."""
    low = text.lower()
    if "authorization violation" in low:
        return "auth"
    if "certificate" in low or "ssl" in low or "tls" in low:
        return "tls"
    return ""


class PublishError(Exception):
    def __init__(self, kind: str, text: str):
        super().__init__(f"{kind}: {text}")
        self.kind = kind
        self.text = text

    @property
    def retry(self) -> bool:
        return self.kind in RETRY_KINDS


@dataclass
class Published:
    token: Any
    subject: str
    msg_id: str
    size: int
    seq: int = 0  # stream sequence number (0: not stored)
    duplicate: bool = False  # the duplicate window caught a resend: stored once, earlier
    error: PublishError | None = None
    latency_ns: int = 0  # publish -> ack


class AsyncPublisher:
    """Acks come to one wildcard subscription on a private inbox (``INBOX.<nuid>.<key>``), matched to the flight by
    key.  (nats-py's ``publish_async`` is not used: in nats-py 2.16 its future never resolves when the stream
    answers with an error, nats-io/nats.py#985.)"""

    def __init__(self, servers: list[str] | str, *, connect_options: dict[str, Any] | None = None, tls=None,
                 inbox_prefix: str | None = None, window: int = 256, window_bytes: int = 16 << 20,
                 ack_timeout_s: float = 5.0, connect_timeout_s: float = 5.0, name: str = "synchub",
                 on_result: Callable[[Published], None] | None = None, latency_keep: int = 100_000):
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.options = dict(connect_options or {})
        self.tls, self.inbox_prefix, self.name = tls, inbox_prefix, name
        self.window, self.window_bytes = int(window), int(window_bytes)
        self.ack_timeout_s, self.connect_timeout_s = ack_timeout_s, connect_timeout_s
        self.on_result = on_result
        self.nc = None
        self._reply = ""
        self._flights: dict[int, tuple[Published, int, float]] = {}  # key -> (result, t0 ns, deadline)
        self._next = 0
        self._bytes = 0
        self._changed: asyncio.Event | None = None  # set whenever a flight ends
        self._sweeper: asyncio.Task | None = None
        self.recent_errors: deque[str] = deque(maxlen=20)
        self._refusals = 0
        self._refused: asyncio.Event | None = None
        self.counts = {"published": 0, "acked": 0, "duplicates": 0, "failed": 0, "late_acks": 0, "reconnects": 0}
        self.failures: dict[str, int] = {}
        self.latencies_ns: deque[int] = deque(maxlen=latency_keep)

    # -- connection
    async def connect(self) -> None:
        nats = _nats()
        self._changed = asyncio.Event()
        opts: dict[str, Any] = {"servers": self.servers, "name": self.name, "error_cb": self._on_error,
                                "reconnected_cb": self._on_reconnect, "max_reconnect_attempts": -1,
                                "reconnect_time_wait": 0.5, "connect_timeout": 2, **self.options}
        if self.tls is not None:
            opts["tls"] = self.tls
        if self.inbox_prefix:
            opts["inbox_prefix"] = self.inbox_prefix
        self._refusals = 0
        self._refused = asyncio.Event()
        nc = nats.NATS()
        attempt = asyncio.ensure_future(nc.connect(**opts))
        refused = asyncio.ensure_future(self._refused.wait())
        await asyncio.wait({attempt, refused}, timeout=self.connect_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        refused.cancel()
        if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
            self.nc = nc
        else:
            attempt.cancel()
            with contextlib.suppress(BaseException):
                await attempt
            with contextlib.suppress(Exception):
                await nc.close()
            seen = list(self.recent_errors) or ["no answer"]
            kind, why = "unreachable", seen[-1]
            for k in ("auth", "tls"):
                hit = [e for e in seen if _connect_failure(e) == k]
                if hit:
                    kind, why = k, hit[-1]
                    break
            raise PublishError(kind, f"cannot connect to {', '.join(self.servers)} within "
                                     f"{self.connect_timeout_s:g} s: {why}")
        self._reply = self.nc.new_inbox()
        await self.nc.subscribe(self._reply + ".*", cb=self._on_ack)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _on_error(self, exc: Exception) -> None:
        text = str(exc)
        self.recent_errors.append(f"{type(exc).__name__}: {text}")
        failure = _connect_failure(text) if self.nc is None else ""
        if failure:
            # an untrusted certificate will not change; credentials are refused once by every server
            self._refusals += 1
            if failure == "tls" or self._refusals >= len(self.servers):
                self._refused.set()
        m = _VIOLATION.search(text)
        if not m:
            return
        what, subject = m.group(1).lower(), m.group(2).lower()  # nats-py lower-cases the server's text
        for key, (r, _, _) in list(self._flights.items()):
            if what == "subscription":
                self._finish(key, PublishError("permission", f"cannot receive publish acks: subscribing to "
                             f"{subject!r} refused (the inbox prefix does not match the user's permissions)"))
            elif unpartitioned(r.subject).lower() == unpartitioned(subject):
                self._finish(key, PublishError("permission", f"the server refused publishing to {subject!r} "
                                                             "(outside this agent's subjects)"))

    async def _on_reconnect(self) -> None:
        self.counts["reconnects"] += 1

    # -- publishing
    async def publish(self, subject: str, payload: bytes, msg_id: str, token: Any = None) -> None:
        """Send one message once the window has room; its outcome goes to ``on_result``."""
        if self.nc is None:
            raise PublishError("closed", "publisher not connected")
        nats = _nats()
        size = len(payload)
        while self._flights and (len(self._flights) >= self.window or self._bytes + size > self.window_bytes):
            self._changed.clear()
            await self._changed.wait()
        key = self._next
        self._next += 1
        self._flights[key] = (Published(token, subject, msg_id, size), time.monotonic_ns(),
                              time.monotonic() + self.ack_timeout_s)
        self._bytes += size
        self.counts["published"] += 1
        try:
            await self.nc.publish(subject, payload, reply=f"{self._reply}.{key}", headers={MSG_ID_HEADER: msg_id})
        except nats.errors.MaxPayloadError:
            self._finish(key, PublishError("too-large", f"{size} bytes exceed the server's max_payload "
                                                        f"{self.nc.max_payload}"))
        except nats.errors.OutboundBufferLimitError:
            self._finish(key, PublishError("unreachable", "disconnected and the reconnect buffer is full"))
        except (nats.errors.Error, OSError) as exc:
            self._finish(key, PublishError("unreachable", f"{type(exc).__name__}: {exc}"))

    async def _on_ack(self, msg) -> None:
        try:
            key = int(msg.subject.rsplit(".", 1)[1])
        except ValueError:
            return
        if key not in self._flights:
            self.counts["late_acks"] += 1  # after its timeout: stored, and a resend will be acked as a duplicate
            return
        if msg.headers and msg.headers.get("Status") == "503":
            self._finish(key, PublishError("no-stream", "no JetStream stream answered for this subject"))
            return
        try:
            resp = json.loads(msg.data)
            err = resp.get("error")
            if err:
                self._finish(key, PublishError("stream", f"the stream refused the message: {err.get('description')} "
                                                         f"(code {err.get('code')}, err_code {err.get('err_code')})"))
            else:
                self._finish(key, seq=int(resp["seq"]), duplicate=bool(resp.get("duplicate", False)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._finish(key, PublishError("stream", f"unreadable publish ack: {exc}"))

    def _finish(self, key: int, error: PublishError | None = None, seq: int = 0, duplicate: bool = False) -> None:
        entry = self._flights.pop(key, None)
        if entry is None:
            return
        r, t0, _ = entry
        self._bytes -= r.size
        r.error, r.seq, r.duplicate = error, seq, duplicate
        if error is None:
            r.latency_ns = time.monotonic_ns() - t0
            self.counts["acked"] += 1
            self.counts["duplicates"] += duplicate
            self.latencies_ns.append(r.latency_ns)
        else:
            self.counts["failed"] += 1
            self.failures[error.kind] = self.failures.get(error.kind, 0) + 1
        self._changed.set()
        if self.on_result is not None:
            self.on_result(r)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(0.25, self.ack_timeout_s / 4))
            now = time.monotonic()
            for key, (_, _, deadline) in list(self._flights.items()):
                if now > deadline:
                    self._finish(key, PublishError("timeout", f"no ack within {self.ack_timeout_s:g} s"))

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is in flight (acked or failed); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._flights:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        if self.nc is None:
            return
        await self.flush(timeout)
        if self._sweeper is not None:
            self._sweeper.cancel()
        for key in list(self._flights):
            self._finish(key, PublishError("closed", "publisher closed before the ack"))
        nc, self.nc = self.nc, None
        try:
            await nc.close()
        except Exception:  # noqa: BLE001 - closing a dead connection must not raise
            pass

    def stats(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ns)

        def pct(p):
            return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] / 1e6, 3) if lat else None

        return {**self.counts, "failures": dict(self.failures), "in_flight": self.in_flight,
                "ack_latency_ms": {"p50": pct(50), "p99": pct(99), "max": pct(100)}}


class ThreadedPublisher:
    """An ``AsyncPublisher`` in its own thread and event loop, for callers in ordinary threads."""

    def __init__(self, servers, **kwargs: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="synchub-nats", daemon=True)
        self._thread.start()
        self.pub = AsyncPublisher(servers, **kwargs)

    def _call(self, coro, timeout: float | None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def connect(self) -> None:
        self._call(self.pub.connect(), self.pub.connect_timeout_s + 5)

    def publish(self, subject: str, payload: bytes, msg_id: str, token: Any = None, block_s: float | None = None
                ) -> None:
        """Blocks while the window is full; after ``block_s`` raises ``TimeoutError`` and the message is not sent
        (unless it had just left: then its outcome still reaches ``on_result``)."""
        fut = asyncio.run_coroutine_threadsafe(self.pub.publish(subject, payload, msg_id, token), self._loop)
        try:
            fut.result(block_s)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"publish window full for {block_s} s") from None

    def flush(self, timeout: float = 10.0) -> bool:
        return self._call(self.pub.flush(timeout), timeout + 5)

    def stats(self) -> dict[str, Any]:
        return self._call(self._stats(), 5)

    async def _stats(self) -> dict[str, Any]:
        return self.pub.stats()

    def close(self, timeout: float = 5.0) -> None:
        try:
            self._call(self.pub.close(timeout), timeout + 5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()
