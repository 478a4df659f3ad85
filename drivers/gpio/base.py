"""What every GPIO trigger back end shares: edges -> ``TriggerEdge(clock="ref")`` evidence (and, when recorded as a
stream of type ``trigger``, samples of the line level), lost-edge accounting from sequence numbers, pulse widths.

A back end calls ``_edge(t_ns, polarity, seq, host_ns)`` from its reading thread; ``t_ns`` must already be on the
reference clock (host CLOCK_MONOTONIC).  With ``edge = "both"`` a rising edge is held until its falling edge so that
the evidence carries the pulse width (the trigger matcher's width filter needs it); with one edge kind the width is
unknown (0).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from synchub.agent.core.evidence import TriggerEdge
from synchub.agent.core.stream import StreamInfo

log = logging.getLogger("synchub.gpio")



class TriggerInput:
    """Base of the back ends.  ``start(sink)`` returns at once, ``stop()`` releases the line."""

    backend = "base"
    timestamp_source = "kernel"

    def __init__(self, settings, as_stream: bool = True):
        self.settings = settings
        self.name = settings.name
        self.as_stream = as_stream
        self.info = StreamInfo(
            name=settings.name, type="trigger", nominal_srate=0.0, channel_count=1, channel_format="int8",
            channel_labels=("level",), source_id=f"{self.backend}:{getattr(settings, 'chip', '')}:{settings.line}",
            quality=tuple(sorted({
                "timestamp_source": self.timestamp_source, "backend": self.backend, "clock": "reference",
                "event_clock": getattr(settings, "event_clock", "monotonic"), "role": settings.role,
            }.items())),
        )
        self.sink = None
        self.counts: dict[str, int] = {}
        self.edges = 0
        self.lost = 0
        self._last_seq: int | None = None
        self._pending_rise: tuple[int, int, int] | None = None  # (t_ns, seq, host_ns) of a rise awaiting its fall
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None  # a back end's reading thread (``_run``), if it has one
        self._halt = threading.Event()

    # ---- life cycle (back ends override _open/_close)
    def start(self, sink) -> None:
        self.sink = sink
        self._open()

    def stop(self) -> None:
        self._close()
        with self._lock:
            self._flush_rise()

    def _open(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _start_reader(self) -> None:
        """Start ``self._run`` (the back end's read loop, which returns once ``self._halt`` is set) on a thread."""
        self._halt.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.backend}-{self.name}", daemon=True)
        self._thread.start()

    def _stop_reader(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def health(self) -> dict[str, Any]:
        return {"edges": self.edges, "lost": self.lost, **self.counts}

    def _count(self, reason: str, n: int = 1, detail: str = "") -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n
        if self.sink is not None:
            self.sink.problem(self.name, reason, detail)

    # ---- edges
    def _edge(self, t_ns: int, polarity: int, seq: int = -1, host_ns: int | None = None) -> None:
        host = time.monotonic_ns() if host_ns is None else int(host_ns)
        with self._lock:
            if seq >= 0 and self._last_seq is not None and seq != self._last_seq + 1:
                if seq > self._last_seq + 1:
                    lost = seq - self._last_seq - 1
                    self.lost += lost
                    if self.sink is not None:
                        self.sink.gap(self.name, lost, "device_drop", detail="edge events lost (sequence number gap)")
                    self._pending_rise = None  # its falling edge may be among the lost ones
                else:
                    self._count("seq_backwards", detail=f"seq {seq} after {self._last_seq}")
            if seq >= 0:
                self._last_seq = seq
            self.edges += 1
            both = getattr(self.settings, "edge", "rising") == "both"
            if self.as_stream and self.sink is not None:
                self.sink.samples(self.name, np.array([[1 if polarity > 0 else 0]], dtype=np.int8),
                                  np.array([t_ns], dtype=np.int64), np.array([host], dtype=np.int64))
            if not both:
                self._evidence(t_ns, polarity, 0, seq, host)
                return
            if polarity > 0:
                self._flush_rise()
                self._pending_rise = (int(t_ns), seq, host)
            else:
                if self._pending_rise is not None:
                    rt, rseq, rhost = self._pending_rise
                    self._pending_rise = None
                    self._evidence(rt, 1, int(t_ns) - rt, rseq, rhost)
                self._evidence(t_ns, -1, 0, seq, host)

    def _flush_rise(self) -> None:
        if self._pending_rise is not None:
            rt, rseq, rhost = self._pending_rise
            self._pending_rise = None
            self._evidence(rt, 1, 0, rseq, rhost)

    def _evidence(self, t_ns: int, polarity: int, width_ns: int, seq: int, host: int) -> None:
        if self.sink is not None:
            self.sink.evidence(TriggerEdge(source=self.name, t_ns=int(t_ns), clock="ref", polarity=polarity,
                                           width_ns=int(width_ns), seq=int(seq), host_ns=int(host)))
