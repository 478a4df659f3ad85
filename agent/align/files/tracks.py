"""Per stream of an input file: what the first pass learns and how its times reach the file's own clock.

A ``StreamTrack`` sees the stream's pieces twice.  First (``gather``): counts and time range, the dejitter lines
of a regular stream (``JitterFit``), the pulses of its sync channel (``PulseFinder``), its XDF ClockOffsets, and its
*timeline* (``TimelineSplit``: a new one where the device time goes back by more than ``TIMELINE_BACK_NS`` and
stays back: a clock that reset; a few samples that go back alone are out of time order and keep theirs).
Then ``build`` makes the within-file mapping: an XDF stream with ClockOffsets through ``XdfOffsetClock`` (pyxdf's
segments, the agent's ``ClockModel``); a synchub recording's stream through the agent's ``StreamClocks`` (the
input's, fed by ``StreamFeeder``); any other stream is on its file's clock already.  Second (``file_times``): the
raw device times of each piece, dejittered where a line was fitted, mapped onto the file's clock, with 1-sigma.

Pure: pieces in, arrays out.  Sync channels: ``readers.base.SYNC_LABELS`` name the channels used without being asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from synchub.agent.clock.dejitter import JitterFit
from synchub.agent.clock.xdf_clock import XdfOffsetClock
from synchub.agent.core.stream import Chunk
from synchub.agent.formats.readers.base import (
    FileStream,
    InputOptions,
    Piece,
    sync_channel,
)

from .links import dense_map
from .sync_edges import PulseFinder

NS = 1_000_000_000
TIMELINE_BACK_NS = NS
#: A step back starts a new timeline once this many samples after it stay back too; fewer (a marker logged late,
#: rows of merged logs) are out of time order and keep their timeline (a reset this close to the end counts so too).
RESET_CONFIRM = 3
#: An edge whose crossing lies within this fraction of a sample of half way between two samples is a digital step.
STEP_FRACTION = 0.05
#: Samples a sound pulse may fall silent for and still be one pulse (s): a ringing click, a tone's zero crossings.
MERGE_S = {"click": 0.002, "tone": 0.010}


@dataclass
class Edge:
    """A sync pulse's rising edge: device time (dejittered where the stream was), the host time of the sample
    after it (synchub recordings), its timeline, width (ns) and sample index."""

    t_ns: int
    host_ns: int
    timeline: int
    width_ns: int
    index: float


class TimelineSplit:
    """Where a stream's device clock starts a new timeline, from its samples in file order (pure).

    ``feed(t)`` each piece, ``finish()`` at the end; then ``starts`` (the position in file order where each timeline
    after the first begins), ``out_of_order`` (samples that went back alone, or one that jumped ahead alone and the
    stream went on from before it: kept on their timeline) and ``timeline_of(positions)``.  While pieces are still
    fed, ``timeline_of`` is provisional for the samples after an unconfirmed step back."""

    def __init__(self, back_ns: int = TIMELINE_BACK_NS, confirm: int = RESET_CONFIRM):
        self.back_ns, self.confirm = int(back_ns), int(confirm)
        self.starts: list[int] = []
        self.out_of_order = 0
        self.fed = 0  # samples fed so far (the next one's position)
        self._top: int | None = None  # the latest time of the current timeline
        self._pending: list[tuple[int, int]] = []  # (index, time) of samples back from it, not yet confirmed
        self._jump: tuple[int, int] | None = None  # (index, the top before it) of a sample that raised it > back_ns

    def feed(self, t: np.ndarray) -> None:
        t = np.asarray(t, dtype=np.int64)
        pos, self.fed = self.fed, self.fed + len(t)
        if len(t) == 0:
            return
        if not self._pending:  # the usual case, vectorized: no step back in this piece
            first = t[0] if self._top is None else self._top
            before = np.maximum.accumulate(np.concatenate([[first], t]))[:-1]  # the latest time before each
            if not np.any(before - t > self.back_ns):
                self._top = int(max(before[-1], t[-1]))
                self._jump = (pos + len(t) - 1, int(before[-1])) if t[-1] - before[-1] > self.back_ns else None
                return
        for k, x in enumerate(t.tolist()):
            self._step(pos + k, x)

    def _step(self, i: int, x: int) -> None:
        if self._pending:
            if x < self._top - self.back_ns:
                self._pending.append((i, x))
                if len(self._pending) > self.confirm:  # it stayed back: the clock reset ...
                    if not self._ahead_alone():
                        self.starts.append(self._pending[0][0])
                        self._top = max(v for _, v in self._pending)
                    self._pending = []
                return
            self.out_of_order += len(self._pending)  # back on the timeline: those went back alone
            self._pending = []
        if self._top is not None and self._top - x > self.back_ns:
            self._pending = [(i, x)]
        else:
            self._jump = (i, self._top) if self._top is not None and x - self._top > self.back_ns else None
            self._top = x if self._top is None else max(self._top, x)

    def _ahead_alone(self) -> bool:
        """... unless the sample just before them jumped ahead and they go on from where it jumped: that one sample
        was ahead of its time (a glitch), counted, and the timeline goes on."""
        j, self._jump = self._jump, None
        if j is None or j[0] != self._pending[0][0] - 1 or min(v for _, v in self._pending) < j[1] - self.back_ns:
            return False
        self.out_of_order += 1
        self._top = max(j[1], *(v for _, v in self._pending))
        return True

    def finish(self) -> None:
        if self._pending and not self._ahead_alone():
            self.out_of_order += len(self._pending)
        self._pending = []

    def timeline_of(self, index: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(self.starts, dtype=np.int64), index, side="right").astype(np.int64)


def _can_drop(header) -> bool:
    """pyxdf's ``_stream_can_drop_samples``: desc/synchronization/can_drop_samples is true (no dejittering)."""
    try:
        return str(header["desc"][0]["synchronization"][0]["can_drop_samples"][0]).lower() == "true"
    except (KeyError, IndexError, TypeError):
        return False


