"""What the collector knows of one agent session: which messages and samples it has recorded.  Pure.

Per session it accepts data messages in ``mid`` order only (``order``): a duplicate (mid already recorded) is
dropped and counted; a message from the future (a hole, e.g. after a reconnect) is dropped and the agent is told
where to resume (an ack with ``rewind``, once per hole).  Per stream it checks sequence continuity
(``new_samples``): duplicated samples are dropped and counted, holes counted (the agent's Gap records explain them).
``durable_mid`` is what the session's file holds on disk (fsync-ed): the cumulative ack.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from synchub.agent.core.stream import Chunk, StreamInfo


class Ledger:
    def __init__(self, sid: str, agent: str, user: str):
        self.sid = sid
        self.agent = agent
        self.user = user  # the CURVE key (ZAP user id) the session belongs to; "" in plain text
        self.identity = b""  # the agent's ROUTER identity, for replies
        self.streams: dict[str, StreamInfo] = {}
        self.next_mid = 1
        self.written_mid = 0
        self.durable_mid = 0
        self.next_seq: dict[str, int] = {}
        self.rewind_sent_for = 0
        self.closed = False
        self.closed_at = 0.0  # monotonic time of the bye (admission forgets the session a while after)
        self.hello_env: dict[str, Any] = {}
        self.counts: Counter = Counter()
        self.samples: Counter = Counter()
        self.last_rx = 0.0
        self.part = 1  # the part number of the session's next file

    def schema_problem(self, stream: str, dtype: str, shape) -> tuple[str, str] | None:
        """(reason, detail) when a chunk of ``stream`` (``dtype``/``shape`` as its envelope says) does not match what
        the session's hello declared; None when it does (then it is counted under ``reason``)."""
        info = self.streams.get(stream)
        if info is None:
            why = ("unknown_stream", f"chunk of stream {stream!r} not in session {self.sid}'s hello")
        else:
            want = "str" if info.dtype is None else info.dtype.newbyteorder("<").str
            if dtype == want and (info.dtype is None or tuple(shape) == info.sample_shape):
                return None
            why = ("schema_mismatch", f"chunk of {stream!r} is {dtype} x {shape}, the stream declared {want} x "
                                      f"{list(info.sample_shape)}")
        self.counts[why[0]] += 1
        return why

    def resume_after(self, last_mid: int) -> None:
        """Files of an earlier part hold messages up to ``last_mid``: the session continues after it."""
        self.next_mid = last_mid + 1
        self.written_mid = self.durable_mid = last_mid

    def order(self, mid: int, last: int) -> str:
        """Where messages ``mid``..``last`` (a gap span stands for several) fall: ``"duplicate"`` (all recorded),
        ``"ahead"`` (a hole before them: rewind) or ``"next"`` (the ones to record now)."""
        if last < self.next_mid:
            self.counts["duplicate_messages"] += 1
            return "duplicate"
        if mid > self.next_mid:
            self.counts["out_of_order"] += 1
            return "ahead"
        return "next"

    def rewind_due(self) -> bool:
        """Whether the agent must be told to go back (once per hole)."""
        if self.rewind_sent_for == self.next_mid:
            return False
        self.rewind_sent_for = self.next_mid
        return True

    def took(self, mid: int, last: int) -> None:
        """Messages ``mid``..``last`` are written."""
        if mid < self.next_mid:  # a gap span reaching back over recorded messages (should not happen): count it
            self.counts["partial_span"] += 1
        self.next_mid = last + 1
        self.written_mid = last

    def new_samples(self, c: Chunk) -> tuple[int, Chunk] | None:
        """The part of chunk ``c`` not recorded yet, as ``(index of its first sample in c, chunk)``; None when every
        sample is a duplicate.  Counts duplicate samples and holes."""
        start = 0
        nxt = self.next_seq.get(c.stream)
        if nxt is not None:
            if c.seq_end <= nxt:
                self.counts["duplicate_samples"] += c.n
                return None
            if c.seq < nxt:
                start = nxt - c.seq
                self.counts["duplicate_samples"] += start
            elif c.seq > nxt:
                self.counts["seq_holes"] += c.seq - nxt
        return start, (c.slice(start, c.n) if start else c)

    def recorded(self, c: Chunk) -> None:
        self.next_seq[c.stream] = c.seq_end
        self.samples[c.stream] += c.n
