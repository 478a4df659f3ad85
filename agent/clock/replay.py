"""One correction path: what the agent does with the clock layer live, and the rerun of a recording with the same
calls (``synchub align``, the collector's tools, ``synchub bench sync``).  Pure: no I/O, no threads, no clock of its
own (time is the caller's).

``LiveCorrector`` is the shipper's clock logic, item by item in arrival order: evidence is fed as it comes; a
chunk's arrival times are fed at once (after the driver-reported reset that precedes it, if any) and the chunk is
held until ``delay_ns`` after its last sample arrived, then corrected with everything known by then
(``release(now_ns)``).  The agent's ``Shipper`` drives it with ``CLOCK_MONOTONIC``.

``replay(clocks, chunks, evidence)`` reruns a recording on a fresh ``StreamClocks`` (``correct_recording`` builds
it from the recording's clock config):

* two-sided (``smooth=True``, the default): every stream's samples are fed in fixed slices of host time
  (``SLICE_NS``, cut at resets too) interleaved with the evidence in host-time order, so the recording's own
  chunking does not matter; then every chunk is corrected with the two-sided estimate.  Since ``ClockModel.map``
  is a function of the evidence and of each sample's own times, a recording corrected chunk by chunk gives the
  same times as corrected at once.  A stream's aligner offsets, all at hand, are judged together first
  (``judged_offsets``: ``robust.robust_verdict`` per timeline): the live tracker's causal gate let some confident
  wrong windows through, and the two-sided least squares would follow them.
* live (``smooth=False``): the recorded chunks and evidence go through a ``LiveCorrector`` in host-time order,
  each chunk corrected once ``delay_ns`` (its stream's own delay, if longer) of host time has passed since its last
  sample arrived: the agent's causal correction.  An aligner's offset counts from when the agent had it
  (``available_time``: its window had ended and the aligner had run), not from the time it speaks of.

A ``ClockReset`` among the evidence (a driver saw its device clock reset) starts a new clock segment at its sample
(``seq``): the chunk that begins there is fed after the reset.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

import numpy as np

from synchub.agent.core.evidence import ClockReset, Evidence, OffsetEstimate, Probe, TriggerEdge
from synchub.agent.core.stream import Chunk, StreamInfo

from .choice import METHOD_ORDER
from .layer import StreamClocks
from .robust import robust_verdict
from .settings import ClockLayerConfig

_METHOD_RANK = {m: i for i, m in enumerate((*METHOD_ORDER, "none"))}
#: Host-time slices in which a rerun feeds arrival times (the agent ships chunks of about this length).
SLICE_NS = 100_000_000
#: The sources of aligner offsets (``OffsetEstimate.source``) a two-sided rerun judges together.
ALIGNER_SOURCES = ("hybrid", "neural", "classical")
#: Window / hop of the aligners that made them (the live tracker's 16 s every 4 s): their sigmas were scaled by its
#: square root, which the judgement's scatter estimate takes out (``robust_weighed``).
ALIGNER_OVERLAP = 4.0
#: A step between consecutive aligner offsets larger than this is the device clock's (a reset, a jump), not an
#: aligner's error (its search spans a few seconds): the offsets after it are another timeline's.
CLOCK_STEP_NS = 5 * 1_000_000_000


class LiveCorrector:
    """See the module docstring.  ``clocks`` is a ``StreamClocks`` (or anything with its ``feed``,
    ``feed_arrivals``, ``reset`` and ``correct``: ``synchub.agent.pipeline.shipper.Clocks``).  ``stream_delays``:
    streams held longer than ``delay_ns`` (``ClockLayerConfig.stream_delays_ns``: an aligned stream waiting for the
    aligner's windows after its samples); each stream's chunks leave in the order they came."""

    def __init__(self, clocks, delay_ns: int, stream_delays: dict[str, int] | None = None):
        self.clocks = clocks
        self.delay_ns = int(delay_ns)
        self.stream_delays = {k: int(v) for k, v in (stream_delays or {}).items()}
        self._pending: dict[str, collections.deque[tuple[int, Chunk]]] = {}  # per stream: (arrival number, chunk)
        self._arrived = 0
        self._resets: dict[str, int] = {}  # streams whose next chunk starts after a reported reset

    def evidence(self, item: Evidence) -> None:
        """Evidence as it comes; a ``ClockReset`` makes the stream's next chunk start a new clock segment."""
        if isinstance(item, ClockReset):
            self._resets[item.stream] = 1
        else:
            self.clocks.feed(item)

    def chunk(self, chunk: Chunk) -> None:
        if self._resets.pop(chunk.stream, None) is not None:
            self.clocks.reset(chunk.stream, int(chunk.device_ns[0]), int(chunk.host_ns[0]))
        self.clocks.feed_arrivals(chunk.stream, chunk.device_ns, chunk.host_ns)
        self._pending.setdefault(chunk.stream, collections.deque()).append((self._arrived, chunk))
        self._arrived += 1

    def release(self, now_ns: int, flush: bool = False) -> list[Chunk]:
        """The chunks whose last sample arrived at least their stream's delay before ``now_ns`` (all with
        ``flush``), corrected, in the order they came."""
        ready = []
        for stream, q in self._pending.items():
            cutoff = int(now_ns) - self.stream_delays.get(stream, self.delay_ns)
            while q and (flush or q[0][1].host_ns[-1] <= cutoff):
                ready.append(q.popleft())
        ready.sort(key=lambda p: p[0])
        return [self.clocks.correct(c) for _, c in ready]

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._pending.values())


