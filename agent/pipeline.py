"""The agent pipeline: drivers -> hub (sequence numbers) -> bounded queue -> shipper (clock correction) -> transport.

Threads: each driver reads on its own thread and calls the ``Hub`` (a ``DriverSink``).  The hub assigns per-stream
sequence numbers and puts items on one ``BoundedQueue``.  A single ``Shipper`` thread owns the clock state
(``StreamClocks`` is a pure class, touched from this thread only): it feeds evidence and arrival times at once, holds
each chunk for ``correction_delay_ns`` so that trigger edges just after a sample can still shape its correction,
then corrects it and hands it to the sender.  That clock logic is ``synchub.agent.clock.replay.LiveCorrector``, the same
object ``synchub align --live`` and ``synchub bench sync`` run on recorded times.

Lossless by default: with ``overflow="block"`` a full queue blocks the driver (the OS buffers of the device fill
instead).  With ``overflow="drop-oldest"`` the oldest chunk is dropped, counted and recorded as a ``Gap``.
Evidence, gaps and metadata are never dropped.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from synchub.agent.clock.replay import LiveCorrector
from synchub.agent.core.evidence import ClockReset, Evidence, evidence_to_dict
from synchub.agent.core.stream import Chunk, Gap, StreamInfo, StreamStats
from synchub.agent.core.units import NS_PER_MS, now_ns

log = logging.getLogger("synchub.pipeline")


class Clocks(Protocol):
    """What the shipper needs of the clock layer (``synchub.agent.clock.layer.StreamClocks``)."""

    def feed(self, item: Evidence) -> None: ...

    def feed_arrivals(self, stream: str, device_ns: np.ndarray, host_ns: np.ndarray) -> None: ...

    def reset(self, stream: str, device_ns: int, host_ns: int = 0) -> None: ...

    def correct(self, chunk: Chunk) -> Chunk: ...


class Outlet(Protocol):
    """What the shipper needs of the transport (``synchub.agent.transport.Sender``)."""

    def send_chunk(self, chunk: Chunk) -> None: ...

    def send_gap(self, gap: Gap) -> None: ...

    def send_meta(self, stream: str, meta: dict) -> None: ...


class IdentityClocks:
    """Clock layer used when none is configured: corrected time = host receive time, uncertainty unknown (0)."""

    def feed(self, item: Evidence) -> None:
        pass

    def feed_arrivals(self, stream: str, device_ns: np.ndarray, host_ns: np.ndarray) -> None:
        pass

    def reset(self, stream: str, device_ns: int, host_ns: int = 0) -> None:
        pass

    def correct(self, chunk: Chunk) -> Chunk:
        return chunk.corrected(chunk.host_ns, np.zeros(chunk.n, dtype=np.int64), "identity")


@dataclass(frozen=True)
class MetaRecord:
    """A metadata message for the recording (stream info updates, NTP health, the agent's clock config)."""

    stream: str
    meta: dict


@dataclass(frozen=True)
class DerivedChunk:
    """A chunk already on the reference clock (fused vectors): sent as it is, never held or corrected."""

    chunk: Chunk


#: What the queue carries: a raw chunk (the only item that counts toward the bound), a gap, clock evidence, a
#: metadata record, a derived chunk.
Item = Chunk | Gap | Evidence | MetaRecord | DerivedChunk


@dataclass
class QueueStats:
    put: int = 0
    dropped_chunks: int = 0
    dropped_samples: int = 0
    blocked_ns: int = 0
    high_water: int = 0


class BoundedQueue:
    """A FIFO bounded in chunks.  Non-chunk items (evidence, gaps, meta) never count toward the bound and are
    never dropped."""

    def __init__(self, max_chunks: int, overflow: str = "block"):
        if overflow not in ("block", "drop-oldest"):
            raise ValueError(f"unknown overflow policy {overflow!r}")
        self.max_chunks = max_chunks
        self.overflow = overflow
        self._items: collections.deque = collections.deque()
        self._chunks = 0
        self._cond = threading.Condition()
        self._closed = False
        self.stats = QueueStats()
        self.dropped: list[Chunk] = []  # the shipper turns these into Gap records

    def put(self, item: Item) -> None:
        with self._cond:
            if isinstance(item, Chunk):
                if self._chunks >= self.max_chunks:
                    if self.overflow == "block":
                        t0 = now_ns()
                        while self._chunks >= self.max_chunks and not self._closed:
                            self._cond.wait(0.1)
                        self.stats.blocked_ns += now_ns() - t0
                    else:
                        self._drop_oldest_chunk()
                self._chunks += 1
                self.stats.high_water = max(self.stats.high_water, self._chunks)
            self._items.append(item)
            self.stats.put += 1
            self._cond.notify_all()

    def _drop_oldest_chunk(self) -> None:
        for i, item in enumerate(self._items):
            if isinstance(item, Chunk):
                del self._items[i]
                self._chunks -= 1
                self.stats.dropped_chunks += 1
                self.stats.dropped_samples += item.n
                self.dropped.append(item)
                return

    def get(self, timeout: float) -> Item | None:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            if isinstance(item, Chunk):
                self._chunks -= 1
            self._cond.notify_all()
            return item

    def take_dropped(self) -> list[Chunk]:
        with self._cond:
            out, self.dropped = self.dropped, []
            return out

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Locked:
    """Serializes ``push`` (shipper thread) and ``poll`` (housekeeping thread) of a pure stateful consumer such as an
    ``AlignmentTracker`` or a ``Fuser``."""

    def __init__(self, inner: Any):
        self.inner = inner
        self._lock = threading.Lock()

    def push(self, stream: str, chunk: Chunk) -> None:
        with self._lock:
            self.inner.push(stream, chunk)

    def poll(self) -> list:
        with self._lock:
            return self.inner.poll()


class Hub:
    """The sink every driver reports to: assigns sequence numbers and queues samples, gaps and evidence."""

    def __init__(self, infos: dict[str, StreamInfo], queue: BoundedQueue):
        self.infos = dict(infos)
        self.queue = queue
        self.stats: dict[str, StreamStats] = {name: StreamStats() for name in infos}
        self._next_seq = dict.fromkeys(infos, 0)
        # one lock per stream: sequence numbers and queue order stay consistent without serializing drivers
        self._locks = {name: threading.Lock() for name in infos}
        self.problems: collections.Counter = collections.Counter()

    def _known(self, stream: str) -> bool:
        if stream in self.infos:
            return True
        self.problems[("unknown_stream", stream)] += 1
        if self.problems[("unknown_stream", stream)] == 1:
            log.error("driver reported samples for unknown stream %r; dropped (counted)", stream)
        return False

    def samples(self, stream: str, data: Any, device_ns: np.ndarray, host_ns: np.ndarray) -> None:
        if not self._known(stream) or len(device_ns) == 0:
            return
        with self._locks[stream]:
            seq = self._next_seq[stream]
            self._next_seq[stream] = seq + len(device_ns)
            st = self.stats[stream]
            st.samples += len(device_ns)
            st.chunks += 1
            chunk = Chunk(stream=stream, seq=seq, data=data, device_ns=device_ns, host_ns=host_ns)
            # put under the lock so chunks of one stream enter the queue in sequence order
            self.queue.put(chunk)

    def gap(self, stream: str, count: int, cause: str, device_ns_from: int = 0, device_ns_to: int = 0,
            detail: str = "") -> None:
        if not self._known(stream):
            return
        with self._locks[stream]:
            g = Gap(stream=stream, seq=self._next_seq[stream], count=int(count), cause=cause,
                    device_ns_from=int(device_ns_from), device_ns_to=int(device_ns_to), detail=detail)
            st = self.stats[stream]
            st.gaps += 1
            st.dropped += int(count)
            st.count(cause, int(count))
            self.queue.put(g)

    def reset(self, stream: str, device_ns: int, previous_ns: int = 0, detail: str = "") -> None:
        if not self._known(stream):
            return
        with self._locks[stream]:
            self.stats[stream].resets += 1
            self.queue.put(ClockReset(stream, self._next_seq[stream], int(device_ns), int(previous_ns), detail))

    def evidence(self, item: Evidence) -> None:
        self.queue.put(item)

    def problem(self, stream: str, reason: str, detail: str = "") -> None:
        key = (reason, stream)
        self.problems[key] += 1
        if stream in self.stats:
            self.stats[stream].count(reason)
            if reason == "malformed":
                self.stats[stream].malformed += 1
        n = self.problems[key]
        if n <= 3 or n % 1000 == 0:
            log.warning("%s: %s (%d so far)%s", stream, reason, n, f": {detail}" if detail else "")

    def meta(self, stream: str, meta: dict) -> None:
        self.queue.put(MetaRecord(stream, meta))


class Shipper(threading.Thread):
    """Drains the queue: feeds the clock layer, delays chunks for correction, corrects, sends."""

    def __init__(self, queue: BoundedQueue, clocks: Clocks, outlet: Outlet, correction_delay_ms: float = 0.0,
                 taps: list | None = None, record_evidence: bool = True):
        super().__init__(name="synchub-shipper", daemon=True)
        self.queue = queue
        self.clocks = clocks
        self.outlet = outlet
        self.delay_ns = int(correction_delay_ms * NS_PER_MS)
        self.taps = list(taps or [])  # callables(stream, chunk) that see every corrected chunk (aligners, fusion)
        # evidence is recorded too (as "_evidence" meta), so `synchub align` can rerun the clock layer offline
        self.record_evidence = record_evidence
        self.corrector = LiveCorrector(clocks, self.delay_ns)
        self._halt = threading.Event()
        self.sent_chunks = 0
        self.tap_errors = 0
        self.sent_samples: collections.Counter = collections.Counter()
        self.last_progress_ns = now_ns()
        self.error: BaseException | None = None

    def run(self) -> None:
        self._guarded(self._run)

    def _run(self) -> None:
        while not self._halt.is_set():
            self._step(timeout=0.02)
        self._drain()

    def _drain(self) -> None:
        """Everything already queued is corrected and sent, delay or not."""
        while True:
            item = self.queue.get(0.0)
            if item is None:
                break
            self._handle(item)
        self._release(flush=True)

    def final_drain(self) -> None:
        """On the caller's thread, once the shipper thread has ended: ship what reached the queue since (the
        aligners' and fusion's output on the chunks of the last drain).  Does nothing while the thread runs or
        after it failed."""
        if self.is_alive() or self.error is not None:
            return
        self._guarded(self._drain)

    def _guarded(self, work) -> None:
        try:
            work()
        except BaseException as exc:  # surfaced by Agent.check(); never silent
            self.error = exc
            log.exception("shipper failed")

    def _step(self, timeout: float) -> None:
        item = self.queue.get(timeout)
        if item is not None:
            self._handle(item)
        self._release(flush=False)

    def _handle(self, item: Item) -> None:
        if isinstance(item, Chunk):
            self.corrector.chunk(item)
        elif isinstance(item, Gap):
            self.outlet.send_gap(item)  # a gap carries its own seq; the collector places it
        elif isinstance(item, MetaRecord):
            self.outlet.send_meta(item.stream, item.meta)
        elif isinstance(item, DerivedChunk):  # derived streams already on the reference clock (fused vectors)
            self.outlet.send_chunk(item.chunk)
            self.sent_samples[item.chunk.stream] += item.chunk.n
        else:  # clock evidence (a ClockReset: the stream's next chunk starts a new clock segment)
            self.corrector.evidence(item)
            if self.record_evidence:
                self.outlet.send_meta("_evidence", {"kind": "evidence", **evidence_to_dict(item)})
        for dropped in self.queue.take_dropped():
            self.outlet.send_gap(Gap(stream=dropped.stream, seq=dropped.seq, count=dropped.n, cause="queue_full",
                                     device_ns_from=int(dropped.device_ns[0]), device_ns_to=int(dropped.device_ns[-1]),
                                     detail="agent queue full (overflow=drop-oldest)"))

    def _release(self, flush: bool) -> None:
        for chunk in self.corrector.release(now_ns(), flush):
            self.outlet.send_chunk(chunk)
            for tap in self.taps:
                try:
                    tap(chunk.stream, chunk)
                except Exception:  # an aligner or fusion bug must not stop the recording: counted, logged
                    self.tap_errors += 1
                    if self.tap_errors <= 3 or self.tap_errors % 1000 == 0:
                        log.exception("tap failed on a %s chunk (%d so far)", chunk.stream, self.tap_errors)
            self.sent_chunks += 1
            self.sent_samples[chunk.stream] += chunk.n
            self.last_progress_ns = now_ns()

    def stop(self) -> None:
        self._halt.set()

    @property
    def pending(self) -> int:
        return self.corrector.pending
