"""The two-sided rerun of a recording (``replay.feed_offline``), fed as the recording is read: bounded memory.

``feed_offline`` takes a whole recording: per stream, the samples' arrival times cut into host-time slices
(``SLICE_NS``, and at ``device_reset`` gaps), interleaved with the evidence in host-time order.  ``StreamFeeder``
makes the same calls in the same order from a recording read in file order: evidence items, resets and pieces of
samples (device and host times, sequence numbers) go in as they come; per stream the pieces are put back in
sequence order and cut into the same slices; slices and evidence wait in a heap until the file has moved
``horizon_ns`` of host time past them (a collector writes a chunk about the agent's correction delay after its
samples arrived, and evidence at once), then go to the ``StreamClocks`` in ``(time, evidence first, order)``
order.  As long as nothing in the file is later than the horizon, the clock models end up exactly as
``feed_offline`` leaves them (``tests/formats/readers/test_mcap_parts.py`` checks it); an item later than that is fed when it
comes and counted (``late``).

Then ``clocks.correct(chunk, smooth=True)`` corrects any piece of the recording, in a second pass.  Pure: no I/O.
"""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np

from .replay import SLICE_NS, evidence_time

NS = 1_000_000_000


class _Slicer:
    """One stream's samples, in sequence order, cut into host-time slices and at resets."""

    def __init__(self, rank: int):
        self.rank = rank
        self.pending: list[tuple[int, int, int, np.ndarray, np.ndarray]] = []  # (seq, max host, order, dev, host)
        self.dev: list[np.ndarray] = []
        self.host: list[np.ndarray] = []
        self.block: int | None = None
        self.reset = False
        self.count = 0
        self.pushed = 0


class StreamFeeder:
    """See the module docstring.  ``clocks``: a ``StreamClocks`` (``feed``, ``feed_arrivals``, ``reset``)."""

    def __init__(self, clocks, horizon_ns: int = 20 * NS):
        self.clocks = clocks
        self.horizon = int(horizon_ns)
        self.resets: dict[str, set[int]] = {}
        self._streams: dict[str, _Slicer] = {}
        self._heap: list[tuple[int, int, int, int, Any]] = []
        self._ev = 0
        self._mark: int | None = None  # the latest host time seen
        self._fed_to: int | None = None  # the key time of the last item fed
        self.late = 0

    # ---- input, in file order
    def evidence(self, item) -> None:
        self._push((evidence_time(item), 0, self._ev, 0, item))
        self._ev += 1

    def reset(self, stream: str, seq: int) -> None:
        self.resets.setdefault(stream, set()).add(int(seq))

    def samples(self, stream: str, seq: int, device_ns, host_ns) -> None:
        dev = np.asarray(device_ns, dtype=np.int64)
        host = np.asarray(host_ns, dtype=np.int64)
        if len(dev) == 0:
            return
        s = self._streams.get(stream)
        if s is None:
            s = self._streams[stream] = _Slicer(len(self._streams))
        heapq.heappush(s.pending, (int(seq), int(host.max()), s.pushed, dev, host))  # order: a chunk twice
        s.pushed += 1
        top = int(host.max())
        self._mark = top if self._mark is None else max(self._mark, top)
        self._advance(self._mark - self.horizon)

    def finish(self) -> None:
        """Everything still held goes to the clocks."""
        for name, s in self._streams.items():
            self._release(name, s, None)
            self._close(name, s)
        self._drain(None)

    # ---- internals
    def _push(self, item) -> None:
        if self._fed_to is not None and item[0] < self._fed_to:
            self.late += 1  # too late to be put in order: fed now
            self._feed(item)
            return
        heapq.heappush(self._heap, item)

    def _advance(self, upto: int) -> None:
        for name, s in self._streams.items():
            self._release(name, s, upto)
        self._drain(upto - self.horizon)

    def _release(self, name: str, s: _Slicer, upto: int | None) -> None:
        while s.pending and (upto is None or s.pending[0][1] < upto):
            seq, _, _, dev, host = heapq.heappop(s.pending)
            self._cut(name, s, seq, dev, host)

    def _cut(self, name: str, s: _Slicer, seq: int, dev: np.ndarray, host: np.ndarray) -> None:
        blocks = host // SLICE_NS
        prev = np.empty(len(blocks), dtype=np.int64)
        prev[1:] = blocks[:-1]
        prev[0] = blocks[0] if s.block is None else s.block
        cut = blocks != prev
        resets = self.resets.get(name)
        at_reset = np.zeros(len(dev), dtype=bool)
        if resets:
            at_reset = np.isin(seq + np.arange(len(dev), dtype=np.int64), np.fromiter(resets, dtype=np.int64))
        if s.block is None:
            cut[0] = False
        starts = cut | at_reset
        bounds = sorted({0, len(dev), *np.flatnonzero(starts).tolist()})
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if starts[a] and s.dev:
                self._close(name, s)
            if not s.dev:
                s.reset = bool(at_reset[a])
            s.dev.append(dev[a:b])
            s.host.append(host[a:b])
            s.block = int(blocks[b - 1])

    def _close(self, name: str, s: _Slicer) -> None:
        if not s.dev:
            return
        dev, host = np.concatenate(s.dev), np.concatenate(s.host)
        s.dev, s.host = [], []
        self._push((int(host[-1]), 1, s.rank, s.count, (name, dev, host, s.reset)))
        s.count += 1
        s.reset = False

    def _drain(self, upto: int | None) -> None:
        while self._heap and (upto is None or self._heap[0][0] < upto):
            self._feed(heapq.heappop(self._heap))

    def _feed(self, item) -> None:
        t, kind, _, _, what = item
        self._fed_to = t if self._fed_to is None else max(self._fed_to, t)
        if kind == 0:
            self.clocks.feed(what)
            return
        stream, dev, host, reset = what
        if reset and hasattr(self.clocks, "reset"):
            self.clocks.reset(stream, int(dev[0]), int(host[0]))
        self.clocks.feed_arrivals(stream, dev, host)