def evidence_time(item) -> int:
    """Where an evidence item sits among the arrivals in host time, for the clock models (its host receive time;
    an aligner's offset: the reference time it speaks of)."""
    if isinstance(item, TriggerEdge):
        return item.host_ns or item.t_ns
    if isinstance(item, Probe):
        return item.host_recv_ns
    if isinstance(item, OffsetEstimate):
        return item.device_ns + item.offset_ns
    return 0


def available_time(item) -> int:
    """When the agent had an evidence item: an aligner's offset once its window had ended and the aligner ran
    (``OffsetEstimate.host_ns``, recorded since 2026-11-27; older recordings: the time it speaks of, which makes a
    causal rerun of them optimistic by up to a window); everything else at ``evidence_time``."""
    if isinstance(item, OffsetEstimate) and item.host_ns:
        return max(int(item.host_ns), evidence_time(item))
    return evidence_time(item)


def replay(clocks, chunks: Iterable[Chunk], evidence: Iterable[Evidence] = (), *, smooth: bool = True,
           delay_ns: int | None = None) -> list[Chunk]:
    """Rerun the clock layer on a recording's raw times and evidence (``ClockReset`` items included; see the module
    docstring); returns the chunks corrected, in the order given.  ``delay_ns`` (live only) defaults to the
    correction delay of the clocks' config (``ClockLayerConfig.delay_ns``)."""
    chunks = list(chunks)
    evidence = list(evidence)
    if not smooth:
        config = getattr(clocks, "config", None)
        if delay_ns is None:
            delay_ns = config.delay_ns
        return _replay_live(clocks, chunks, evidence, delay_ns, config.stream_delays_ns() if config else {})
    feed_offline(clocks, chunks, evidence)
    return [clocks.correct(c, smooth=True) for c in chunks]


def offset_judgement(evidence: Iterable[Evidence]) -> tuple[dict, dict[str, int]]:
    """Each stream's aligner offsets judged all together (``robust.robust_verdict``), per timeline (a run of them,
    in the order of the times they speak of, whose device time does not go back and whose offset does not step by
    more than ``CLOCK_STEP_NS``: a clock reset or jump starts another).
    Returns (``{offset: the offset to feed, or None: left out}``, ``{stream: offsets left out}``)."""
    runs: dict[str, list[OffsetEstimate]] = collections.defaultdict(list)
    for e in evidence:
        if isinstance(e, OffsetEstimate) and e.source in ALIGNER_SOURCES:
            runs[e.stream].append(e)
    verdict: dict[OffsetEstimate, OffsetEstimate | None] = {}
    dropped: dict[str, int] = {}
    for stream, offs in runs.items():
        offs.sort(key=evidence_time)
        cuts = [0, *(i for i in range(1, len(offs)) if offs[i].device_ns < offs[i - 1].device_ns
                     or abs(offs[i].offset_ns - offs[i - 1].offset_ns) > CLOCK_STEP_NS), len(offs)]
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            kept, _tau, n = robust_verdict(offs[a:b], ALIGNER_OVERLAP)
            verdict.update(dict.fromkeys(offs[a:b]))  # left out, unless kept:
            verdict.update(kept)
            if n:
                dropped[stream] = dropped.get(stream, 0) + n
    return verdict, dropped


def judged_offsets(evidence: Iterable[Evidence]) -> tuple[list, dict[str, int]]:
    """The evidence in its order with the aligner offsets as ``offset_judgement`` has them: left out or reweighed;
    (evidence, ``{stream: offsets left out}``)."""
    evidence = list(evidence)
    verdict, dropped = offset_judgement(evidence)
    out = []
    for e in evidence:
        if isinstance(e, OffsetEstimate) and e in verdict:
            e = verdict[e]
        if e is not None:
            out.append(e)
    return out, dropped


def feed_offline(clocks, chunks: Iterable[Chunk], evidence: Iterable[Evidence] = ()) -> dict[str, int]:
    """The feeding half of the two-sided rerun: arrival times in fixed host-time slices, interleaved with the
    evidence in host-time order (each ``ClockReset`` applied at its sample; aligner offsets judged together first,
    ``judged_offsets``).  Then ``clocks.correct(chunk, smooth=True)`` maps any samples of the recording.  Returns
    the aligner offsets left out per stream."""
    chunks = list(chunks)
    evidence, resets = _split_resets(evidence)
    evidence, dropped = judged_offsets(evidence)
    items: list[tuple[int, int, int, Any]] = [(evidence_time(e), 0, i, e) for i, e in enumerate(evidence)]
    for k, piece in enumerate(_slices(chunks, resets)):
        items.append((piece[3], 1, k, piece))
    items.sort(key=lambda x: (x[0], x[1], x[2]))
    for _, kind, _, item in items:
        if kind == 0:
            clocks.feed(item)
            continue
        stream, dev, host, _, reset = item
        if reset:
            clocks.reset(stream, int(dev[0]), int(host[0]))
        clocks.feed_arrivals(stream, dev, host)
    return dropped


