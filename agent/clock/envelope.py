"""The arrival-time envelope: every sample arrives after it was taken, so ``host - device`` lies *above* the true
offset.  Pure.

Per block of device time (1 s) the minimum is kept (a min-filter, so irregular streams and streams that drop samples
need nothing special), and the offset line is the lower convex hull's edge under the window's centre (the
linear-programming clock-skew estimator, ``hull_line``).  Biased late by the link's minimum latency, which no
arrival-only method can see; ``Envelope.spread`` is the uncertainty that goes with it.

Offline (``synchub align``) every block minimum is kept for the two-sided ``smooth``; the live agent, which never
smooths, passes ``keep_ns`` and keeps only the minima the line and the bounds look at (a window and a little more), so a
run of weeks holds as many as a run of minutes.
"""

from __future__ import annotations

import bisect

import numpy as np

#: The least 1-sigma ``Envelope.slope`` claims: a link's latency floor may wander (5 ppm = 5 us per second).
SLOPE_SIGMA_FLOOR = 5e-6


class Envelope:
    """Lower envelope of (device time, host - device): per-block minima and a lower-hull line."""

    def __init__(self, block_ns: int, window_ns: int, keep_ns: int | None = None):
        self.block_ns = block_ns
        self.window_ns = window_ns
        # minima older than this behind the newest are let go (None: all kept, for ``smooth``)
        self.keep_ns = None if keep_ns is None else max(int(keep_ns), int(window_ns), 16 * int(block_ns))
        self.d: list[float] = []  # block minima (device time rel, offset rel)
        self.m: list[float] = []
        self.closed = 0  # blocks closed so far (``d`` may hold fewer: see ``keep_ns``)
        self._cur_block: int | None = None
        self._cur: tuple[float, float] | None = None
        self.n = 0
        self.line: tuple[float, float, float] | None = None  # (d_c, a, b)
        self._spread = 1e6
        self._lat = 0.0
        self._smooth_cache: tuple | None = None

    def add(self, d: np.ndarray, m: np.ndarray) -> None:
        if len(d) == 0:
            return
        self.n += len(d)
        b0, b1 = int(d[0] // self.block_ns), int(d[-1] // self.block_ns)
        if b0 == b1:  # the usual case: a chunk within one block
            runs = [(b0, 0, len(d))]
        else:
            blocks = np.floor_divide(d, self.block_ns).astype(np.int64)
            uniq, starts = np.unique(blocks, return_index=True)
            ends = np.append(starts[1:], len(d))
            runs = zip(uniq.tolist(), starts.tolist(), ends.tolist(), strict=False)
        for b, s, e in runs:
            i = s + int(np.argmin(m[s:e]))
            point = (float(d[i]), float(m[i]))
            if self._cur_block is not None and b != self._cur_block:
                self._close()
                self._cur = None
            if self._cur is None or point[1] < self._cur[1]:
                self._cur = point
            self._cur_block = b
        if self.line is None and self._cur is not None:
            self.line = (self._cur[0], self._cur[1], 0.0)
        # the typical latency above the envelope: the scale of what arrival times cannot resolve
        dc, a, b = self.line
        above = float(m.sum()) / len(m) - (a + b * (float(d.sum()) / len(d) - dc))
        self._lat += 0.01 * (max(above, 0.0) - self._lat) if self.n > len(d) else max(above, 0.0) - self._lat

    def _close(self) -> None:
        if self._cur is None:
            return
        self.d.append(self._cur[0])
        self.m.append(self._cur[1])
        self.closed += 1
        if self.keep_ns is not None and self.d[-1] - self.d[0] > 2 * self.keep_ns:  # amortized: at most twice kept
            i = bisect.bisect_left(self.d, self.d[-1] - self.keep_ns)
            del self.d[:i], self.m[:i]
        if self.closed > 8 and self.closed % 4:  # the line moves slowly: refit every 4th block
            return
        lo = self._cur[0] - self.window_ns
        i0 = bisect.bisect_left(self.d, lo)
        wd, wm = np.asarray(self.d[i0:]), np.asarray(self.m[i0:])
        self.line = hull_line(wd, wm)
        dc, a, b = self.line
        self._spread = float(max(np.median(np.abs(wm - (a + b * (wd - dc)))) * 3, 1e6))

    def upper_bound(self, d: float, slope: float, span: float, slack: float) -> float | None:
        """The tightest upper bound on the offset at ``d`` from the recent block minima within ``span`` of it, each
        carried to ``d`` along ``slope`` with ``slack`` per ns of distance (the slope's uncertainty); None when none
        is near."""
        best = None
        pts = [(self.d[i], self.m[i]) for i in range(max(len(self.d) - 12, 0), len(self.d))]
        if self._cur is not None:
            pts.append(self._cur)
        for pd, pm in pts:
            dt = d - pd
            if abs(dt) <= span:
                v = pm + slope * dt + slack * abs(dt)
                if best is None or v < best:
                    best = v
        return best

    def bounds(self, d: np.ndarray, slack: float) -> np.ndarray:
        """Upper bounds on the offset at each of ``d``: every block minimum kept (a sample arrived after it was
        taken, so its host - device is above the offset then), carried to ``d`` with ``slack`` per ns of distance
        (the skew the offset may have meanwhile), the tightest of them; +inf with no minimum.  Unlike the hull
        line, which lies *below* the minima and, fitted through a few of a sparse stream, may tilt by thousands of
        ppm, this holds whatever the line does."""
        pd, pm = self.points()
        d = np.asarray(d, dtype=np.float64)
        if len(pd) == 0:
            return np.full(len(d), np.inf)
        return np.min(pm[None, :] + slack * np.abs(d[:, None] - pd[None, :]), axis=1)

    def slope(self, min_blocks: int = 8, floor: float = SLOPE_SIGMA_FLOOR) -> tuple[float, float] | None:
        """The line's slope (the device's skew: the link's latency floor does not change it) and its 1-sigma: the
        block minima's scatter above the line (robust) over their spread in device time, as for a least-squares
        line, at least ``floor`` (a latency floor that wanders).  None with fewer than ``min_blocks`` closed blocks
        in the window, or minima with no scatter at all (host stamps that are not arrivals: a file's, or host =
        device, say nothing of the skew)."""
        if self.line is None or self.closed < min_blocks:
            return None
        lo = bisect.bisect_left(self.d, self.d[-1] - self.window_ns) if self.d else 0
        return _slope_sd(np.asarray(self.d[lo:]), np.asarray(self.m[lo:]), self.line, min_blocks, floor)

    def slope_over(self, d_lo: float, d_hi: float, min_blocks: int = 8,
                   floor: float = SLOPE_SIGMA_FLOOR) -> tuple[float, float] | None:
        """``slope`` of the hull line through the block minima kept between device times ``d_lo`` and ``d_hi``
        (the two-sided path: the skew over a span of the recording, every arrival of it seen); None as ``slope``."""
        i0, i1 = bisect.bisect_left(self.d, d_lo), bisect.bisect_right(self.d, d_hi)
        wd, wm = np.asarray(self.d[i0:i1]), np.asarray(self.m[i0:i1])
        if len(wd) < min_blocks:
            return None
        return _slope_sd(wd, wm, hull_line(wd, wm), min_blocks, floor)

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        d, m = list(self.d), list(self.m)
        if self._cur is not None:
            d.append(self._cur[0])
            m.append(self._cur[1])
        return np.asarray(d), np.asarray(m)

    def spread(self) -> float:
        """A scale for the uncertainty: the larger of 3x the median height of the window's block minima above the
        line and the mean latency above the envelope (1 ms at least).  The link's minimum latency, the real bias, is
        invisible to arrival times; on links whose latency varies it is of the order of that variation."""
        return max(self._spread, self._lat)

    def predict(self, d: np.ndarray) -> np.ndarray:
        dc, a, b = self.line
        return a + b * (d - dc)

    def smooth(self, d: np.ndarray) -> np.ndarray:
        """Offline: a line per window centred every window/4, interpolated between (computed once per state of the
        envelope: every chunk of a recording is mapped with the same lines)."""
        key = (self.closed, self._cur)
        if self._smooth_cache is None or self._smooth_cache[0] != key:
            pd, pm = self.points()
            self._smooth_cache = (key, None if len(pd) < 3 else self._smooth_lines(pd, pm))
        if self._smooth_cache[1] is None:
            return self.predict(d)
        lines = self._smooth_cache[1]
        if lines[0] == "one":
            _, dc, a, b = lines
            return a + b * (d - dc)
        _, centres, vals = lines
        out = np.interp(d, centres, vals)
        # extrapolate with the end slopes
        lo, hi = d < centres[0], d > centres[-1]
        s0 = (vals[1] - vals[0]) / (centres[1] - centres[0])
        s1 = (vals[-1] - vals[-2]) / (centres[-1] - centres[-2])
        out[lo] = vals[0] + s0 * (d[lo] - centres[0])
        out[hi] = vals[-1] + s1 * (d[hi] - centres[-1])
        return out

    def _smooth_lines(self, pd: np.ndarray, pm: np.ndarray) -> tuple:
        span = pd[-1] - pd[0]
        if span <= self.window_ns / 2:  # shorter than a window: one hull line through all of it
            return ("one", *hull_line(pd, pm))
        half = self.window_ns / 2
        # centres inside the data only: a hull edge fitted beyond the last block is an extrapolation of two points
        centres = np.linspace(pd[0], pd[-1], int(np.ceil(span / (self.window_ns / 4))) + 1)
        vals = []
        for c in centres:
            sel = (pd >= c - half) & (pd <= c + half)
            if sel.sum() < 2:
                sel = np.argsort(np.abs(pd - c))[:2]
            # the line closest on average to the window's block minima (as live), evaluated at the centre; the hull
            # edge right under an end point is set by one or two minima and biased by their noise
            dc, a, b = hull_line(pd[sel], pm[sel])
            vals.append(a + b * (c - dc))
        return ("many", centres, np.asarray(vals))


def _slope_sd(wd: np.ndarray, wm: np.ndarray, line, min_blocks: int, floor: float) -> tuple[float, float] | None:
    """(slope, 1-sigma) of ``line`` (x_c, a, b) through block minima ``wd``, ``wm`` (``Envelope.slope``)."""
    if len(wd) < min_blocks:
        return None
    dc, a, b = line
    res = wm - (a + b * (wd - dc))
    scatter = 1.4826 * float(np.median(np.abs(res - np.median(res))))
    if not scatter >= 1.0:  # (ns)
        return None
    sd = scatter * float(np.sqrt(12.0 / len(wd))) / max(float(wd[-1] - wd[0]), 1.0)
    return b, max(sd, floor)


def hull_line(x: np.ndarray, y: np.ndarray, centre: float | None = None) -> tuple[float, float, float]:
    """The lower convex hull's edge under ``centre`` (default: the mean x): the line below every point that is
    closest to them on average.  Returns (x_c, y at x_c, slope)."""
    if len(x) == 1:
        return float(x[0]), float(y[0]), 0.0
    xc = float(np.mean(x)) if centre is None else float(centre)
    hull: list[tuple[float, float]] = []
    for px, py in zip(x.tolist(), y.tolist(), strict=False):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1) <= 0:
                hull.pop()
            else:
                break
        hull.append((px, py))
    if len(hull) == 1:
        return hull[0][0], hull[0][1], 0.0
    for (x1, y1), (x2, y2) in zip(hull[:-1], hull[1:], strict=False):
        if x2 >= xc or (x2, y2) == hull[-1]:
            if x2 == x1:
                return x1, min(y1, y2), 0.0
            b = (y2 - y1) / (x2 - x1)
            return xc, y1 + b * (xc - x1), b
    return hull[-1][0], hull[-1][1], 0.0  # pragma: no cover
