"""A pure model of one agent's spool talking to a collector's ledger, for the spool's property tests.

``Link`` drives the real ``Spool``, the real ``SenderSession`` (go-back-N, credit window) and the real collector
``Ledger`` through the same steps the ``Sender`` I/O thread and the collector server take, with the network as a
list of frames in flight: append, send, deliver, ack, lose the link, kill the agent (disk spool: reopened from its
files without a clean close).  ``truth`` counts the samples produced per (session, stream); ``recorded`` and
``gapped`` hold what the collector wrote, so a test checks that every sample is recorded or is in a gap record
with its cause, never neither and never both.
"""

from __future__ import annotations

import os

import numpy as np

from synchub.agent.collector.ledger import Ledger
from synchub.agent.core.stream import Chunk
from synchub.agent.transport import wire
from synchub.agent.transport.session import SenderSession
from synchub.agent.transport.spool import KIND_DATA, KIND_OTHER, Spool


class Link:
    def __init__(self, path, max_bytes: int, segment_bytes: int, credit: int = 4):
        self.path = path
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.credit = credit
        self.spool = self._open()
        self.run = 0
        self.sid = "run0"
        self.sessions: dict[str, SenderSession] = {self.sid: SenderSession(self.sid, [])}
        self.mid = {self.sid: 0}
        self.ledgers: dict[str, Ledger] = {}
        self.net: list[list[bytes]] = []
        self.truth: dict[tuple[str, str], int] = {}
        self.recorded: dict[tuple[str, str], set[int]] = {}
        self.gapped: dict[tuple[str, str], list[int]] = {}
        self.missing = 0
        self.connected = False

    def _open(self) -> Spool:
        return Spool(self.path, max_bytes=self.max_bytes, priorities={"a": 0, "b": 1},
                     segment_bytes=self.segment_bytes)

    # ---------------------------------------------------------------- agent side
    def produce(self, stream: str, n: int) -> None:
        key = (self.sid, stream)
        seq = self.truth.get(key, 0)
        c = Chunk(stream, seq, np.full((n, 16), seq, np.float32), np.arange(seq, seq + n), np.arange(seq, seq + n))
        mid = self.mid[self.sid] + 1
        self.spool.append(self.sid, mid, wire.encode_chunk(self.sid, mid, c), KIND_DATA, stream, seq, n)
        self.mid[self.sid] = mid
        self.truth[key] = seq + n

    def meta(self) -> None:
        mid = self.mid[self.sid] + 1
        self.spool.append(self.sid, mid, wire.encode_meta(self.sid, mid, "a", {"x": 1}), KIND_OTHER, "a")
        self.mid[self.sid] = mid

    def pump(self, budget: int) -> None:
        """What ``Sender._pump`` does for every welcomed session."""
        if not self.connected:
            return
        for s in self.sessions.values():
            last = self.spool.last_mid.get(s.sid, 0)
            while budget > 0 and s.can_send(last):
                frames, span_last = self.spool.get_span(s.sid, s.cursor, sending=True)
                if frames is None:
                    if s.cursor <= s.acked:
                        s.cursor = s.acked + 1
                        continue
                    self.missing += 1
                    s.cursor += 1
                    continue
                self.net.append(frames)
                s.sent(span_last, sum(len(f) for f in frames), 0)
                budget -= 1

    def reconnect(self) -> None:
        """A new link: every session says hello and the collector welcomes it (acked, next)."""
        self.net.clear()
        for s in self.sessions.values():
            s.new_link()
            led = self.ledgers.setdefault(s.sid, Ledger(s.sid, "agent", ""))
            s.window(self.credit, 1 << 30)
            self._on_ack(s, led.durable_mid)
            s.welcome(led.durable_mid, led.next_mid)
            self.spool.mark_sent(s.sid, s.cursor - 1)
        self.connected = True

    def drop_link(self) -> None:
        self.net.clear()
        self.connected = False

    def crash(self) -> None:
        """kill -9 of the agent: no clean close (acks not saved, no fsync), then a new process and a new session."""
        if self.spool.dir is None:
            return
        os.close(self.spool._lock_fd)
        if self.spool.log.fd >= 0:
            os.close(self.spool.log.fd)
        self.spool = self._open()
        self.run += 1
        self.sid = f"run{self.run}"
        self.sessions = {sid: SenderSession(sid, []) for sid in self.spool.last_mid if self.spool.last_mid[sid] > 0}
        self.sessions[self.sid] = SenderSession(self.sid, [])
        self.mid[self.sid] = 0
        self.net.clear()
        self.connected = False

    def _on_ack(self, s: SenderSession, acked: int) -> None:
        if acked > s.acked:
            s.ack(acked, 0)
            self.spool.ack(s.sid, acked)

    # ---------------------------------------------------------------- collector side
    def deliver(self, count: int) -> None:
        """The collector takes ``count`` messages off the network (the server's ``_handle``) and acks them."""
        for _ in range(min(count, len(self.net))):
            msg = wire.decode(self.net.pop(0))
            led = self.ledgers[msg.session]
            where = led.order(msg.mid, msg.mid_last)
            if where == "ahead":
                if led.rewind_due():
                    self._reply(led, rewind=True)
                continue
            if where == "duplicate":
                continue
            if msg.kind == "chunk":
                new = led.new_samples(msg.chunk)
                if new is not None:
                    c = new[1]
                    rec = self.recorded.setdefault((led.sid, c.stream), set())
                    assert rec.isdisjoint(range(c.seq, c.seq_end)), "a sample recorded twice"
                    rec.update(range(c.seq, c.seq_end))
                    led.recorded(c)
            elif msg.kind == "gap":
                for g in msg.gaps:
                    assert g.cause == "spool_full"
                    self.gapped.setdefault((led.sid, g.stream), []).extend(range(g.seq - g.count, g.seq))
            led.took(msg.mid, msg.mid_last)
            led.durable_mid = led.written_mid
            self._reply(led)

    def _reply(self, led: Ledger, rewind: bool = False) -> None:
        s = self.sessions.get(led.sid)
        if s is None or not self.connected:
            return
        self._on_ack(s, led.durable_mid)
        if rewind and led.next_mid < s.cursor:
            s.restart_at(max(led.next_mid, led.durable_mid + 1))

    # ---------------------------------------------------------------- checks
    def pending(self) -> int:
        return sum(self.spool.pending(s) for s in self.sessions)

    def drain(self, rounds: int = 10_000) -> None:
        """Reconnect and run until the spool is empty (what a reachable collector does eventually)."""
        self.reconnect()
        for _ in range(rounds):
            if self.pending() == 0:
                return
            self.pump(64)
            self.deliver(64)
        raise AssertionError(f"the link did not drain: {self.pending()} messages pending, {self.missing} missing")

    def unaccounted(self) -> dict[tuple[str, str], str]:
        """Per (session, stream): what is wrong with recorded + gapped vs the truth ({} when all is accounted)."""
        bad = {}
        for key, n in self.truth.items():
            rec = self.recorded.get(key, set())
            gaps = self.gapped.get(key, [])
            gap_set = set(gaps)
            if len(gap_set) != len(gaps):
                bad[key] = f"{len(gaps) - len(gap_set)} samples in two gap records"
            elif rec & gap_set:
                bad[key] = f"{len(rec & gap_set)} samples both recorded and in a gap"
            elif rec | gap_set != set(range(n)):
                lost = set(range(n)) - rec - gap_set
                bad[key] = f"{len(lost)} of {n} samples neither recorded nor in a gap (first {min(lost)})"
        return bad