def _split_resets(evidence: Iterable[Evidence]) -> tuple[list, set[tuple[str, int]]]:
    """(the evidence without ``ClockReset`` items, ``(stream, seq)`` of each reset's first sample)."""
    rest, resets = [], set()
    for e in evidence:
        if isinstance(e, ClockReset):
            resets.add((str(e.stream), int(e.seq)))
        else:
            rest.append(e)
    return rest, resets


def _slices(chunks: list[Chunk], resets: set[tuple[str, int]]):
    """Per stream, the samples of all its chunks (in sequence order) cut into host-time slices of ``SLICE_NS`` and at
    resets: ``(stream, device_ns, host_ns, host time of the last sample, starts after a reset)``."""
    by_stream: dict[str, list[Chunk]] = collections.defaultdict(list)
    for c in chunks:
        if c.n:
            by_stream[c.stream].append(c)
    for stream, cs in by_stream.items():
        cs.sort(key=lambda c: c.seq)
        dev = np.concatenate([c.device_ns for c in cs])
        host = np.concatenate([c.host_ns for c in cs])
        seq = np.concatenate([c.seq + np.arange(c.n, dtype=np.int64) for c in cs])
        cut = set((np.flatnonzero(np.diff(host // SLICE_NS)) + 1).tolist())
        at_reset = {int(i) for i in np.flatnonzero(np.isin(seq, [q for s, q in resets if s == stream]))}
        bounds = sorted(cut | at_reset | {0, len(dev)})
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            yield stream, dev[a:b], host[a:b], int(host[b - 1]), a in at_reset


def _replay_live(clocks, chunks: list[Chunk], evidence: list, delay_ns: int, stream_delays: dict[str, int]):
    evidence, resets = _split_resets(evidence)
    live = LiveCorrector(clocks, delay_ns, stream_delays)
    # drivers end a chunk where the device clock reset; a recording that does not is cut there
    parts: list[tuple[int, Chunk, bool]] = []
    for i, c in enumerate(chunks):
        cuts = sorted(q - c.seq for s, q in resets if s == c.stream and c.seq <= q < c.seq_end)
        bounds = sorted({0, c.n, *cuts})
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            parts.append((i, c if (a, b) == (0, c.n) else c.slice(a, b), a in cuts))
    items: list[tuple[int, int, int, Any]] = [(available_time(e), 0, i, e) for i, e in enumerate(evidence)]
    items += [(int(p[1].host_ns[-1]), 1, k, p) for k, p in enumerate(parts) if p[1].n]
    items.sort(key=lambda x: (x[0], x[1], x[2]))
    # parts waiting in the corrector: per stream in the order given (each stream's leave in that order)
    order: dict[str, collections.deque[int]] = collections.defaultdict(collections.deque)
    done: dict[int, Chunk] = {}

    def take(corrected: list[Chunk]) -> None:
        for c in corrected:
            done[order[c.stream].popleft()] = c

    for t, kind, k, item in items:
        take(live.release(t))
        if kind == 0:
            live.evidence(item)
            continue
        if item[2]:
            live.evidence(ClockReset(item[1].stream, item[1].seq))
        live.chunk(item[1])
        order[item[1].stream].append(k)
    take(live.release(0, flush=True))
    by_parent: dict[int, list[Chunk]] = collections.defaultdict(list)
    for k, p in enumerate(parts):
        if k in done:
            by_parent[p[0]].append(done[k])
    out = []
    for i, c in enumerate(chunks):
        mine = by_parent.get(i, [])
        if not mine:
            out.append(c)
        elif len(mine) == 1:
            out.append(mine[0] if mine[0].n == c.n else c)
        else:
            best = min((m.method for m in mine), key=_METHOD_RANK.get)
            out.append(c.corrected(np.concatenate([m.ref_ns for m in mine]), np.concatenate([m.unc_ns for m in mine]),
                                   best, segment=np.concatenate([m.segment for m in mine])))
    return out


def correct_recording(infos: dict[str, StreamInfo], config: ClockLayerConfig, evidence: Iterable[Evidence],
                      chunks: Iterable[Chunk], *, smooth: bool = True) -> tuple[list[Chunk], StreamClocks]:
    """A recording's raw chunks corrected by a ``StreamClocks`` rebuilt from its clock config: two-sided, or as
    the agent did live (``smooth=False``).  The one offline correction of ``synchub align``, the demo and
    ``synchub bench sync``."""
    clocks = StreamClocks(infos, config)
    return replay(clocks, chunks, evidence, smooth=smooth), clocks
