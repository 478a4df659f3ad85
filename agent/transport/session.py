"""One agent session's delivery state toward the collector: go-back-N under a credit window.  Pure.

Messages of a session are numbered ``mid`` = 1, 2, ... (``cursor`` is the next one to send); at most ``credit``
messages / ``credit_bytes`` bytes are unacked in flight (the window the collector sets in its welcome and acks).
The collector acks cumulatively (``acked``); a welcome or a rewinding ack says which mid it expects next, and the
sender goes back there.  ``Sender`` (``synchub.agent.transport.sender``) does the I/O and keeps the spool.
"""

from __future__ import annotations

from collections import deque


class TransportError(Exception):
    """The collector could not be reached or refused us; the message says which endpoint and why."""


class SenderSession:
    def __init__(self, sid: str, hello: list[bytes]):
        self.sid = sid
        self.hello = hello
        self.welcomed = False
        self.cursor = 1  # next mid to send
        self.acked = 0
        self.credit = 256
        self.credit_bytes = 16 << 20
        self.inflight: deque[tuple[int, int, int]] = deque()  # (last mid, bytes, send time ns)
        self.inflight_bytes = 0
        self.refused = ""
        self.bye_mid = 0

    def new_link(self) -> None:
        """A new socket: the session must be welcomed again."""
        self.welcomed = False
        self.refused = ""

    def window(self, credit: int, credit_bytes: int) -> None:
        self.credit, self.credit_bytes = credit, credit_bytes

    def restart_at(self, mid: int) -> None:
        """Go back: send from ``mid`` on (nothing is in flight any more)."""
        self.cursor = mid
        self.inflight.clear()
        self.inflight_bytes = 0

    def welcome(self, acked: int, nxt) -> None:
        """The collector welcomed the session (``acked`` durable, it expects ``nxt``); call after ``ack``."""
        self.welcomed = True
        self.refused = ""
        self.restart_at(int(nxt) if isinstance(nxt, int) and nxt > acked else acked + 1)

    def ack(self, acked: int, now_ns: int) -> list[int]:
        """The collector has everything up to ``acked`` durably: the ack latencies of the messages it covers."""
        lat = []
        while self.inflight and self.inflight[0][0] <= acked:
            _, size, t = self.inflight.popleft()
            self.inflight_bytes -= size
            lat.append(now_ns - t)
        self.acked = acked
        return lat

    def can_send(self, last: int) -> bool:
        """Whether message ``cursor`` (of those up to ``last``) fits in the window."""
        return self.cursor <= last and len(self.inflight) < self.credit and self.inflight_bytes < self.credit_bytes

    def sent(self, span_last: int, size: int, now_ns: int) -> None:
        """Messages ``cursor``..``span_last`` (one spool record) went out."""
        self.inflight.append((span_last, size, now_ns))
        self.inflight_bytes += size
        self.cursor = span_last + 1

