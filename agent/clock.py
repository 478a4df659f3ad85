"""ClockModel: one stream's device clock mapped onto the reference clock, with drift and an uncertainty.

Pure (no I/O, no threads).  Evidence, each with its own noise model:

* **trigger edges** (device time, reference time, 1-sigma edge jitter) and **aligner offsets** (``OffsetEstimate``,
  ref - device with a sigma) go into a Kalman filter on (offset, skew) whose skew follows a random walk (thermal
  drift).  The random-walk intensity is not known in advance, so a small bank of filters with intensities from 0
  (a perfect crystal: the filter is then exactly the least-squares line) to 30 ppm/sqrt(h) runs side by side and
  the one with the highest likelihood of the data is used (a cheap multiple-model filter: 5 filters of 2 states).
  Innovations beyond ``gate_sigma`` of every filter are rejected and counted; a run of rejections that agree with
  each other restarts the filter (a step the model could not follow) rather than locking it out.
* **round-trip probes** (host send, device stamp, host receive): the device stamp lies between send and receive, so
  the offset lies in ``[send - device, receive - device]`` (widened by the device counter's tick, learnt as the gcd
  of the stamps).  Arrival times bound the offset from above too (a sample arrives after it was taken): the stream's
  recent arrival minima, carried to the probe's device time with the current skew, tighten the upper bound.  Probes
  whose band is not within a small margin of the lower envelope of the bands' widths over a sliding window (the
  last ``PROBE_RTT_KEEP`` probes, at most a quarter window) are dropped (min-RTT filtering, as LSL/Klipper/TICSync
  do; without arrivals the width is the round trip).  The centre of the remaining band goes to a second filter bank
  with variance ``halfwidth**2 / 3`` (uniform over the band) plus the *wander*: the scatter of the probes around
  the line beyond what their bands allow (a link or device whose offset moves at short time scales; estimated
  from the innovations).  A mapped time's 1-sigma adds the band's typical half-width (an asymmetric link biases the
  centre by up to that much, and no round trip can see it) and the wander (it does not average out for one
  event) to the line's own uncertainty.
* **arrival times only**: every sample arrives after it was taken, so ``host - device`` lies *above* the true
  offset.  Per second of device time the minimum is kept (a min-filter, so irregular streams and streams that drop
  samples need nothing special), and the offset line is the lower convex hull's edge under the window's centre (the
  linear-programming clock-skew estimator).  Biased late by the link's minimum latency, which no arrival-only method
  can see.

The best evidence a segment has wins (smallest predicted uncertainty: triggers/neural < probes < arrival); trigger
edges and aligner offsets are fused by variance in the same filter (``method`` "hybrid" when both are used).

**Segments.**  A device clock reset (device time going backwards, or jumping ahead by far more than the reference
advanced) starts a new segment with its own estimators: never a mapping across a reset.  ``reset_detected`` lets a
driver that knows about a reset say so.  Device times arrive unwrapped by the drivers; ``unwrap_ticks`` does the same
for raw 16/32-bit counters (and a missed wrap would look like a reset: a new segment, not a corrupt mapping).

**Cost.**  Updates are incremental: an edge or probe is one 2x2 Kalman step per filter of the bank, arrivals a min
per chunk and a hull over ~``window_s`` points once per second.  ``map(..., smooth=True)`` (the collector/offline
path) reruns the filters forward and backward over the stored evidence and fuses the two (a two-filter smoother).

Times are int64 ns; floats only inside the filters, relative to a per-segment origin.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .evidence import OffsetEstimate

NS = 1_000_000_000
#: Uncertainty reported where nothing at all is known about a segment (ns).
UNKNOWN_UNC_NS = 10**15

#: Random-walk intensities of the filter bank, ppm per sqrt(hour).
RW_BANK_PPM = (0.0, 0.03, 0.3, 3.0, 30.0)
#: Scales of the stated evidence variance the bank also tries (the stated jitter may be ~3x too large or ~10x too
#: small: a device that stamps edges with a coarse counter adds tick/sqrt(12) the trigger line cannot know of).
R_SCALES = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)

METHOD_ORDER = ("triggers", "hybrid", "neural", "probes", "arrival", "identity")
#: Round trips in the sliding window whose minimum is the min-RTT floor (also at most a quarter of ``window_s``).
PROBE_RTT_KEEP = 32


def _q_per_ns(ppm_per_sqrt_h: float) -> float:
    """Skew random-walk spectral density in 1/ns (skew is dimensionless)."""
    return (ppm_per_sqrt_h * 1e-6) ** 2 / (3600.0 * NS)


def unwrap_ticks(ticks, bits: int, last: int | None = None) -> tuple[np.ndarray, int]:
    """Unwrap a raw ``bits``-wide counter into a monotone int64 count.

    ``last`` is the previous unwrapped value (None at the start); returns ``(unwrapped, new_last)``.  A step
    backwards by more than half the range is a wrap; consecutive samples must be less than half a range apart.
    """
    t = np.asarray(ticks, dtype=np.int64)
    if len(t) == 0:
        return t.copy(), last if last is not None else 0
    mod = 1 << bits
    half = mod >> 1
    prev = np.empty_like(t)
    prev[1:] = t[:-1]
    if last is None:
        prev[0] = t[0]
        base = 0
    else:
        base = last - (last % mod)
        prev[0] = last % mod
    d = t - prev
    wraps = np.cumsum((d < -half).astype(np.int64) - (d > half).astype(np.int64))
    out = base + t + wraps * mod
    return out, int(out[-1])


# ------------------------------------------------------------------------------------------- Kalman bank
class _Bank:
    """K Kalman filters on x = (offset, skew) at device time ``t``, differing only in skew random-walk
    intensity ``q``.  Offsets are relative to the segment's origin (floats, ns)."""

    def __init__(self, qs: np.ndarray, skew_prior: float, gate_sigma: float, forget_s: float, rs=None,
                 step_n: int = 4):
        self.q = np.asarray(qs, dtype=float)
        self.rs = np.ones(len(self.q)) if rs is None else np.asarray(rs, dtype=float)  # measurement-noise scales
        self.K = len(self.q)
        self.skew_var0 = skew_prior**2
        self.gate = gate_sigma
        self.step_n = step_n
        self.forget_ns = forget_s * NS
        self.x = np.zeros((self.K, 2))
        self.P = np.zeros((self.K, 2, 2))
        self.t = 0.0
        self.ll = np.zeros(self.K)
        self.n = 0
        self.rejected = 0
        self.reinit = 0
        self._bad: list[tuple[float, float, float]] = []
        self.step: list[tuple[float, float, float]] = []  # set when a step was seen: the measurements after it
        self.nis = 1.0
        self._cache = None
        self.log_d: list[float] = []
        self.log_z: list[float] = []
        self.log_r: list[float] = []

    @property
    def best(self) -> int:
        return _parsimonious(self.ll)

    def _init(self, d: float, z: float, r: float) -> None:
        self.x[:] = (z, 0.0)
        self.P[:] = 0.0
        self.P[:, 0, 0] = r * self.rs
        self.P[:, 1, 1] = self.skew_var0
        self.t = d
        self.ll[:] = 0.0

    def _predict_to(self, d: float) -> None:
        dt = d - self.t
        if dt <= 0:
            return
        _predict(self.x, self.P, dt, self.q)
        self.t = d

    def update(self, d: float, z: float, r: float, log: bool = True) -> bool:
        """One measurement ``z`` = offset at device time ``d`` with variance ``r``.  False when gated out."""
        if self.n == 0:
            self._init(d, z, r)
            self.n = 1
            if log:
                self._log(d, z, r)
            return True
        fade = math.exp(-max(d - self.t, 0.0) / self.forget_ns) if self.forget_ns > 0 else 1.0
        if d >= self.t:
            self._predict_to(d)
            h1, extra = 0.0, 0.0
        else:  # a late measurement: relate it to the current state (no retrodiction of the state)
            h1 = d - self.t
            extra = self.q * abs(h1) ** 3 / 3
        x, P = self.x, self.P
        pred = x[:, 0] + h1 * x[:, 1]
        S = P[:, 0, 0] + 2 * h1 * P[:, 0, 1] + h1 * h1 * P[:, 1, 1] + r * self.rs + extra
        nu = z - pred
        norm = nu / np.sqrt(S)
        # gate: early on (few points, the stated sigma not yet checked) only what no filter of the bank can
        # explain; later what the filter in use cannot
        gate_norm = abs(norm[self.best]) if self.n >= 10 else float(np.min(np.abs(norm)))
        if self.n >= 3 and gate_norm > self.gate:
            self.rejected += 1
            self._bad.append((d, z, r))
            if len(self._bad) >= self.step_n and self._bad_agree():
                # a step the filters cannot follow (step_n rejections agreeing with each other, not noise):
                # the model starts a new segment from them
                self.reinit += 1
                self.step, self._bad = self._bad, []
            return False
        self._bad.clear()
        # normalized innovation squared of the filter in use: calibrates the reported uncertainty when the sigma
        # given with the evidence is off (1 when it is right)
        self.nis += 0.02 * (min(float(norm[self.best] ** 2), 25.0) - self.nis)
        # likelihood (with slow forgetting so that the bank can change its mind when the drift regime changes)
        self.ll = self.ll * fade - 0.5 * (norm**2 + np.log(S))
        k0 = P[:, 0, 0] + h1 * P[:, 0, 1]
        k1 = P[:, 0, 1] + h1 * P[:, 1, 1]
        K0, K1 = k0 / S, k1 / S
        x[:, 0] += K0 * nu
        x[:, 1] += K1 * nu
        p00 = P[:, 0, 0] - K0 * k0
        p01 = P[:, 0, 1] - K0 * k1
        p11 = P[:, 1, 1] - K1 * k1
        P[:, 0, 0], P[:, 0, 1], P[:, 1, 0], P[:, 1, 1] = p00, p01, p01, p11
        self.n += 1
        if log:
            self._log(d, z, r)
        return True

    def _bad_agree(self) -> bool:
        d = np.array([b[0] for b in self._bad])
        z = np.array([b[1] for b in self._bad])
        r = np.array([b[2] for b in self._bad])
        if len(np.unique(d)) < 2:
            return False
        A = np.vstack([np.ones_like(d), d - d.mean()]).T
        coef, *_ = np.linalg.lstsq(A, z, rcond=None)
        res = z - A @ coef
        return bool(np.all(np.abs(res) < 6 * np.sqrt(r) + 1.0))

    def _log(self, d, z, r) -> None:
        self.log_d.append(d)
        self.log_z.append(z)
        self.log_r.append(r)

    def predict(self, d: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Offset and its variance at device times ``d`` from the current state (filter ``k``, default best)."""
        k = self.best if k is None else k
        dt = d - self.t
        a = self.x[k, 0] + dt * self.x[k, 1]
        P = self.P[k]
        var = P[0, 0] + 2 * dt * P[0, 1] + dt * dt * P[1, 1] + self.q[k] * np.abs(dt) ** 3 / 3
        return a, var * self.scale

    def predict_raw(self, d: float) -> tuple[float, float]:
        """Offset and its variance at one device time from the filter in use, not scaled by the innovations."""
        k = self.best
        dt = d - self.t
        P = self.P[k]
        var = P[0, 0] + 2 * dt * P[0, 1] + dt * dt * P[1, 1] + self.q[k] * abs(dt) ** 3 / 3
        return float(self.x[k, 0] + dt * self.x[k, 1]), float(var)

    @property
    def scale(self) -> float:
        """Variance scale from the innovations (clipped: evidence sigmas are trusted within a factor of 10)."""
        return float(min(max(self.nis, 0.5), 100.0)) if self.n >= 20 else 1.0

    def _passes(self):
        """Forward (all q) and backward (chosen q) passes over the sorted log, cached until new evidence."""
        if self._cache is not None and self._cache[0] == len(self.log_d):
            return self._cache[1:]
        order = np.argsort(np.asarray(self.log_d), kind="stable")
        ld = np.asarray(self.log_d)[order]
        lz = np.asarray(self.log_z)[order]
        lr = np.asarray(self.log_r)[order]
        fw = _pass(ld, lz, lr, self.q, self.skew_var0, self.rs)
        k = _parsimonious(fw[3])
        bw = _pass(-ld[::-1], lz[::-1], lr[::-1], self.q[k : k + 1], self.skew_var0, self.rs[k : k + 1])
        self._cache = (len(self.log_d), ld, fw, bw, k)
        return self._cache[1:]

    def smooth(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two-filter smoother over the logged measurements: offset and variance at device times ``d``."""
        ld, fw, bw, k = self._passes()
        q = self.q[k]
        # forward: last snapshot at or before d
        i = np.searchsorted(ld, d, side="right") - 1
        # backward: first snapshot strictly after d (so a measurement at d is counted once)
        j = np.searchsorted(ld, d, side="right")
        n = len(ld)
        a = np.zeros(len(d))
        var = np.zeros(len(d))
        has_f = i >= 0
        has_b = j < n
        ic = np.clip(i, 0, n - 1)
        jb = np.clip(n - 1 - j, 0, n - 1)  # index in the reversed pass
        fx, fP = fw[0][ic, k], fw[1][ic, k]
        dtf = d - ld[ic]
        af, Pf = _propagate(fx, fP, dtf, q)
        bx, bP = bw[0][jb, 0], bw[1][jb, 0]
        dtb = ld[np.clip(j, 0, n - 1)] - d  # reversed time runs forward by this much
        ab, Pb = _propagate(bx, bP, dtb, q)
        # back to forward time: skew changes sign
        ab = ab.copy()
        ab[:, 1] = -ab[:, 1]
        Pb = Pb.copy()
        Pb[:, 0, 1] = -Pb[:, 0, 1]
        Pb[:, 1, 0] = -Pb[:, 1, 0]
        only_f = has_f & ~has_b
        only_b = has_b & ~has_f
        both = has_f & has_b
        a[only_f], var[only_f] = af[only_f, 0], Pf[only_f, 0, 0]
        a[only_b], var[only_b] = ab[only_b, 0], Pb[only_b, 0, 0]
        if np.any(both):
            If = _inv2(Pf[both])
            Ib = _inv2(Pb[both])
            Pc = _inv2(If + Ib)
            xc = np.einsum("nij,nj->ni", Pc, np.einsum("nij,nj->ni", If, af[both]) + np.einsum("nij,nj->ni", Ib, ab[both]))
            a[both], var[both] = xc[:, 0], Pc[:, 0, 0]
        return a, var * self.scale


def _parsimonious(ll: np.ndarray, margin: float = 2.0) -> int:
    """The smallest random walk (the bank is sorted by intensity) whose log-likelihood is within ``margin`` of the
    best: a steadier clock is preferred unless the data say otherwise."""
    return int(np.flatnonzero(ll >= np.max(ll) - margin)[0])


def _inv2(M: np.ndarray) -> np.ndarray:
    det = M[:, 0, 0] * M[:, 1, 1] - M[:, 0, 1] * M[:, 1, 0]
    out = np.empty_like(M)
    out[:, 0, 0] = M[:, 1, 1] / det
    out[:, 1, 1] = M[:, 0, 0] / det
    out[:, 0, 1] = -M[:, 0, 1] / det
    out[:, 1, 0] = -M[:, 1, 0] / det
    return out


def _predict(x: np.ndarray, P: np.ndarray, dt, q) -> None:
    """Constant-rate prediction over ``dt`` of a bank of (offset, rate) filters with random-walk intensities ``q``,
    in place (``dt`` and ``q`` scalars or one per filter)."""
    x[:, 0] += x[:, 1] * dt
    p00 = P[:, 0, 0] + 2 * dt * P[:, 0, 1] + dt * dt * P[:, 1, 1] + q * dt**3 / 3
    p01 = P[:, 0, 1] + dt * P[:, 1, 1] + q * dt**2 / 2
    P[:, 0, 0] = p00
    P[:, 0, 1] = P[:, 1, 0] = p01
    P[:, 1, 1] += q * dt


def _propagate(x: np.ndarray, P: np.ndarray, dt: np.ndarray, q: float):
    xo, Po = x.copy(), P.copy()
    _predict(xo, Po, dt, q)
    return xo, Po


def _pass(d, z, r, qs, skew_var0, rs=None):
    """Kalman pass over sorted measurements for every q: states/covariances after each update and log-likelihoods."""
    n, K = len(d), len(qs)
    X = np.zeros((n, K, 2))
    Ps = np.zeros((n, K, 2, 2))
    x = np.zeros((K, 2))
    P = np.zeros((K, 2, 2))
    ll = np.zeros(K)
    rs = np.ones(K) if rs is None else np.asarray(rs, dtype=float)
    t = 0.0
    for m in range(n):
        if m == 0:
            x[:] = (z[0], 0.0)
            P[:] = 0.0
            P[:, 0, 0] = r[0] * rs
            P[:, 1, 1] = skew_var0
        else:
            dt = d[m] - t
            _predict(x, P, dt, qs)
            S = P[:, 0, 0] + r[m] * rs
            nu = z[m] - x[:, 0]
            ll -= 0.5 * (nu * nu / S + np.log(S))
            K0, K1 = P[:, 0, 0] / S, P[:, 0, 1] / S
            k0, k1 = P[:, 0, 0].copy(), P[:, 0, 1].copy()
            x[:, 0] += K0 * nu
            x[:, 1] += K1 * nu
            P[:, 0, 0] -= K0 * k0
            P[:, 0, 1] -= K0 * k1
            P[:, 1, 0] = P[:, 0, 1]
            P[:, 1, 1] -= K1 * k1
        t = d[m]
        X[m] = x
        Ps[m] = P
    return X, Ps, t, ll


# ------------------------------------------------------------------------------------------- arrivals
class _Envelope:
    """Lower envelope of (device time, host - device): per-block minima and a lower-hull line."""

    def __init__(self, block_ns: int, window_ns: int):
        self.block_ns = block_ns
        self.window_ns = window_ns
        self.d: list[float] = []  # block minima (device time rel, offset rel)
        self.m: list[float] = []
        self._cur_block: int | None = None
        self._cur: tuple[float, float] | None = None
        self.n = 0
        self.line: tuple[float, float, float] | None = None  # (d_c, a, b)
        self._spread = 1e6
        self._lat = 0.0

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
        above = float(np.mean(m)) - float(self.predict(np.array([float(np.mean(d))]))[0])
        self._lat += 0.01 * (max(above, 0.0) - self._lat) if self.n > len(d) else max(above, 0.0) - self._lat

    def _close(self) -> None:
        if self._cur is None:
            return
        self.d.append(self._cur[0])
        self.m.append(self._cur[1])
        if len(self.d) > 8 and len(self.d) % 4:  # the line moves slowly: refit every 4th block
            return
        lo = self._cur[0] - self.window_ns
        i0 = bisect.bisect_left(self.d, lo)
        wd, wm = np.asarray(self.d[i0:]), np.asarray(self.m[i0:])
        self.line = _hull_line(wd, wm)
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
        """Offline: a line per window centred every window/4, interpolated between."""
        pd, pm = self.points()
        if len(pd) < 3:
            return self.predict(d)
        span = pd[-1] - pd[0]
        if span <= self.window_ns / 2:  # shorter than a window: one hull line through all of it
            dc, a, b = _hull_line(pd, pm)
            return a + b * (d - dc)
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
            dc, a, b = _hull_line(pd[sel], pm[sel])
            vals.append(a + b * (c - dc))
        vals = np.asarray(vals)
        if len(centres) == 1:
            return self.predict(d)
        out = np.interp(d, centres, vals)
        # extrapolate with the end slopes
        lo, hi = d < centres[0], d > centres[-1]
        s0 = (vals[1] - vals[0]) / (centres[1] - centres[0])
        s1 = (vals[-1] - vals[-2]) / (centres[-1] - centres[-2])
        out[lo] = vals[0] + s0 * (d[lo] - centres[0])
        out[hi] = vals[-1] + s1 * (d[hi] - centres[-1])
        return out


def _hull_line(x: np.ndarray, y: np.ndarray, centre: float | None = None) -> tuple[float, float, float]:
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


# ------------------------------------------------------------------------------------------- segments
@dataclass
class _Segment:
    index: int
    dev0: int  # device time origin (ns)
    host0: int  # reference/host time when the segment was first seen
    z0: int  # offset origin: ref - device at the start (ns)
    trig: _Bank
    probe: _Bank
    env: _Envelope
    dev_hi: int = 0
    host_hi: int = 0
    arr_hi: int = 0  # largest device time of an arrival
    min_rtt: float = 0.0  # smallest probe round trip
    band: float = 0.0  # median of the recent probes' half-bands: the estimate's bias bound (asymmetric links)
    bands: deque = field(default_factory=lambda: deque(maxlen=PROBE_RTT_KEEP))
    tick_n: int = 0
    tick_gcd: int = 0  # gcd of the probe stamps' distances from dev0: the device counter's resolution
    wander: float = 0.0  # variance of the offset's short-term scatter beyond the probes' bands (ns^2)
    edges: int = 0
    offsets: int = 0
    probes: int = 0
    arrivals: int = 0
    counts: dict[str, int] = field(default_factory=dict)


class ClockModel:
    """Device time -> reference time for one stream.  See the module docstring.

    ``method`` forces an estimator ("triggers", "probes", "arrival", "neural", "hybrid"); "auto" picks the best
    evidence.  ``edge_sigma_ns`` is the default edge jitter used when ``add_edges`` gets no sigma.
    """

    def __init__(self, name: str = "", nominal_period_ns: int | None = None, window_s: float = 120.0, *,
                 method: str = "auto", gate_sigma: float = 6.0, skew_prior_ppm: float = 2000.0,
                 rw_bank_ppm: tuple[float, ...] = RW_BANK_PPM, reset_back_ns: int = 10_000_000,
                 reset_forward_ns: int = 10 * NS, probe_rtt_margin: float = 0.25, edge_sigma_ns: float = 1000.0):
        self.name = name
        self.nominal_period_ns = nominal_period_ns
        self.window_s = float(window_s)
        self.forced = method
        self.gate_sigma = gate_sigma
        self.skew_prior = skew_prior_ppm * 1e-6
        pairs = sorted(((i, sc) for i in range(len(rw_bank_ppm)) for sc in R_SCALES),
                       key=lambda p: (p[0], abs(math.log(p[1]))))
        self.rw_bank_ppm = tuple(rw_bank_ppm)
        self._bank_rw = [float(rw_bank_ppm[i]) for i, _ in pairs]
        self.qs = np.array([_q_per_ns(rw_bank_ppm[i]) for i, _ in pairs])
        self.rscales = np.array([sc for _, sc in pairs])
        self.reset_back_ns = int(reset_back_ns)
        self.reset_forward_ns = int(reset_forward_ns)
        self.probe_rtt_margin = probe_rtt_margin
        self.edge_sigma_ns = edge_sigma_ns
        self.segments: list[_Segment] = []
        self.rejected: dict[str, int] = {}
        self.resets = 0
        self._rtts: deque[tuple[int, int]] = deque()  # (host send, band width) of recent probes: min-RTT window
        self._filtered_run = 0  # probes filtered out since the last one kept
        self._last_method = "identity"
        self._choice: tuple | None = None

    # ---- segments
    def _new_segment(self, device_ns: int, host_ns: int, z: int) -> _Segment:
        forget = 30 * max(self.window_s, 60.0)
        seg = _Segment(
            index=len(self.segments), dev0=int(device_ns), host0=int(host_ns), z0=int(z),
            trig=_Bank(self.qs, self.skew_prior, self.gate_sigma, forget, self.rscales),
            # probes: a run of excursions on a jittery link is no step (eight rejections in a row are)
            probe=_Bank(self.qs, self.skew_prior, self.gate_sigma, forget, self.rscales, step_n=8),
            env=_Envelope(NS, int(self.window_s * NS)),
            dev_hi=int(device_ns), host_hi=int(host_ns),
        )
        self.segments.append(seg)
        self._rtts.clear()
        self._filtered_run = 0
        return seg

    def reset_detected(self, device_ns: int, host_ns: int = 0) -> None:
        """A driver saw the device clock reset: the next evidence starts a new segment at ``device_ns``."""
        if self.segments:
            self.resets += 1
        self._new_segment(int(device_ns), int(host_ns), int(host_ns) - int(device_ns) if host_ns else 0)

    def _segment_for(self, device_ns: int, host_ns: int, z: int, kind: str) -> _Segment | None:
        """The segment this evidence belongs to, starting a new one on a detected reset; None to reject."""
        if not self.segments:
            return self._new_segment(device_ns, host_ns, z)
        seg = self.segments[-1]
        if not (seg.edges or seg.probes or seg.arrivals or seg.offsets):  # fresh (reset_detected): adopt
            if seg.host0 == 0:
                seg.host0, seg.z0 = host_ns, z
            seg.dev0 = min(seg.dev0, device_ns) if seg.dev0 else device_ns
            seg.dev_hi, seg.host_hi = device_ns, host_ns
            return seg
        # samples arrive in device-time order, so arrivals are checked against arrivals only (an edge report or a
        # probe reply may overtake samples stamped before it); other evidence gets a 1 s tolerance
        if kind == "arrival" and seg.arrivals:
            hi, back_tol = seg.arr_hi, self.reset_back_ns
        else:
            hi, back_tol = seg.dev_hi, max(self.reset_back_ns, NS)
        back = hi - device_ns
        fwd = (device_ns - seg.dev_hi) - max(host_ns - seg.host_hi, 0)
        if kind == "offset":
            # aligner estimates describe windows seconds to minutes old: late by nature, never a reset signal
            if device_ns < seg.dev0 or back > 600 * NS:
                self._count("offset_out_of_segment")
                return None
            return seg
        if back > back_tol and device_ns < seg.dev0 + (seg.dev_hi - seg.dev0) // 2 + back_tol:
            # device time went back: a reset (late evidence from before a reset lands in the second half)
            if host_ns and host_ns < seg.host_hi - 5 * NS:
                self._count("late_evidence")
                return None
            self.resets += 1
            return self._new_segment(device_ns, host_ns, z)
        if back > back_tol:
            self._count(f"{kind}_out_of_order")
            return None
        if fwd > self.reset_forward_ns:
            self.resets += 1
            return self._new_segment(device_ns, host_ns, z)
        if device_ns > seg.dev_hi:
            seg.dev_hi = device_ns
        if host_ns > seg.host_hi:
            seg.host_hi = host_ns
        return seg

    def _count(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + n

    # ---- evidence
    def add_edges(self, device_ns, ref_ns, sigma_ns: float | None = None) -> int:
        """Matched trigger pairs (device time, reference time) with 1-sigma jitter of the pair.  Returns how many
        were accepted; the rest are counted in ``state()['rejected']``."""
        dev = np.atleast_1d(np.asarray(device_ns, dtype=np.int64))
        ref = np.atleast_1d(np.asarray(ref_ns, dtype=np.int64))
        if len(dev) != len(ref):
            raise ValueError("add_edges: device_ns and ref_ns differ in length")
        sigma = float(self.edge_sigma_ns if sigma_ns is None else sigma_ns)
        if not (sigma > 0 and math.isfinite(sigma)):
            self._count("edge_bad_sigma", len(dev))
            return 0
        ok = 0
        for d, r in zip(dev.tolist(), ref.tolist(), strict=False):
            seg = self._segment_for(d, r, r - d, "edge")
            if seg is None:
                continue
            if seg.trig.update(float(d - seg.dev0), float(r - d - seg.z0), sigma * sigma):
                seg.edges += 1
                ok += 1
            else:
                self._count("edge_outlier")
                ok += self._step(seg, "trig")
        return ok

    def add_offset(self, est: OffsetEstimate) -> bool:
        """An aligner's offset (ref - device at ``device_ns``) with its sigma, fused by variance with the edges."""
        sigma = float(est.sigma_ns) / max(min(float(est.confidence), 1.0), 1e-3)
        if not (sigma > 0 and math.isfinite(sigma)):
            self._count("offset_bad_sigma")
            return False
        d = int(est.device_ns)
        seg = self._segment_for(d, d + int(est.offset_ns), int(est.offset_ns), "offset")
        if seg is None:
            return False
        if seg.trig.update(float(d - seg.dev0), float(est.offset_ns - seg.z0), sigma * sigma):
            seg.offsets += 1
            return True
        self._count("offset_outlier")
        return self._step(seg, "trig", "offsets") > 0

    def add_probe(self, host_send_ns: int, device_ns: int, host_recv_ns: int) -> bool:
        """A round trip: the device stamped ``device_ns`` between ``host_send_ns`` and ``host_recv_ns``."""
        s, d, r = int(host_send_ns), int(device_ns), int(host_recv_ns)
        rtt = r - s
        if rtt < 0:
            self._count("probe_negative_rtt")
            return False
        mid = s + rtt // 2
        seg = self._segment_for(d, mid, mid - d, "probe")
        if seg is None:
            return False
        dr = float(d - seg.dev0)
        lo, hi = float(s - d - seg.z0), float(r - d - seg.z0)
        # a coarse device counter stamps anywhere within its tick (the gcd of the stamps' distances, once there are
        # enough of them to tell): the band is that much wider
        seg.tick_gcd = math.gcd(seg.tick_gcd, abs(d - seg.dev0))
        seg.tick_n += 1
        if seg.tick_n >= 8 and 1_000 <= seg.tick_gcd <= 10_000_000:
            lo -= seg.tick_gcd / 2
            hi += seg.tick_gcd / 2
        bank = seg.probe
        if seg.env.n:  # arrivals bound the offset from above: tighten the probe's upper bound
            if bank.n >= 5:  # carried along the probes' skew, with slack for its uncertainty, up to 10 s
                k = bank.best
                slope, span = float(bank.x[k, 1]), 10.0 * NS
                slack = 3.0 * math.sqrt(max(float(bank.P[k, 1, 1]) * bank.scale, 0.0)) + 2e-6
            else:
                slope, span, slack = (seg.env.line[2] if seg.env.line else 0.0), 2.0 * NS, 5e-4
            ub = seg.env.upper_bound(dr, slope, span, slack)
            if ub is not None:
                if ub < lo - 50_000:
                    self._count("probe_arrival_inconsistent")  # a bound is wrong somewhere: keep the round trip's
                elif ub < hi:
                    hi = max(ub, lo)
        # min-RTT filter: the lower envelope of the bands' widths (the round trips, where no arrival tightens them)
        # over a sliding window (a changed route is followed within the window)
        width = int(hi - lo)
        q = self._rtts
        q.append((s, width))
        horizon = self.window_s * NS / 4
        while len(q) > PROBE_RTT_KEEP or s - q[0][0] > horizon:
            q.popleft()
        # after eight rejections in a row the floor is the second smallest (one lucky or lying probe does not lock
        # the filter); until the bank has a few probes, anything within twice the floor helps (it needs a skew)
        widths = sorted(x for _, x in q)
        floor = widths[1] if self._filtered_run >= 8 and len(widths) >= 2 else widths[0]
        margin = self.probe_rtt_margin if bank.n >= 5 else max(self.probe_rtt_margin, 1.0)
        if width > floor * (1.0 + margin) + 20_000:
            self._count("probe_rtt_filtered")
            self._filtered_run += 1
            return False
        self._filtered_run = 0
        z, w = (lo + hi) / 2, (hi - lo) / 2
        band_var = w * w / 3 + 1e6
        fresh = bank.n == 0
        if not fresh:
            pred, pvar = bank.predict_raw(dr)
        if bank.update(dr, z, band_var + seg.wander):
            if not fresh:
                # innovations beyond the line's and the band's variance: the offset's short-term wander
                excess = (z - pred) ** 2 - pvar - band_var
                a = 0.05 if seg.probes >= 20 else 1.0 / (seg.probes + 1)
                seg.wander = max(seg.wander + a * (excess - seg.wander), 0.0)
            seg.min_rtt = float(rtt) if seg.probes == 0 else min(seg.min_rtt, float(rtt))
            seg.bands.append(w)
            # each centre is off by at most its half-width (the link's asymmetry); the median of the recent ones
            # bounds the estimate's bias (the tightest would be the bound if the one-way bounds always held: a
            # coarse or late device stamp breaks them)
            seg.band = sorted(seg.bands)[len(seg.bands) // 2]
            seg.probes += 1
            return True
        self._count("probe_outlier")
        if bank.step:
            return self._step(seg, "probe", "probes") > 0
        if not fresh:  # excursions say the offset wanders more than thought (bounded: one outlier is no trend)
            excess = min((z - pred) ** 2 - pvar - band_var, 9 * (band_var + seg.wander))
            seg.wander = max(seg.wander + 0.05 * (excess - seg.wander), 0.0)
        return False

    def _step(self, seg: _Segment, which: str, counter: str = "edges") -> int:
        """When a bank saw a step (rejections agreeing with each other), the clock jumped without going
        backwards (a device that set its own clock): start a new segment from the measurements after the step."""
        bank = getattr(seg, which)
        if not bank.step:
            return 0
        bad, bank.step = bank.step, []
        self.resets += 1
        self._count("clock_step")
        d0 = seg.dev0 + int(bad[0][0])
        z = seg.z0 + int(bad[0][1])
        new = self._new_segment(d0, d0 + z, z)
        new.dev_hi, new.host_hi = seg.dev_hi, seg.host_hi
        nb = getattr(new, which)
        for bd, bz, br in bad:
            nb.update(float(seg.dev0 + bd - new.dev0), float(seg.z0 + bz - new.z0), br)
        setattr(new, counter, getattr(new, counter) + len(bad))
        return len(bad)

    def add_arrivals(self, device_ns, host_ns) -> np.ndarray:
        """Host receive times of samples with device times; returns each sample's segment (int32)."""
        dev = np.asarray(device_ns, dtype=np.int64)
        host = np.asarray(host_ns, dtype=np.int64)
        n = len(dev)
        segs = np.zeros(n, dtype=np.int32)
        if n == 0:
            return segs
        # split the run where the device time jumps (reset candidates), then feed each part
        dd = np.diff(dev)
        dh = np.diff(host)
        cut = np.flatnonzero((dd < -self.reset_back_ns) | (dd - np.maximum(dh, 0) > self.reset_forward_ns)) + 1
        bounds = np.concatenate([[0], cut, [n]])
        for a, b in zip(bounds[:-1], bounds[1:], strict=False):
            seg = self._segment_for(int(dev[a]), int(host[a]), int(host[a] - dev[a]), "arrival")
            if seg is None:
                segs[a:b] = -1
                continue
            # within the part the order is monotone; only the last sample needs the bookkeeping
            seg.arr_hi = max(seg.arr_hi, int(dev[b - 1])) if seg.arrivals else int(dev[b - 1])
            seg.dev_hi = max(seg.dev_hi, int(dev[b - 1]))
            seg.host_hi = max(seg.host_hi, int(host[b - 1]))
            rel_d = (dev[a:b] - seg.dev0).astype(np.float64)
            rel_m = ((host[a:b] - dev[a:b]) - seg.z0).astype(np.float64)
            seg.env.add(rel_d, rel_m)
            seg.arrivals += b - a
            segs[a:b] = seg.index
        if np.any(segs < 0):
            self._count("arrival_late", int(np.sum(segs < 0)))
            segs[segs < 0] = len(self.segments) - 1
        return segs

    def add(self, item) -> None:
        """Any evidence item (``Probe`` or ``OffsetEstimate``; edges go through a matcher first)."""
        from .evidence import Probe

        if isinstance(item, Probe):
            self.add_probe(item.host_send_ns, item.device_ns, item.host_recv_ns)
        elif isinstance(item, OffsetEstimate):
            self.add_offset(item)
        else:
            raise TypeError(f"ClockModel.add: unsupported evidence {type(item).__name__}")

    # ---- mapping
    def segment_of(self, device_ns, host_ns) -> np.ndarray:
        """The segment of samples given their device and host receive times (for chunks fed to add_arrivals)."""
        dev = np.asarray(device_ns, dtype=np.int64)
        host = np.asarray(host_ns, dtype=np.int64)
        if len(self.segments) <= 1:
            return np.zeros(len(dev), dtype=np.int32)
        starts = np.array([s.host0 for s in self.segments], dtype=np.int64)
        k = np.searchsorted(starts, host, side="right") - 1
        k = np.clip(k, 0, len(self.segments) - 1)
        # a burst straddling a reset shares host times: use the device time to split ties
        tie = (k > 0) & (host == starts[k])
        if np.any(tie):
            for i in np.flatnonzero(tie):
                cur, prev = self.segments[k[i]], self.segments[k[i] - 1]
                if abs(int(dev[i]) - cur.dev0) > abs(int(dev[i]) - prev.dev_hi):
                    k[i] -= 1
        return k.astype(np.int32)

    def _candidates(self, seg: _Segment) -> list[str]:
        out = []
        if seg.trig.n >= 1:  # one point already maps, with the skew prior's growing uncertainty
            if seg.edges and seg.offsets:
                out.append("hybrid")
            elif seg.edges:
                out.append("triggers")
            else:
                out.append("neural")
        if seg.probe.n >= 1:
            out.append("probes")
        if seg.env.n >= 1:
            out.append("arrival")
        return out

    def _choose(self, seg: _Segment, d_mid: float) -> str:
        key = (seg.index, seg.trig.n, seg.probe.n, len(seg.env.d), seg.env.n > 0, self.forced)
        if self._choice is not None and self._choice[0] == key:
            return self._choice[1]
        m = self._choose_now(seg, d_mid)
        self._choice = (key, m)
        return m

    def _choose_now(self, seg: _Segment, d_mid: float) -> str:
        cands = self._candidates(seg)
        if not cands:
            return "identity"
        if self.forced != "auto":
            forced = {"triggers": ("triggers", "hybrid"), "hybrid": ("hybrid", "triggers", "neural"),
                      "neural": ("neural", "hybrid"), "probes": ("probes",), "arrival": ("arrival",),
                      "identity": ()}.get(self.forced, ())
            for c in cands:
                if c in forced:
                    return c
            if self.forced == "identity":
                return "identity"
        best, best_var = cands[-1], math.inf
        for c in cands:
            if c == "arrival":
                var = seg.env.spread() ** 2
            else:
                bank = seg.probe if c == "probes" else seg.trig
                var = float(bank.predict(np.array([d_mid]))[1][0])
                if c == "probes":
                    var += seg.band**2 + seg.wander
            if var < best_var:
                best, best_var = c, var
        return best

    def map(self, device_ns, segment=None, *, smooth: bool = False, method: str | None = None):
        """Reference time, 1-sigma uncertainty and segment of device times.

        ``segment`` (scalar or array) says which clock segment each time belongs to (default: the current one;
        ``StreamClocks`` passes ``segment_of``).  ``smooth`` uses the evidence on both sides of each time (the
        offline path); live correction uses the current filter state.
        """
        dev = np.atleast_1d(np.asarray(device_ns, dtype=np.int64))
        n = len(dev)
        ref = dev.copy()
        unc = np.full(n, UNKNOWN_UNC_NS, dtype=np.int64)
        if not self.segments:
            self._last_method = "identity"
            return ref, unc, np.zeros(n, dtype=np.int32)
        if segment is None:
            segs = np.full(n, len(self.segments) - 1, dtype=np.int32)
        else:
            segs = np.broadcast_to(np.asarray(segment, dtype=np.int32), (n,)).copy()
            segs = np.clip(segs, 0, len(self.segments) - 1)
        methods = []
        for k in np.unique(segs):
            sel = segs == k
            seg = self.segments[int(k)]
            d = (dev[sel] - seg.dev0).astype(np.float64)
            m = method or self._choose(seg, float(np.median(d)) if len(d) else 0.0)
            a, var = self._estimate(seg, m, d, smooth)
            ref[sel] = dev[sel] + seg.z0 + np.rint(a).astype(np.int64)
            unc[sel] = np.minimum(np.rint(np.sqrt(np.maximum(var, 0.0))), UNKNOWN_UNC_NS).astype(np.int64)
            methods.append(m)
        self._last_method = min(methods, key=METHOD_ORDER.index)
        return ref, unc, segs

    def _estimate(self, seg: _Segment, m: str, d: np.ndarray, smooth: bool):
        if m in ("triggers", "hybrid", "neural"):
            bank = seg.trig
        elif m == "probes":
            bank = seg.probe
        elif m == "arrival" and seg.env.line is not None:  # (no envelope yet: identity below)
            a = seg.env.smooth(d) if smooth else seg.env.predict(d)
            return a, np.full(len(d), seg.env.spread() ** 2)
        else:  # identity: the segment's first offset, unknown uncertainty
            return np.zeros(len(d)), np.full(len(d), float(UNKNOWN_UNC_NS) ** 2)
        a, var = bank.smooth(d) if smooth and len(bank.log_d) >= 2 else bank.predict(d)
        if m == "probes":  # consistent centres say nothing of the link's asymmetry (add its bound) nor of the wander
            var = var + seg.band**2 + seg.wander
        return a, var

    @property
    def last_method(self) -> str:
        """The method the last ``map`` call used (the best of its segments)."""
        return self._last_method

    @property
    def method(self) -> str:
        """The best evidence in use for the current segment."""
        if not self.segments:
            return "identity"
        seg = self.segments[-1]
        return self._choose(seg, float(seg.dev_hi - seg.dev0))

    def state(self) -> dict:
        """Offset, drift, segments, evidence counts, resets and rejections (for stream metadata)."""
        out: dict = {"name": self.name, "method": self.method, "segments": len(self.segments),
                     "resets_detected": self.resets, "rejected": dict(self.rejected)}
        if not self.segments:
            return out
        seg = self.segments[-1]
        m = self.method
        d = float(seg.dev_hi - seg.dev0)
        if m in ("triggers", "hybrid", "neural", "probes"):
            bank = seg.probe if m == "probes" else seg.trig
            a, var = bank.predict(np.array([d]))
            if m == "probes":
                var = var + seg.band**2 + seg.wander
            k = bank.best
            drift = -float(bank.x[k, 1]) * 1e6
            out["rw_ppm_per_sqrt_h"] = self._bank_rw[k]
            out["noise_scale"] = float(math.sqrt(self.rscales[k]))  # measured / stated evidence sigma
        elif m == "arrival":
            a = seg.env.predict(np.array([d]))
            var = np.array([seg.env.spread() ** 2])
            drift = -float(seg.env.line[2]) * 1e6 if seg.env.line else 0.0
        else:
            a, var, drift = np.array([0.0]), np.array([float(UNKNOWN_UNC_NS) ** 2]), 0.0
        out.update(
            offset_ns=int(seg.z0 + round(float(a[0]))),
            unc_ns=int(min(math.sqrt(max(float(var[0]), 0.0)), UNKNOWN_UNC_NS)),
            drift_ppm=drift,  # device runs fast by this much (ppm) relative to the reference
            at_device_ns=int(seg.dev_hi),
            edges=seg.edges, offsets=seg.offsets, probes=seg.probes, arrivals=seg.arrivals,
            outliers_edges=seg.trig.rejected, outliers_probes=seg.probe.rejected,
            filter_restarts=seg.trig.reinit + seg.probe.reinit,
        )
        if seg.probes:
            out.update(probe_band_ns=int(seg.band), probe_wander_ns=int(math.sqrt(seg.wander)), min_rtt_ns=int(seg.min_rtt))
        return out
