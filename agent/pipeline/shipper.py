"""``Shipper``: the one thread that drains the agent's queue, owns the clock state and hands corrected chunks to the
outlet (the transport's ``Sender``).

``StreamClocks`` is a pure class, touched from this thread only: the shipper feeds evidence and arrival times at
once, holds each chunk for ``correction_delay_ns`` (a stream's own ``correction_delay_ms`` where longer) so that
trigger edges and aligner windows just after a sample can still shape its correction, then corrects it and sends
it; the aligners see their target's raw chunks at once (``arrival_taps``), so holding it does not delay them.  That clock logic is ``synchub.agent.clock.replay.LiveCorrector``, the same
object ``synchub align --live`` and ``synchub bench sync`` run on recorded times.  Evidence is recorded too (as
``_evidence`` meta), so the offline rerun sees what the agent saw; chunks the queue dropped become ``queue_full``
gaps.  ``Clocks`` and ``Outlet`` are the small protocols it needs; ``Locked`` serializes a tap's consumers.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Protocol

import numpy as np

from synchub.agent.clock.replay import LiveCorrector
from synchub.agent.core.evidence import Evidence, evidence_to_dict
from synchub.agent.core.stream import Chunk, Gap
from synchub.agent.core.units import NS_PER_MS, now_ns

from .chunkqueue import BoundedQueue, DerivedChunk, Item, MetaRecord

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


class Locked:
    """Serializes ``push`` (shipper thread) and ``poll`` (housekeeping thread) of a pure stateful consumer such as an
    ``AlignmentTracker`` or a ``Fuser``."""

    def __init__(self, inner: Any):
        self.inner = inner
        self._lock = threading.Lock()

    def push(self, stream: str, chunk: Chunk) -> None:
        with self._lock:
            self.inner.push(stream, chunk)

    def push_arrival(self, stream: str, chunk: Chunk) -> None:
        with self._lock:
            self.inner.push_arrival(stream, chunk)

    def poll(self) -> list:
        with self._lock:
            return self.inner.poll()


class Shipper(threading.Thread):
    """Drains the queue: feeds the clock layer, delays chunks for correction, corrects, sends."""

    def __init__(self, queue: BoundedQueue, clocks: Clocks, outlet: Outlet, correction_delay_ms: float = 0.0,
                 taps: list | None = None, record_evidence: bool = True, stream_delays: dict[str, int] | None = None,
                 arrival_taps: list | None = None):
        super().__init__(name="synchub-shipper", daemon=True)
        self.queue = queue
        self.clocks = clocks
        self.outlet = outlet
        self.delay_ns = int(correction_delay_ms * NS_PER_MS)
        self.taps = list(taps or [])  # callables(stream, chunk) that see every corrected chunk (aligners, fusion)
        # callables(stream, chunk) that see every raw chunk as it arrives (the aligners' targets: not held back)
        self.arrival_taps = list(arrival_taps or [])
        # evidence is recorded too (as "_evidence" meta), so `synchub align` can rerun the clock layer offline
        self.record_evidence = record_evidence
        self.corrector = LiveCorrector(clocks, self.delay_ns, stream_delays)  # per stream: ns, where held longer
        self._halt = threading.Event()
        self.sent_chunks = 0
        self.tap_errors = 0
        self.sent_samples: collections.Counter = collections.Counter()
        self.last_progress_ns = now_ns()
        self.heartbeat_ns = now_ns()  # every turn of the loop (liveness), data or not
        self.clock_view: dict[str, tuple[str, int | None]] = {}  # stream -> (method, 1-sigma ns) of its latest sample
        self.clock_notes: dict[str, str] = {}  # stream -> the clock layer's latest event line (``_clock_events``)
        self.error: BaseException | None = None

    def run(self) -> None:
        self._guarded(self._run)

    def _run(self) -> None:
        while not self._halt.is_set():
            self.heartbeat_ns = now_ns()
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
            self._tap(self.arrival_taps, item)
            self._clock_events(item.stream)  # what its arrivals showed (samples out of time order)
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
            self._clock_events()
        for dropped in self.queue.take_dropped():
            # seq: the number the next real sample got (``Gap``), as for every other cause; the lost ones precede it
            self.outlet.send_gap(Gap(stream=dropped.stream, seq=dropped.seq + dropped.n, count=dropped.n,
                                     cause="queue_full",
                                     device_ns_from=int(dropped.device_ns[0]), device_ns_to=int(dropped.device_ns[-1]),
                                     detail="agent queue full (overflow=drop-oldest)"))

    def _clock_events(self, only: str | None = None) -> None:
        """What the clock layer says changed (a trigger lost: the aligner falls back; the trigger back; samples out of
        time order; ``only``: that stream's): logged once, and the latest per stream kept for the status
        (``clock_notes``)."""
        take = getattr(self.clocks, "take_events", None)
        for stream, line in take(only) if take is not None else ():
            log.warning("%s", line)
            self.clock_notes[stream] = line

    def _release(self, flush: bool) -> None:
        for chunk in self.corrector.release(now_ns(), flush):
            self.outlet.send_chunk(chunk)
            self._tap(self.taps, chunk)
            self.sent_chunks += 1
            self.sent_samples[chunk.stream] += chunk.n
            self.clock_view[chunk.stream] = (chunk.method, None if chunk.unc_ns is None else int(chunk.unc_ns[-1]))
            self.last_progress_ns = now_ns()

    def _tap(self, taps: list, chunk: Chunk) -> None:
        for tap in taps:
            try:
                tap(chunk.stream, chunk)
            except Exception:  # an aligner or fusion bug must not stop the recording: counted, logged
                self.tap_errors += 1
                if self.tap_errors <= 3 or self.tap_errors % 1000 == 0:
                    log.exception("tap failed on a %s chunk (%d so far)", chunk.stream, self.tap_errors)

    def stop(self) -> None:
        self._halt.set()

    @property
    def pending(self) -> int:
        return self.corrector.pending
