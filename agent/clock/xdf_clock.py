"""XDF ClockOffsets as clock evidence: pyxdf's reset detection and robust fits, fed to the agent's ClockModel.

An XDF stream's ClockOffset chunks are LSL ``time_correction`` results: round trips between the recorder and the
stream's host, each giving, at ``collection`` (the stream's clock), the ``offset`` to add to read the recorder's
clock.  pyxdf (``_clock_sync``) cuts them into segments at clock resets (``_detect_clock_resets``: the collection
time going back, or a time glitch together with a value glitch, both judged against the median and MAD of the
differences), fits a Huber line per segment (``_robust_fit``, ADMM, values scaled by the winsorizing threshold) and
maps each sample by the segment whose clock-offset range it is closest to.

Here the same reset detection and the same sample-to-segment rule are used (``detect_clock_resets``,
``SegmentAssigner``, the thresholds are pyxdf's defaults), and the same Huber fit (``huber_fit``) measures each
segment's scatter, but the mapping is the agent's ``ClockModel``: every offset is a pair (stream time, recorder time
= stream time + offset) with its segment's robust scatter (1.4826 MAD of the Huber residuals) as 1-sigma, fed like a
trigger edge pair (``add_edges``), one model per stream with a ``reset_detected`` at each pyxdf segment.  (LSL's
offsets are round-trip results; fed as ``Probe``s instead, the model's wander estimate lets one early late round
trip pull a whole segment by milliseconds, so the trigger-pair path with its consensus start and two-sided outlier
rejection is used.)  The model then follows a wandering oscillator (its bank of
random walks includes the straight line pyxdf fits), gates outliers, and gives every mapped time a 1-sigma.  Where
its own step detection splits a pyxdf segment, samples take the model segment whose start they follow.  An offset
that stands out from its neighbours (``spikes``: a late round trip; pyxdf's Huber loss down-weights it) is left out
and counted.

Pure: arrays in, arrays out.  Times are int64 ns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .model import ClockModel

NS = 1_000_000_000
#: pyxdf's defaults (``load_xdf``): reset thresholds and the Huber fit's winsorizing threshold (s).
RESET_STDS, RESET_SECONDS, RESET_OFFSET_STDS, RESET_OFFSET_SECONDS = 5.0, 5.0, 10.0, 1.0
WINSOR_S = 0.0001
#: Smallest 1-sigma given to an offset (ns).
MIN_SIGMA_NS = 3_000
#: An offset further than this many robust sigmas (and ``SPIKE_MIN_NS``) from the median of its neighbours (the
#: Huber line taken out) is a late round trip, not the clock: it is left out and counted (``rejected``).
SPIKE_SIGMAS, SPIKE_MIN_NS, SPIKE_NEIGHBOURS = 6.0, 200_000, 5


def _glitches(diff: np.ndarray, stds: float, secs: float) -> np.ndarray:
    med = np.median(diff)
    dev = diff - med
    mad = np.median(np.abs(dev)) + np.finfo(float).eps
    return (np.abs(dev / mad) > stds) & (np.abs(dev) > secs)


def detect_clock_resets(times_s: np.ndarray, values_s: np.ndarray, stds: float = RESET_STDS,
                        secs: float = RESET_SECONDS, offset_stds: float = RESET_OFFSET_STDS,
                        offset_secs: float = RESET_OFFSET_SECONDS) -> list[tuple[int, int]]:
    """pyxdf's ``_detect_clock_resets``: inclusive ``(first, last)`` index ranges of the offsets between resets."""
    t = np.asarray(times_s, dtype=np.float64)
    v = np.asarray(values_s, dtype=np.float64)
    if len(t) <= 1:
        return [(0, len(t) - 1)] if len(t) else []
    td, vd = np.diff(t), np.diff(v)
    resets = (td < 0) | (_glitches(td, stds, secs) & _glitches(vd, offset_stds, offset_secs))
    br = np.flatnonzero(resets)
    starts = np.concatenate([[0], br + 1])
    ends = np.concatenate([br, [len(t) - 1]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def spikes(rel_s: np.ndarray, y_s: np.ndarray, c0: float, c1: float) -> np.ndarray:
    """True for offsets that stand out from their neighbours (an isolated late round trip), the line taken out;
    a clock that wanders moves its neighbours with it and is kept."""
    y = (np.asarray(y_s) - (c0 + c1 * np.asarray(rel_s))) * NS
    n = len(y)
    if n < 5:
        return np.zeros(n, dtype=bool)
    k = SPIKE_NEIGHBOURS
    pad = np.concatenate([np.full(k, np.nan), y, np.full(k, np.nan)])
    win = np.lib.stride_tricks.sliding_window_view(pad, 2 * k + 1).copy()
    win[:, k] = np.nan  # the neighbours, not the point itself
    local = np.nanmedian(win, axis=1)
    dev = y - local
    sigma = 1.4826 * float(np.median(np.abs(dev - np.median(dev))))
    return np.abs(dev) > max(SPIKE_SIGMAS * sigma, SPIKE_MIN_NS)


def huber_fit(times_s: np.ndarray, values_s: np.ndarray, winsor_s: float = WINSOR_S,
              iters: int = 1000) -> tuple[float, float]:
    """pyxdf's ``_robust_fit`` on a segment: ``(intercept, slope)`` with offset = intercept + slope * time (s),
    Huber loss at ``winsor_s`` (ADMM, ``rho = 1``)."""
    t = np.asarray(times_s, dtype=np.float64)
    v = np.asarray(values_s, dtype=np.float64)
    if len(t) == 1:
        return float(v[0]), 0.0
    A = np.column_stack([np.ones(len(t)), t / winsor_s])
    y = v / winsor_s
    shift = np.min(A[:, 1])
    A[:, 1] -= shift
    Aty = A.T @ y
    L = np.linalg.cholesky(A.T @ A)
    U = L.T
    z = np.zeros_like(y)
    u = z
    x = np.zeros(2)
    for _ in range(iters):
        x = np.linalg.solve(U, np.linalg.solve(L, Aty + A.T @ (z - u)))
        d = A @ x - y + u
        inv = np.zeros_like(d)
        np.divide(1, d, out=inv, where=d != 0)
        z = 0.5 * d + 0.5 * np.maximum(0.0, 1 - 2 * np.abs(inv)) * d
        u = d - z
    x[0] -= x[1] * shift
    return float(x[0] * winsor_s), float(x[1])


class SegmentAssigner:
    """pyxdf's rule for which clock segment a sample belongs to, applied piece by piece in file order: samples stay
    in segment k until the first one closer to segment k+1's first offset than to segment k's last."""

    def __init__(self, ranges_ns: list[tuple[int, int]]):
        self.ranges = ranges_ns  # (first collection time, last collection time) per segment, ns
        self.k = 0

    def assign(self, device_ns: np.ndarray) -> np.ndarray:
        t = np.asarray(device_ns, dtype=np.int64)
        out = np.empty(len(t), dtype=np.int32)
        a = 0
        while a < len(t):
            if self.k >= len(self.ranges) - 1:
                out[a:] = max(self.k, 0)
                break
            end, nxt = self.ranges[self.k][1], self.ranges[self.k + 1][0]
            rest = t[a:]
            far = np.abs(rest - end) >= np.abs(rest - nxt)
            j = int(np.argmax(far)) if far.any() else len(rest)
            out[a:a + j] = self.k
            a += j
            if a < len(t):
                self.k += 1
        return out


@dataclass
class OffsetSegment:
    """One pyxdf segment of a stream's offsets: its index range, pyxdf's Huber line and the scatter around it."""

    first: int
    last: int
    t0_ns: int
    t1_ns: int
    intercept_s: float
    slope: float
    sigma_ns: float
    model_segments: list[int] = field(default_factory=list)
    spikes: int = 0


class XdfOffsetClock:
    """One XDF stream's device clock -> the recorder's clock, from its ClockOffsets (see the module docstring)."""

    def __init__(self, name: str, collection_ns, offset_ns, window_s: float = 120.0):
        t = np.asarray(collection_ns, dtype=np.int64)
        v = np.asarray(offset_ns, dtype=np.int64)
        if len(t) == 0:
            raise ValueError(f"{name}: no clock offsets")
        self.name = name
        self.times_ns, self.values_ns = t, v
        self.model = ClockModel(name, window_s=window_s, consensus=1)
        self.rejected = 0  # offsets left out as spikes
        ranges = detect_clock_resets(t / NS, v / NS)
        self.segments: list[OffsetSegment] = []
        for k, (a, b) in enumerate(ranges):
            ts, vs = t[a:b + 1], v[a:b + 1]
            rel = (ts - ts[0]) / NS  # the fit relative to the segment's start: no precision lost to 1e5 s times
            try:
                c0, c1 = huber_fit(rel, (vs - vs[0]) / NS)
            except np.linalg.LinAlgError:  # all offsets at one collection time
                c0, c1 = float(np.median((vs - vs[0]) / NS)), 0.0
            res = (vs - vs[0]) / NS - (c0 + c1 * rel)
            sigma = 1.4826 * float(np.median(np.abs(res - np.median(res)))) * NS if len(res) > 2 else 0.0
            intercept = vs[0] / NS + c0 - c1 * ts[0] / NS
            seg = OffsetSegment(a, b, int(ts.min()), int(ts.max()), intercept, c1, sigma)
            bad = spikes(rel, (vs - vs[0]) / NS, c0, c1)
            seg.spikes = int(bad.sum())
            self.rejected += seg.spikes
            self._feed(seg, ts[~bad], vs[~bad], new=k > 0)
            self.segments.append(seg)
        self.assigner = SegmentAssigner([(int(t[s.first]), int(t[s.last])) for s in self.segments])

    def _feed(self, seg: OffsetSegment, ts: np.ndarray, vs: np.ndarray, new: bool) -> None:
        m = self.model
        if new:
            m.reset_detected(int(ts[0]), int(ts[0] + vs[0]))
        first = len(m.segments) - 1 if new else 0
        m.add_edges(ts, ts + vs, max(seg.sigma_ns, MIN_SIGMA_NS))
        seg.model_segments = list(range(max(first, 0), len(m.segments)))

    def restart(self) -> None:
        """Before a new pass over the samples (the segment assigner is sequential)."""
        self.assigner.k = 0

    def model_segment_of(self, device_ns: np.ndarray) -> np.ndarray:
        """The model segment of samples given in file order (pyxdf's segment, then the model's own splits)."""
        ks = self.assigner.assign(device_ns)
        out = np.empty(len(ks), dtype=np.int32)
        for k in np.unique(ks).tolist():
            sel = ks == k
            mine = self.segments[k].model_segments or [0]
            starts = np.array([self.model.segments[i].dev0 for i in mine], dtype=np.int64)
            j = np.clip(np.searchsorted(starts, device_ns[sel], side="right") - 1, 0, len(mine) - 1)
            out[sel] = np.asarray(mine, dtype=np.int32)[j]
        return out

    def map(self, device_ns, segments=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Recorder-clock times, 1-sigma and model segment of device times (given in file order), two-sided."""
        d = np.asarray(device_ns, dtype=np.int64)
        segs = self.model_segment_of(d) if segments is None else segments
        return self.model.map(d, segs, smooth=True)

    def pyxdf_map(self, device_ns, segment_index: np.ndarray) -> np.ndarray:
        """What pyxdf's ``_clock_sync`` gives (its Huber line of each sample's segment), ns."""
        d = np.asarray(device_ns, dtype=np.int64)
        out = np.empty(len(d), dtype=np.float64)
        for k, seg in enumerate(self.segments):
            sel = segment_index == k
            ds = d[sel] / NS
            out[sel] = (ds + seg.intercept_s + seg.slope * ds) * NS
        return np.rint(out).astype(np.int64)

    def report(self) -> list[dict]:
        st = self.model.segments_info()
        return [{"offsets": s.last - s.first + 1, "from_ns": s.t0_ns, "to_ns": s.t1_ns,
                 "huber_offset_ms": (s.intercept_s + s.slope * s.t0_ns / NS) * 1e3, "huber_drift_ppm": s.slope * 1e6,
                 "scatter_us": s.sigma_ns / 1e3, "spikes_left_out": s.spikes, "model_segments": [st[i]["cause"] for i in s.model_segments]}
                for s in self.segments]

    def residuals(self) -> tuple[np.ndarray, np.ndarray]:
        """Each ClockOffset minus the model's offset at its collection time (ns), with those times."""
        res = []
        for seg in self.segments:
            ts = self.times_ns[seg.first:seg.last + 1]
            vs = self.values_ns[seg.first:seg.last + 1]
            mine = np.asarray(seg.model_segments or [0], dtype=np.int32)
            starts = np.array([self.model.segments[i].dev0 for i in mine], dtype=np.int64)
            j = np.clip(np.searchsorted(starts, ts, side="right") - 1, 0, len(mine) - 1)
            ref, _, _ = self.model.map(ts, mine[j], smooth=True)
            res.append(vs - (ref - ts))
        return self.times_ns.copy(), np.concatenate(res) if res else np.zeros(0, np.int64)