class StreamTrack:
    """One stream of one input (see the module docstring)."""

    def __init__(self, fs: FileStream, options: InputOptions, input_kind: str, single: bool):
        self.fs = fs
        self.key = fs.key
        self.info = fs.info
        self.options = options
        rate = float(fs.info.nominal_srate)
        self.period_ns = int(NS / rate) if rate > 0 else 0
        can_drop = _can_drop(fs.meta.get("header"))
        self.jitter = JitterFit(rate) if (rate > 0 and options.dejitter and input_kind in ("xdf", "table")
                                          and not can_drop) else None
        self.sync: tuple[int, str, int | None] | None = sync_channel(fs, options, single)
        self.finder: PulseFinder | None = None  # made with the first samples (an irregular stream's rate)
        self.pulses: list[tuple[float, int, int, int, float]] = []  # (index, raw t, host, timeline, width samples)
        self._pulse_at: list[int] = []  # each pulse's sample, by position in file order (its timeline at finish)
        self.offsets: list[tuple[int, int]] = []
        self.xdf: XdfOffsetClock | None = None
        self.clocks = None  # the input's StreamClocks for a synchub recording
        self.n = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.split = TimelineSplit()
        self._pos = 0  # second pass: samples seen so far (their position in file order; the first pass: split.fed)
        self.pieces = 0

    @property
    def timelines(self) -> int:
        """Clock resets seen (timelines after the first)."""
        return len(self.split.starts)

    def _timelines(self, p: Piece) -> np.ndarray:
        n, self._pos = len(p.device_ns), self._pos + len(p.device_ns)
        return self.split.timeline_of(np.arange(self._pos - n, self._pos, dtype=np.int64))

    # ---- first pass
    def gather(self, p: Piece) -> None:
        t = p.device_ns
        if len(t) == 0:
            return
        self.pieces += 1
        self.split.feed(t)
        self.n += len(t)
        self.first_ns = int(t.min()) if self.first_ns is None else min(self.first_ns, int(t.min()))
        self.last_ns = int(t.max()) if self.last_ns is None else max(self.last_ns, int(t.max()))
        if self.jitter is not None:
            self.jitter.add(p.seq, t)
        if not self.period_ns and len(t) >= 3:  # a table without a nominal rate: its typical sample interval
            self.period_ns = max(int(np.median(np.diff(t))), 0)
        if self.sync is not None and self.finder is None:
            ch, kind, _ = self.sync
            per = NS / self.period_ns if self.period_ns else 0.0
            o = self.options
            self.finder = PulseFinder(kind, threshold=o.sync_threshold, min_width=o.sync_min_width_s * per,
                                      max_width=o.sync_max_width_s * per, merge=int(MERGE_S.get(kind, 0) * per))
        if self.finder is not None:
            x = np.asarray(p.data)[:, self.sync[0]] if np.asarray(p.data).ndim == 2 else np.asarray(p.data)
            if self.sync[2] is not None:  # one line of a digital word (a sample that is not a number stays so)
                v = np.asarray(x, dtype=np.float64)
                ok = np.isfinite(v)
                x = np.where(ok, (np.rint(np.where(ok, v, 0.0)).astype(np.int64) >> self.sync[2]) & 1, np.nan)
            for q in self.finder.feed(p.seq, x, t, p.host_ns):
                # the pulse's sample (in this piece or, ended here, an earlier one): its timeline at ``finish``
                self._pulse_at.append(max(self.split.fed - len(t) + int(q.index) - p.seq, 0))
                self.pulses.append((q.index, q.t_ns, q.host_ns, 0, q.width))

    def finish(self) -> None:
        self.split.finish()
        if self.finder is not None:
            for q in self.finder.finish():
                self._pulse_at.append(self.split.fed - 1)
                self.pulses.append((q.index, q.t_ns, q.host_ns, 0, q.width))
        if self.split.starts:  # each pulse's timeline, now that every step back is decided
            tl = self.split.timeline_of(np.asarray(self._pulse_at, dtype=np.int64))
            self.pulses = [(*q[:3], int(k), q[4]) for q, k in zip(self.pulses, tl, strict=True)]

    def build(self, window_s: float = 120.0) -> None:
        """The within-file model, once the first pass is over."""
        if self.offsets:
            arr = np.asarray(self.offsets, dtype=np.int64)
            self.xdf = XdfOffsetClock(self.key, arr[:, 0], arr[:, 1], window_s)
            self.fs.on_file_clock = False

    # ---- edges
    def edges(self) -> list[Edge]:
        """The sync edges, dejittered where the stream was, on the stream's device clock."""
        if not self.pulses:
            return []
        idx = np.array([p[0] for p in self.pulses])
        t = np.array([p[1] for p in self.pulses], dtype=np.int64)
        if self.jitter is not None:
            line, ok = self.jitter.at(idx)
            t = np.where(ok, line, t)
        per = self.period_ns or 0
        return [Edge(int(ti), p[2], p[3], int(round(p[4] * per)), p[0]) for ti, p in zip(t.tolist(), self.pulses,
                                                                                         strict=True)]

    def edge_file_times(self, edges: list[Edge]) -> tuple[np.ndarray, np.ndarray]:
        """The edges on the file's clock and their 1-sigma (ns)."""
        d = np.array([e.t_ns for e in edges], dtype=np.int64)
        if self.xdf is not None:
            self.xdf.restart()
            ref, unc, _ = self.xdf.map(d)
            self.xdf.restart()
            return ref, unc
        if self.clocks is not None:
            h = np.array([e.host_ns for e in edges], dtype=np.int64)
            c = self.clocks.correct(Chunk(self.key, 0, np.zeros((len(d), 1)), d, h), smooth=True)
            return c.ref_ns, c.unc_ns
        return d, np.zeros(len(d), dtype=np.int64)

    def step_sigma_ns(self, edges: list[Edge]) -> float:
        """``edge_sigma_ns`` where the edges are steps from one sample to the next (a digital line: every crossing
        half way between two samples), so that each edge's timing error is the quantization alone; 0 where they
        are interpolated crossings of a slower rise (a photodiode, a click), whose error is not."""
        frac = np.array([e.index for e in edges], dtype=np.float64) % 1.0
        return self.edge_sigma_ns if len(frac) and np.mean(np.abs(frac - 0.5) < STEP_FRACTION) >= 0.9 else 0.0

    @property
    def edge_sigma_ns(self) -> float:
        """1-sigma timing error of one edge: a sampled step lands anywhere within a sample period."""
        return max(self.period_ns / math.sqrt(12.0), 1_000.0)

    # ---- second pass
    def restart(self) -> None:
        self._pos = 0
        if self.xdf is not None:
            self.xdf.restart()

    def file_times(self, p: Piece) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
        """(device time after dejittering, file-clock time, its 1-sigma, timeline, method) of a piece's samples,
        pieces in file order."""
        t = p.device_ns
        tl = self._timelines(p)
        d = self.jitter.apply(p.seq, t) if self.jitter is not None else t
        if self.xdf is not None:
            segs = self.xdf.model_segment_of(d)
            model = self.xdf.model
            ref, unc = dense_map(lambda tt, ss: model.map(tt, ss, smooth=True)[:2], d, segs)
            return d, ref, unc, tl, "probes"
        if self.clocks is not None:
            c = self.clocks.correct(Chunk(self.key, p.seq, np.zeros((len(d), 0)), d,
                                          p.host_ns if p.host_ns is not None else d), smooth=True)
            return d, c.ref_ns, c.unc_ns, tl, c.method
        return d, d, np.zeros(len(d), dtype=np.int64), tl, "identity"
