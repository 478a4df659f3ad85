"""ClockModel: one stream's device clock mapped onto the reference clock, with drift and an uncertainty.

Pure (no I/O, no threads).  Evidence, each with its own noise model:

* **trigger edges** (device time, reference time, 1-sigma edge jitter) and **aligner offsets** (``OffsetEstimate``,
  ref - device with a sigma) go into a Kalman filter on (offset, skew) whose skew follows a random walk (thermal
  drift).  Neither the random-walk intensity nor the evidence's true noise is known in advance, so a bank of filters
  runs side by side: intensities from 0 (a perfect crystal: the filter is then exactly the least-squares line) to
  50 ppm/sqrt(h) in a 1-2-5 series, times noise scales from 0.01x to 100x the stated variance, and the estimate is
  their likelihood-weighted average (Bayesian model averaging over the few that count), so the process noise
  follows the data, not the nearest preset.  A segment's first edges wait until two of them agree on a plausible
  skew, or three on any line (a glitch or a pair a period off cannot start the filter); after a reset the previous
  segment's skew (the same oscillator) is the prior.  Innovations beyond ``gate_sigma`` are then rejected and counted; a run of
  rejections that agree with each other starts a new segment (a step the model could not follow) rather than
  locking the filter out, and the two-sided estimate leaves out logged edges its both sides put beyond
  ``OUTLIER_SIGMA``.
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

Each mapped time gets the estimate with the smallest variance *at that time* (``choose``): the smoothed variance
offline, the filter's prediction live.  The choice is a function of the evidence and of the sample's own device time
only, so a recording corrected chunk by chunk gives the same times as corrected at once.  Trigger edges and aligner
offsets are fused by variance in the same filter (``method`` "hybrid" when both are used).

**Segments.**  A device clock reset starts a new segment with its own estimators: never a mapping across one.  The
stream's samples define the timelines (``add_arrivals``): device time going back by ``reset_back_ns``, jumping ahead
by ``reset_forward_ns`` more than the host's clock, a sample that would map to after it arrived (a clock restored
forward: ``early_margin_ns`` beyond the trigger/probe estimate), or an arrival floor that rose and stayed up (a clock
that stood still during a reboot: ``LATE_MARGIN_NS``); the segment starts at the first sample of the new timeline.
``reset_detected`` lets a driver that knows about a reset say so; agreeing outlier edges (a step) start one too.
Edges and probes are routed to the segment they fit (``ROUTE_SLACK_NS``); on a stream without samples, evidence that
goes back or jumps ahead starts one.  ``segments_info`` says why each began.  Device times arrive unwrapped by the
drivers; ``unwrap_ticks`` does the same for raw 16/32-bit counters (a missed wrap looks like a reset: a new
segment, not a corrupt mapping).

**Cost.**  Updates are incremental: an edge or probe is one 2x2 Kalman step per filter of the bank (vectorized),
arrivals a min per chunk, a few comparisons against the segment's estimate and a hull over ~``window_s`` points once
per second.  ``map(..., smooth=True)`` (the collector/offline path) reruns the filters forward and backward over the
stored evidence once (cached until new evidence) and fuses the two (a two-filter smoother) at the mapped times.

``least_squares_bound`` and ``linear_smoother`` give the optimal linear estimator of the same model with known noise
(the benchmark's bound).

Times are int64 ns; floats only inside the filters, relative to a per-segment origin.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.units import NS

#: Uncertainty reported where nothing at all is known about a segment (ns).
UNKNOWN_UNC_NS = 10**15

#: Random-walk intensities of the filter bank, ppm per sqrt(hour): a 1-2-5 series, so that a drift wander anywhere
#: from a steady crystal to a heated one is within a factor of 1.6 of one of them (the likelihood-weighted average of
#: the bank then follows the data, not the nearest preset).
RW_BANK_PPM = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
#: Scales of the stated evidence variance the bank also tries (the stated jitter may be ~10x too large or ~10x too
#: small: a device that stamps edges with a coarse counter adds tick/sqrt(12) the trigger line cannot know of).
R_SCALES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
#: 1-sigma of the skew a segment's filters start from: the device's rate is unknown (2000 ppm) ...
SKEW_PRIOR = 2e-3
#: ... unless an earlier segment of the same stream measured it (the same oscillator after a reset).
SKEW_PRIOR_KNOWN = 50e-6
#: Two first edges that agree within this skew (1 sigma; crystals are within a few hundred ppm) start the filter;
#: otherwise three on one line must.
SKEW_PLAUSIBLE = 250e-6
#: The two-sided estimate leaves out a logged measurement this many sigma from what the others say about it.
OUTLIER_SIGMA = 8.0
#: Bank averaging: filters whose likelihood is at least this fraction of the best one's count, at most this many.
MIX_MIN_WEIGHT = 1e-3
MIX_MAX_MODELS = 8

METHOD_ORDER = ("triggers", "hybrid", "neural", "probes", "arrival", "identity")
#: Evidence (an edge, a probe) is routed to the segment whose spans hold its times within this slack.
ROUTE_SLACK_NS = 2 * NS
#: A sample that maps to more than this (or 6 sigma) after it arrived shows a clock that jumped forward.
EARLY_MARGIN_NS = 5_000_000
#: The samples' arrival floor (per 1 s block of device time, the smallest latency over the segment's estimate)
#: sitting this much (or 4x its usual scatter) higher for ``LATE_BLOCKS`` blocks in a row, steadily (a stall drains
#: by a second per second), shows a clock that jumped back without going backwards (stopped during a reboot).
LATE_MARGIN_NS = 30_000_000
LATE_BLOCKS = 2
#: Round trips in the sliding window whose minimum is the min-RTT floor (also at most a quarter of ``window_s``).
PROBE_RTT_KEEP = 32


def q_per_ns(ppm_per_sqrt_h: float) -> float:
    """Skew random-walk spectral density in 1/ns (skew is dimensionless) of a drift wander in ppm per sqrt(hour)."""
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


def mixture(ll: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bayesian model averaging over a bank: the models whose posterior weight (equal priors, likelihood
    ``exp(ll)``) is at least ``MIX_MIN_WEIGHT`` of the best one's, at most ``MIX_MAX_MODELS`` of them, and their
    weights (summing to 1).  Returns ``(indices, weights)``, indices ascending."""
    rel = ll - np.max(ll)
    ks = np.flatnonzero(rel >= math.log(MIX_MIN_WEIGHT))
    if len(ks) > MIX_MAX_MODELS:
        ks = np.sort(ks[np.argsort(-rel[ks], kind="stable")[:MIX_MAX_MODELS]])
    w = np.exp(rel[ks])
    return ks, w / w.sum()


def combine(w: np.ndarray, a: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of a mixture: weights ``w`` (m,), means and variances ``a``, ``var`` (m, n)."""
    mean = w @ a
    return mean, w @ (var + (a - mean) ** 2)


# ------------------------------------------------------------------------------------------- Kalman bank
class _Bank:
    """K Kalman filters on x = (offset, skew) at device time ``t``, differing in skew random-walk intensity ``q``
    and evidence-noise scale ``rs``.  Offsets are relative to the segment's origin (floats, ns).  Estimates average
    the filters by their likelihoods (``mixture``); the gate and the innovation scale use the most parsimonious
    likely filter (``best``)."""

    def __init__(self, qs: np.ndarray, skew_prior: float, gate_sigma: float, forget_s: float, rs=None,
                 step_n: int = 4, consensus: int = 1, skew0: float = 0.0, quick_skew: float = SKEW_PLAUSIBLE):
        self.q = np.asarray(qs, dtype=float)
        self.rs = np.ones(len(self.q)) if rs is None else np.asarray(rs, dtype=float)  # measurement-noise scales
        self.K = len(self.q)
        self.skew_var0 = skew_prior**2
        self.skew0 = float(skew0)  # the prior's skew (a segment after a reset: the same oscillator's last skew)
        self.quick_skew = float(quick_skew)  # 1-sigma of the skew ``consensus`` measurements may show around skew0
        self.gate = gate_sigma
        self.step_n = step_n
        self.consensus = consensus  # measurements that must agree before the first one is used
        self._probation: list[tuple[float, float, float]] = []
        self.vetted = False  # started from measurements that agreed: the gate applies from the next one
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
        self.dropped = 0  # logged measurements the two-sided estimate left out as outliers
        self._cache = None
        self._best: int | None = None  # cached per likelihood state
        self._mix: tuple[np.ndarray, np.ndarray] | None = None
        self.log_d: list[float] = []
        self.log_z: list[float] = []
        self.log_r: list[float] = []

    @property
    def best(self) -> int:
        if self._best is None:
            self._best = _parsimonious(self.ll)
        return self._best

    @property
    def mix(self) -> tuple[np.ndarray, np.ndarray]:
        """The filters that count in the average now and their weights (``mixture`` of the live likelihoods)."""
        if self._mix is None:
            self._mix = mixture(self.ll)
        return self._mix

    def _init(self, d: float, z: float, r: float) -> None:
        self.x[:] = (z, self.skew0)
        self.P[:] = 0.0
        self.P[:, 0, 0] = r * self.rs
        self.P[:, 1, 1] = self.skew_var0
        self.t = d
        self.ll[:] = 0.0
        self._best = self._mix = None

    def _predict_to(self, d: float) -> None:
        dt = d - self.t
        if dt <= 0:
            return
        _predict(self.x, self.P, dt, self.q)
        self.t = d

    def update(self, d: float, z: float, r: float, log: bool = True) -> bool:
        """One measurement ``z`` = offset at device time ``d`` with variance ``r``.  False when gated out (or, before
        the filter starts, when a consensus of others left it out)."""
        if self.n == 0 and self.consensus > 1:
            return self._probate(d, z, r, log)
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
        if (self.n >= 3 or self.vetted) and gate_norm > self.gate:
            self.rejected += 1
            # the last step_n rejections in a row (one that does not fit the others, e.g. a glitch's pair among
            # them, must not keep the filter locked out for good)
            self._bad = [*self._bad[1 - self.step_n:], (d, z, r)]
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
        self._best = self._mix = None
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

    def _probate(self, d: float, z: float, r: float, log: bool) -> bool:
        """Before the filter starts, nothing gates: the first measurements wait until ``consensus`` of them lie on
        one line (within 6 sigma, 1 ms at least) with a plausible skew (within two ``quick_skew`` of ``skew0``), or
        three on any line within twice the prior, and the filter starts from those (the others were glitches or
        pairs a period off).  The oldest is let go after eight without a consensus."""
        p = self._probation
        p.append((d, z, r))
        if len(p) < self.consensus:
            return True
        best = self._consensus(p, self.skew0, self.quick_skew, self.consensus)
        if not best and len(p) >= 3:  # a fast clock, or not the oscillator the skew came from: any line
            best = self._consensus(p, 0.0, SKEW_PRIOR, 3)
            if best and self.skew_var0 < SKEW_PRIOR**2:
                self.skew0, self.skew_var0 = 0.0, SKEW_PRIOR**2
        if not best:
            if len(p) >= 8:
                p.pop(0)
                self.rejected += 1
            return True
        keep = sorted(p[k] for k in best)
        self.rejected += len(p) - len(keep)
        self._probation = []
        self.consensus = 1
        self.vetted = True
        for kd, kz, kr in keep:
            self.update(kd, kz, kr, log)
        return (d, z, r) in keep

    @staticmethod
    def _consensus(p: list[tuple[float, float, float]], skew0: float, skew_sd: float, need: int) -> list[int]:
        """The largest set (at least ``need``) of measurements on one line through two of them whose skew is within
        two sigma of ``skew0`` (each within 6 sigma of it, 1 ms at least), the closest fit among equals."""
        best: list[int] = []
        score = (0, 0.0)
        for i in range(len(p)):
            for j in range(i + 1, len(p)):
                (d1, z1, _), (d2, z2, _) = p[i], p[j]
                if d2 == d1 or abs((z2 - z1) / (d2 - d1) - skew0) > 2.0 * skew_sd:
                    continue
                slope = (z2 - z1) / (d2 - d1)
                res = [(k, abs(zk - z1 - slope * (dk - d1))) for k, (dk, zk, rk) in enumerate(p)]
                inl = [k for k, e in res if e <= max(6.0 * math.sqrt(p[k][2]), 1e6)]
                sc = (len(inl), -sum(res[k][1] ** 2 for k in inl))  # most points, then the closest fit
                if sc > score:
                    best, score = inl, sc
        return best if len(best) >= need else []

    def _bad_agree(self) -> bool:
        d = np.array([b[0] for b in self._bad])
        z = np.array([b[1] for b in self._bad])
        r = np.array([b[2] for b in self._bad])
        if len(np.unique(d)) < 2:
            return False
        A = np.vstack([np.ones_like(d), d - d.mean()]).T
        coef, *_ = np.linalg.lstsq(A, z, rcond=None)
        res = z - A @ coef
        # within the noise the bank has learnt (a coarse device counter stamps far coarser than the stated jitter)
        return bool(np.all(np.abs(res) < 6 * np.sqrt(r * max(self.rs[self.best] * self.scale, 1.0)) + 1.0))

    def _log(self, d, z, r) -> None:
        self.log_d.append(d)
        self.log_z.append(z)
        self.log_r.append(r)

    def predict(self, d: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Offset and its variance at device times ``d`` from the current state: the bank's likelihood-weighted
        average (or filter ``k``), variance scaled by the innovations."""
        ks, w = (np.array([k]), np.ones(1)) if k is not None else self.mix
        dt = np.asarray(d, dtype=np.float64)[None, :] - self.t
        x, P, q = self.x[ks], self.P[ks], self.q[ks]
        a = x[:, 0:1] + dt * x[:, 1:2]
        var = P[:, 0, 0:1] + 2 * dt * P[:, 0, 1:2] + dt * dt * P[:, 1, 1:2] + q[:, None] * np.abs(dt) ** 3 / 3
        a, var = combine(w, a, var)
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
        """Over the sorted log: the likelihood of every filter of the bank (one pass), then forward and backward
        passes of the filters that count in the mixture; cached until new evidence."""
        if self._cache is not None and self._cache[0] == len(self.log_d):
            return self._cache[1:]
        order = np.argsort(np.asarray(self.log_d), kind="stable")
        ld = np.asarray(self.log_d)[order]
        lz = np.asarray(self.log_z)[order]
        lr = np.asarray(self.log_r)[order]
        for _ in range(2):
            ks, w = mixture(_pass(ld, lz, lr, self.q, self.skew_var0, self.rs, store=False, skew0=self.skew0)[3])
            fw = _pass(ld, lz, lr, self.q[ks], self.skew_var0, self.rs[ks], skew0=self.skew0)
            bw = _pass(-ld[::-1], lz[::-1], lr[::-1], self.q[ks], self.skew_var0, self.rs[ks], skew0=-self.skew0)
            if len(ld) < 5:
                break
            # a measurement the others (both sides of it) put beyond OUTLIER_SIGMA was let in while the live
            # filter knew little (the first few, before the gate): left out, once
            k = int(np.argmax(w))
            idx = np.arange(len(ld))
            a, var = _fuse(ld, fw, bw, self.q[ks], ld, idx - 1, idx + 1)
            bad = np.abs(lz - a[k]) > OUTLIER_SIGMA * np.sqrt(var[k] + lr * self.rs[ks[k]])
            if not bad.any():
                break
            ld, lz, lr = ld[~bad], lz[~bad], lr[~bad]
            self.dropped = int(bad.sum())
        fw, bw = (*fw, _parts(fw)), (*bw, _parts(bw))
        self._cache = (len(self.log_d), ld, fw, bw, self.q[ks], w)
        return self._cache[1:]

    def smooth(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two-filter smoother over the logged measurements, averaged over the bank by likelihood: offset and
        variance at device times ``d``."""
        ld, fw, bw, qs, w = self._passes()
        a, var = combine(w, *_two_filter(ld, fw, bw, qs, np.asarray(d, dtype=np.float64)))
        return a, var * self.scale


def _two_filter(ld: np.ndarray, fw, bw, qs: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward passes (of filters with intensities ``qs``) over measurements at sorted device times
    ``ld``, fused at device times ``d``: offsets and variances, shape (filters, len(d)); one side alone before the
    first or after the last measurement."""
    # forward: last snapshot at or before d; backward: first snapshot strictly after d (a measurement at d counts once)
    jn = np.searchsorted(ld, d, side="right")
    return _fuse(ld, fw, bw, qs, d, jn - 1, jn)


def _parts(pass_) -> tuple[np.ndarray, ...]:
    """A pass's snapshots as (offset, skew, P00, P01, P11), each (measurements, filters), cached on the pass."""
    if len(pass_) == 5:
        return pass_[4]
    X, P = pass_[0], pass_[1]
    return X[..., 0], X[..., 1], P[..., 0, 0], P[..., 0, 1], P[..., 1, 1]


def _fuse(ld: np.ndarray, fw, bw, qs: np.ndarray, d: np.ndarray, i: np.ndarray, jn: np.ndarray):
    """The forward snapshot ``i`` (none where < 0) and the backward one ``jn`` (none where >= len(ld)) carried to
    ``d`` and fused.  (Written out per matrix element: this runs for every corrected chunk, whose samples mostly
    lie between the same two measurements.)"""
    n = len(ld)
    ic = np.maximum(i, 0)
    jc = n - 1 - np.minimum(jn, n - 1)  # index in the reversed pass
    if len(d) and ic[0] == ic[-1] and jc[0] == jc[-1]:
        ic, jc = ic[0], jc[0]  # one interval: gather once, broadcast
        dt = (d - ld[ic])[:, None]
        db = (ld[n - 1 - jc] - d)[:, None]
    else:
        dt = (d - ld[ic])[:, None]
        db = (ld[n - 1 - jc] - d)[:, None]
    q = qs[None, :]
    x0, x1, p00, p01, p11 = (v[ic] for v in _parts(fw))
    f1 = x1
    f0 = x0 + dt * x1
    f00 = p00 + dt * (2 * p01 + dt * p11) + q * dt**3 / 3
    f01 = p01 + dt * p11 + q * dt**2 / 2
    f11 = p11 + q * dt
    x0, x1, p00, p01, p11 = (v[jc] for v in _parts(bw))
    # reversed time runs forward by db; back in forward time the skew flips
    b1 = x1
    b0 = x0 + db * x1
    b00 = p00 + db * (2 * p01 + db * p11) + q * db**3 / 3
    b01 = -(p01 + db * p11 + q * db**2 / 2)
    b11 = p11 + q * db
    # fused: x = f + K (b - f), K = F (F + B)^-1; only the offset row is needed
    s00, s01, s11 = f00 + b00, f01 + b01, f11 + b11
    det = s00 * s11 - s01 * s01
    k0 = (f00 * s11 - f01 * s01) / det
    k1 = (f01 * s00 - f00 * s01) / det
    a = f0 + k0 * (b0 - f0) + k1 * (-b1 - f1)
    var = f00 - (k0 * f00 + k1 * f01)
    after = jn >= n
    if after.any():
        a[after], var[after] = np.broadcast_to(f0, a.shape)[after], np.broadcast_to(f00, a.shape)[after]
    before = i < 0
    if before.any():
        a[before], var[before] = np.broadcast_to(b0, a.shape)[before], np.broadcast_to(b00, a.shape)[before]
    return a.T, var.T


def linear_smoother(edge_d: np.ndarray, z: np.ndarray, r, q: float, points: np.ndarray,
                    skew_prior: float = 2e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One Kalman filter/smoother of the bank's model with known noise: offsets ``z`` (ns) measured at device
    times ``edge_d`` with variances ``r`` (ns^2, one value or one per edge), skew random walk ``q`` (1/ns).
    Returns ``(smoothed offset, its variance, filtered offset, its variance)`` at device times ``points``: the
    two-sided estimate, and the causal one extrapolated from the last edge before each point.  Linear in ``z``
    (floats: pass offsets relative to one of them)."""
    ed = np.asarray(edge_d, dtype=np.int64)
    order = np.argsort(ed, kind="stable")
    e0 = ed[order[0]]
    e = (ed[order] - e0).astype(np.float64)  # relative before float: device times may be 1e18 ns (an RTC)
    pts = (np.asarray(points, dtype=np.int64) - e0).astype(np.float64)
    rr = np.broadcast_to(np.asarray(r, dtype=np.float64), (len(order),))[order]
    zz = np.asarray(z, dtype=np.float64)[order]
    qs = np.array([float(q)])
    fw = _pass(e, zz, rr, qs, skew_prior**2)
    bw = _pass(-e[::-1], zz[::-1], rr[::-1], qs, skew_prior**2)
    a_s, v_s = _two_filter(e, fw, bw, qs, pts)
    i = np.clip(np.searchsorted(e, pts, side="right") - 1, 0, len(e) - 1)
    xf, Pf = _propagate(fw[0][i, 0], fw[1][i, 0], pts - e[i], float(q))
    return a_s[0], v_s[0], xf[:, 0], Pf[:, 0, 0]


def least_squares_bound(edge_d: np.ndarray, r, q: float, points: np.ndarray, edge_bias: np.ndarray | None = None,
                        skew_prior: float = 2e-3) -> tuple[np.ndarray, np.ndarray]:
    """The optimal linear estimators' mean square errors (ns^2) at device times ``points`` for a clock whose skew
    follows a random walk of intensity ``q`` (1/ns, ``q_per_ns``), seen through edges at device times ``edge_d``
    with independent noise of variance ``r`` (ns^2, one value or one per edge) on top of a systematic error
    ``edge_bias`` (ns per edge, e.g. the stamps' quantization where the device's jitter does not dither it; the
    estimators carry it to the points): ``(two-sided smoother, causal filter extrapolated from the last edge before
    each point)``.  With ``q = 0`` and no bias the smoother is the least-squares line."""
    bias = np.zeros(len(edge_d)) if edge_bias is None else edge_bias
    b_s, v_s, b_f, v_f = linear_smoother(edge_d, bias, r, q, points, skew_prior)
    return v_s + b_s**2, v_f + b_f**2


def choose(estimates: list[tuple[np.ndarray, np.ndarray]], names: list[str]):
    """Per time, the estimate with the smallest variance (ties: the first): ``(offset, variance, names used)``."""
    if len(estimates) == 1 or len(estimates[0][0]) == 0:
        return estimates[0][0], estimates[0][1], {names[0]}
    V = np.vstack([v for _, v in estimates])
    pick = np.argmin(V, axis=0)
    cols = np.arange(V.shape[1])
    a = np.vstack([a for a, _ in estimates])[pick, cols]
    return a, V[pick, cols], {names[i] for i in np.unique(pick).tolist()}


def _parsimonious(ll: np.ndarray, margin: float = 2.0) -> int:
    """The smallest random walk (the bank is sorted by intensity) whose log-likelihood is within ``margin`` of the
    best: a steadier clock is preferred unless the data say otherwise."""
    return int(np.flatnonzero(ll >= np.max(ll) - margin)[0])


def _inv2(M: np.ndarray) -> np.ndarray:
    """Inverses of 2x2 matrices (any leading shape)."""
    det = M[..., 0, 0] * M[..., 1, 1] - M[..., 0, 1] * M[..., 1, 0]
    out = np.empty_like(M)
    out[..., 0, 0] = M[..., 1, 1] / det
    out[..., 1, 1] = M[..., 0, 0] / det
    out[..., 0, 1] = -M[..., 0, 1] / det
    out[..., 1, 0] = -M[..., 1, 0] / det
    return out


def _predict(x: np.ndarray, P: np.ndarray, dt, q) -> None:
    """Constant-rate prediction over ``dt`` of (offset, rate) filters with random-walk intensities ``q``, in place
    (states ``x[..., 2]``, covariances ``P[..., 2, 2]``; ``dt`` and ``q`` broadcast against the leading shape)."""
    x[..., 0] += x[..., 1] * dt
    p00 = P[..., 0, 0] + 2 * dt * P[..., 0, 1] + dt * dt * P[..., 1, 1] + q * dt**3 / 3
    p01 = P[..., 0, 1] + dt * P[..., 1, 1] + q * dt**2 / 2
    P[..., 0, 0] = p00
    P[..., 0, 1] = P[..., 1, 0] = p01
    P[..., 1, 1] += q * dt


def _propagate(x: np.ndarray, P: np.ndarray, dt, q):
    xo, Po = x.copy(), P.copy()
    _predict(xo, Po, dt, q)
    return xo, Po


def _pass(d, z, r, qs, skew_var0, rs=None, store: bool = True, skew0: float = 0.0):
    """Kalman pass over sorted measurements for every q: states/covariances after each update (None unless
    ``store``), the last time and the log-likelihoods."""
    n, K = len(d), len(qs)
    X = np.zeros((n, K, 2)) if store else None
    Ps = np.zeros((n, K, 2, 2)) if store else None
    x = np.zeros((K, 2))
    P = np.zeros((K, 2, 2))
    ll = np.zeros(K)
    rs = np.ones(K) if rs is None else np.asarray(rs, dtype=float)
    t = 0.0
    for m in range(n):
        if m == 0:
            x[:] = (z[0], skew0)
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
        if store:
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
        """Offline: a line per window centred every window/4, interpolated between (computed once per state of the
        envelope: every chunk of a recording is mapped with the same lines)."""
        key = (len(self.d), self._cur)
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
            return ("one", *_hull_line(pd, pm))
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
        return ("many", centres, np.asarray(vals))


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
class _ArrivalFloor:
    """A segment's arrival floor: per closed block of the envelope, the block minimum's height above the segment's
    estimate (its latency floor), and the last few seconds of raw arrivals (to find where a jump happened)."""

    RECENT_NS = 12 * NS  # of host time: covers a step that edges take a few periods to show

    def __init__(self):
        self.lat: deque[float] = deque(maxlen=40)
        self.recent: deque[tuple[np.ndarray, np.ndarray]] = deque()

    def keep(self, d: np.ndarray, h: np.ndarray) -> None:
        self.recent.append((d, h))
        while len(self.recent) > 1 and int(h[-1]) - int(self.recent[1][1][0]) > self.RECENT_NS:
            self.recent.popleft()

    def late(self) -> float | None:
        """The floor before the last ``LATE_BLOCKS`` blocks when those sit steadily above it by the margin, else
        None."""
        if len(self.lat) < LATE_BLOCKS + 5:
            return None
        lat = list(self.lat)
        now, hist = lat[-LATE_BLOCKS:], sorted(lat[:-LATE_BLOCKS][-30:])
        floor = hist[len(hist) // 2]
        margin = max(LATE_MARGIN_NS, 4.0 * (hist[(9 * len(hist)) // 10] - hist[len(hist) // 10]))
        if min(now) > floor + margin and max(now) - min(now) < margin / 2:
            return floor + margin / 2
        return None


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
    cause: str = "start"  # why the segment began (see ClockModel.segments_info)
    arr_last: tuple[int, int] | None = None  # (device, host) time of the last arrival
    first_edge_ns: int | None = None  # device time of the first edge pair the segment accepted
    floor: _ArrivalFloor = field(default_factory=lambda: _ArrivalFloor())


class ClockModel:
    """Device time -> reference time for one stream.  See the module docstring.

    ``method`` forces an estimator ("triggers", "probes", "arrival", "neural", "hybrid"); "auto" picks the best
    evidence.  ``edge_sigma_ns`` is the default edge jitter used when ``add_edges`` gets no sigma.
    """

    def __init__(self, name: str = "", nominal_period_ns: int | None = None, window_s: float = 120.0, *,
                 method: str = "auto", gate_sigma: float = 6.0, skew_prior_ppm: float = 2000.0,
                 rw_bank_ppm: tuple[float, ...] = RW_BANK_PPM, reset_back_ns: int = 10_000_000,
                 reset_forward_ns: int = 10 * NS, probe_rtt_margin: float = 0.25, edge_sigma_ns: float = 1000.0,
                 early_margin_ns: int = EARLY_MARGIN_NS, consensus: int = 2):
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
        self.qs = np.array([q_per_ns(rw_bank_ppm[i]) for i, _ in pairs])
        self.rscales = np.array([sc for _, sc in pairs])
        self.reset_back_ns = int(reset_back_ns)
        self.reset_forward_ns = int(reset_forward_ns)
        self.early_margin_ns = int(early_margin_ns)
        self.consensus = int(consensus)  # edges/offsets that must agree before a segment's first is used
        self.probe_rtt_margin = probe_rtt_margin
        self.edge_sigma_ns = edge_sigma_ns
        self.segments: list[_Segment] = []
        self.rejected: dict[str, int] = {}
        self.resets = 0
        self._rtts: deque[tuple[int, int]] = deque()  # (host send, band width) of recent probes: min-RTT window
        self._filtered_run = 0  # probes filtered out since the last one kept
        self._last_method = "identity"
        self._arrivals_seen = False  # once a stream's samples arrive, only they (and drivers, steps) start segments

    # ---- segments
    def _new_segment(self, device_ns: int, host_ns: int, z: int, cause: str = "start") -> _Segment:
        forget = 30 * max(self.window_s, 60.0)
        skew0, skew_sd, quick = 0.0, self.skew_prior, SKEW_PLAUSIBLE
        if self.segments:
            self.resets += 1
            self._count(f"segment_{cause}")
            known = [s.trig for s in self.segments if s.trig.n >= 10]
            if known:  # the same oscillator, most likely: its last skew
                skew0 = float(known[-1].x[known[-1].best, 1])
                skew_sd = quick = SKEW_PRIOR_KNOWN
        seg = _Segment(
            index=len(self.segments), dev0=int(device_ns), host0=int(host_ns), z0=int(z),
            trig=_Bank(self.qs, skew_sd, self.gate_sigma, forget, self.rscales, consensus=self.consensus,
                       skew0=skew0, quick_skew=quick),
            # probes: a run of excursions on a jittery link is no step (eight rejections in a row are)
            probe=_Bank(self.qs, self.skew_prior, self.gate_sigma, forget, self.rscales, step_n=8),
            env=_Envelope(NS, int(self.window_s * NS)),
            dev_hi=int(device_ns), host_hi=int(host_ns), cause=cause,
        )
        self.segments.append(seg)
        self._rtts.clear()
        self._filtered_run = 0
        return seg

    @staticmethod
    def _fresh(seg: _Segment) -> bool:
        return not (seg.edges or seg.probes or seg.arrivals or seg.offsets)

    def _adopt(self, seg: _Segment, device_ns: int, host_ns: int, z: int) -> _Segment:
        """The first evidence of a segment a driver announced: it sets what the announcement left open."""
        if seg.host0 == 0:
            seg.host0, seg.z0 = host_ns, z
        seg.dev0 = min(seg.dev0, device_ns) if seg.dev0 else device_ns
        seg.dev_hi, seg.host_hi = device_ns, host_ns
        return seg

    def reset_detected(self, device_ns: int, host_ns: int = 0) -> None:
        """A driver saw the device clock reset: the next evidence starts a new segment at ``device_ns``."""
        d, h = int(device_ns), int(host_ns)
        z = h - d if h else 0
        if self.segments and self._fresh(self.segments[-1]) and len(self.segments) > 1:
            seg = self.segments[-1]  # announced twice before any evidence: one reset
            seg.dev0, seg.host0, seg.z0, seg.dev_hi, seg.host_hi = d, h, z, d, h
            return
        self._new_segment(d, h, z, "driver")

    def _segment_for(self, device_ns: int, host_ns: int, z: int, kind: str) -> _Segment | None:
        """The segment evidence (an edge, a probe, an aligner offset) belongs to; None to reject it.  Where the
        stream's samples arrive, they define the clock's timelines (``add_arrivals``) and other evidence is routed
        to the one it fits; without arrivals, evidence whose device time goes back or jumps ahead starts one."""
        if not self.segments:
            return self._new_segment(device_ns, host_ns, z)
        seg = self.segments[-1]
        if kind == "offset":
            # aligner estimates describe windows seconds to minutes old: late by nature, never a reset signal
            if self._fresh(seg):
                return self._adopt(seg, device_ns, host_ns, z)
            if device_ns < seg.dev0 or seg.dev_hi - device_ns > 600 * NS:
                self._count("offset_out_of_segment")
                return None
            return seg
        if self._arrivals_seen:
            return self._route(device_ns, host_ns, kind)
        if self._fresh(seg):
            return self._adopt(seg, device_ns, host_ns, z)
        back_tol = max(self.reset_back_ns, NS)
        back = seg.dev_hi - device_ns
        fwd = (device_ns - seg.dev_hi) - max(host_ns - seg.host_hi, 0)
        if back > back_tol and device_ns < seg.dev0 + (seg.dev_hi - seg.dev0) // 2 + back_tol:
            # device time went back: a reset (late evidence from before a reset lands in the second half)
            if host_ns and host_ns < seg.host_hi - 5 * NS:
                self._count("late_evidence")
                return None
            return self._new_segment(device_ns, host_ns, z, f"{kind}_back")
        if back > back_tol:
            self._count(f"{kind}_out_of_order")
            return None
        if fwd > self.reset_forward_ns:
            return self._new_segment(device_ns, host_ns, z, f"{kind}_forward")
        return self._extend(seg, device_ns, host_ns)

    @staticmethod
    def _extend(seg: _Segment, device_ns: int, host_ns: int) -> _Segment:
        if device_ns > seg.dev_hi:
            seg.dev_hi = device_ns
        if host_ns > seg.host_hi:
            seg.host_hi = host_ns
        return seg

    def _route(self, device_ns: int, host_ns: int, kind: str) -> _Segment | None:
        """The segment (of the last few) whose reference-time span holds ``host_ns`` and whose device-time span
        (grown by the reference time since its last sample) holds ``device_ns``, both within ``ROUTE_SLACK_NS``;
        an exact reference-time match wins.  Evidence that fits none is counted and dropped (a timeline no sample
        has shown yet: the samples will start its segment)."""
        segs = self.segments
        near = None
        for i in range(len(segs) - 1, max(len(segs) - 5, -1), -1):
            s = segs[i]
            if self._fresh(s):
                continue
            nxt = segs[i + 1].host0 if i + 1 < len(segs) else None
            fits = s.dev0 - ROUTE_SLACK_NS <= device_ns <= s.dev_hi + max(host_ns - s.host_hi, 0) + ROUTE_SLACK_NS
            if not fits:
                continue
            if host_ns >= s.host0 and (nxt is None or host_ns < nxt):
                return self._extend(s, device_ns, host_ns)
            if near is None and host_ns >= s.host0 - ROUTE_SLACK_NS and (nxt is None or host_ns < nxt + ROUTE_SLACK_NS):
                near = s
        if near is not None:
            return self._extend(near, device_ns, host_ns)
        self._count(f"{kind}_no_segment")
        return None

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
                if seg.first_edge_ns is None:
                    seg.first_edge_ns = d
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
        self._count("clock_step")
        d0 = seg.dev0 + int(bad[0][0])
        z = seg.z0 + int(bad[0][1])
        new = self._new_segment(d0, d0 + z, z, "step")
        new.dev_hi, new.host_hi = seg.dev_hi, seg.host_hi
        nb = getattr(new, which)
        for bd, bz, br in bad:
            nb.update(float(seg.dev0 + bd - new.dev0), float(seg.z0 + bz - new.z0), br)
        setattr(new, counter, getattr(new, counter) + len(bad))
        if counter == "edges":
            new.first_edge_ns = d0
        if seg.floor.recent:
            self._split_recent(seg, new, bank, nb)
        return len(bad)

    def _split_recent(self, old: _Segment, new: _Segment, ob: _Bank, nb: _Bank) -> None:
        """After a step seen in the edges, the samples since it are on the new timeline: those of the recent
        arrivals that the new line explains with a smaller (and possible: not negative) latency than the old one,
        from the first of an unbroken run up to now, start the new segment."""
        d = np.concatenate([x for x, _ in old.floor.recent])
        h = np.concatenate([y for _, y in old.floor.recent])
        lat = []
        for seg, bank in ((old, ob), (new, nb)):
            k = bank.best
            dr = (d - seg.dev0).astype(np.float64)
            lat.append(((h - d) - seg.z0) - (bank.x[k, 0] + (dr - bank.t) * bank.x[k, 1]))
        tol = float(self.early_margin_ns)
        on_new = (lat[1] >= -tol) & ((lat[0] < -tol) | (lat[1] < lat[0]))
        j = len(on_new) - int(np.argmin(on_new[::-1])) if not on_new.all() else 0
        if j < len(d) and int(h[j]) < new.host0:
            new.host0 = int(h[j])
            self._take_arrivals(new, d[j:], h[j:])

    def add_arrivals(self, device_ns, host_ns) -> np.ndarray:
        """Host receive times of samples with device times; returns each sample's segment (int32).

        Samples are stamped in device-time order and arrive after they were taken, so a new timeline starts where
        device time goes back (``reset_back_ns``), jumps ahead by more than the host's clock advanced
        (``reset_forward_ns``), or maps to a time after the sample arrived (``early_margin_ns`` beyond the
        segment's trigger/probe estimate and its uncertainty, or 0.5 s beyond its arrival envelope): a device clock
        that jumped forward (a saved RTC restored at reboot)."""
        dev = np.asarray(device_ns, dtype=np.int64)
        host = np.asarray(host_ns, dtype=np.int64)
        n = len(dev)
        segs = np.zeros(n, dtype=np.int32)
        if n == 0:
            return segs
        self._arrivals_seen = True
        a = 0
        while a < n:
            seg = self._arrival_segment(int(dev[a]), int(host[a]))
            j, cause = self._timeline_break(seg, dev[a:], host[a:])
            if j == 0:
                seg = self._new_segment(int(dev[a]), int(host[a]), int(host[a] - dev[a]), cause)
                j, cause = self._timeline_break(seg, dev[a:], host[a:])
            b = a + j
            self._take_arrivals(seg, dev[a:b], host[a:b])
            segs[a:b] = seg.index
            a = b
        return segs

    def _arrival_segment(self, device_ns: int, host_ns: int) -> _Segment:
        if not self.segments:
            return self._new_segment(device_ns, host_ns, host_ns - device_ns)
        seg = self.segments[-1]
        if self._fresh(seg):
            return self._adopt(seg, device_ns, host_ns, host_ns - device_ns)
        return seg

    def _timeline_break(self, seg: _Segment, d: np.ndarray, h: np.ndarray) -> tuple[int, str]:
        """(index of the first sample that does not continue ``seg``'s timeline, why) or (len, "")."""
        if seg.arrivals and seg.arr_last is not None:
            pd = np.concatenate([[seg.arr_last[0]], d[:-1]])
            ph = np.concatenate([[seg.arr_last[1]], h[:-1]])
            first = 0
        else:  # the segment's first samples: nothing before them to compare with
            pd, ph, first = d[:-1], h[:-1], 1
        dd, hh = d[first:], h[first:]
        back = (pd - dd) > self.reset_back_ns
        fwd = ((dd - pd) - np.maximum(hh - ph, 0)) > self.reset_forward_ns
        early = self._early(seg, dd, hh)
        bad = back | fwd | early
        if not bad.any():
            return len(d), ""
        i = int(np.argmax(bad))
        why = "back" if back[i] else ("forward" if fwd[i] else "early")
        return first + i, f"arrival_{why}"

    def _live_offset(self, seg: _Segment, dr: np.ndarray) -> tuple[np.ndarray, float] | None:
        """The segment's current offset estimate at device times ``dr`` (relative) from its edges or probes, and
        its 1-sigma at the farthest of them; None when it has neither yet."""
        bank = seg.trig if seg.trig.n >= 10 else (seg.probe if seg.probe.n >= 10 else None)
        if bank is None:
            return None
        k = bank.best
        est = bank.x[k, 0] + (dr - bank.t) * bank.x[k, 1]
        far = float(dr[np.argmax(np.abs(dr - bank.t))])
        var = bank.predict_raw(far)[1] * bank.scale
        if bank is seg.probe:
            var += seg.band**2 + seg.wander
        return est, math.sqrt(max(var, 0.0))

    def _early(self, seg: _Segment, d: np.ndarray, h: np.ndarray) -> np.ndarray:
        """True where a sample would have arrived before it was taken according to the segment's estimate."""
        if len(d) == 0:
            return np.zeros(0, dtype=bool)
        dr = (d - seg.dev0).astype(np.float64)
        m = ((h - d) - seg.z0).astype(np.float64)
        live = self._live_offset(seg, dr)
        if live is not None:
            return m < live[0] - max(self.early_margin_ns, 6.0 * live[1])
        if len(seg.env.d) >= 10 and seg.env.line is not None:
            return m < seg.env.predict(dr) - max(0.5 * NS, 10.0 * seg.env.spread())
        return np.zeros(len(d), dtype=bool)

    def _take_arrivals(self, seg: _Segment, d: np.ndarray, h: np.ndarray) -> None:
        # within the run the order is monotone; only the last sample needs the bookkeeping
        seg.arr_hi = max(seg.arr_hi, int(d[-1])) if seg.arrivals else int(d[-1])
        seg.arr_last = (int(d[-1]), int(h[-1]))
        seg.dev_hi = max(seg.dev_hi, int(d[-1]))
        seg.host_hi = max(seg.host_hi, int(h[-1]))
        closed = len(seg.env.d)
        seg.env.add((d - seg.dev0).astype(np.float64), ((h - d) - seg.z0).astype(np.float64))
        seg.arrivals += len(d)
        seg.floor.keep(d, h)
        if len(seg.env.d) == closed:
            return
        bd = np.asarray(seg.env.d[closed:])
        live = self._live_offset(seg, bd)
        base = live[0] if live is not None else (seg.env.predict(bd) if seg.env.line is not None else None)
        if base is None:
            return
        seg.floor.lat.extend((np.asarray(seg.env.m[closed:]) - base).tolist())
        level = seg.floor.late()
        if level is not None:
            self._late_jump(seg, level)

    def _late_jump(self, seg: _Segment, level: float) -> None:
        """The arrival floor rose and stayed up: the clock jumped back while its time kept going up (it stood still
        during a reboot).  A new segment starts right after the last recent sample still on the old floor."""
        d = np.concatenate([x for x, _ in seg.floor.recent])
        h = np.concatenate([y for _, y in seg.floor.recent])
        dr = (d - seg.dev0).astype(np.float64)
        live = self._live_offset(seg, dr)
        base = live[0] if live is not None else seg.env.predict(dr)
        on_floor = np.flatnonzero(((h - d) - seg.z0) - base <= level)
        j = int(on_floor[-1]) + 1 if len(on_floor) else 0
        if j >= len(d):
            return
        new = self._new_segment(int(d[j]), int(h[j]), int(h[j] - d[j]), "arrival_late")
        self._take_arrivals(new, d[j:], h[j:])

    def add(self, item) -> None:
        """Any evidence item (``Probe`` or ``OffsetEstimate``; edges go through a matcher first)."""
        from synchub.agent.core.evidence import Probe

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

    def _choices(self, seg: _Segment) -> list[str]:
        """The estimators a segment offers (``method = "auto"``), or the forced one when the segment has it."""
        cands = self._candidates(seg)
        if not cands:
            return ["identity"]
        if self.forced == "auto":
            return cands
        forced = {"triggers": ("triggers", "hybrid"), "hybrid": ("hybrid", "triggers", "neural"),
                  "neural": ("neural", "hybrid"), "probes": ("probes",), "arrival": ("arrival",),
                  "identity": ()}.get(self.forced, ())
        for c in cands:
            if c in forced:
                return [c]
        return ["identity"] if self.forced == "identity" else cands

    def map(self, device_ns, segment=None, *, smooth: bool = False, method: str | None = None):
        """Reference time, 1-sigma uncertainty and segment of device times.

        ``segment`` (scalar or array) says which clock segment each time belongs to (default: the current one;
        ``StreamClocks`` passes ``segment_of``).  ``smooth`` uses the evidence on both sides of each time (the
        offline path); live correction uses the current filter state.  Each time gets the estimate with the
        smallest variance there (``choose``): a function of the evidence and of that time only, so a recording
        mapped chunk by chunk gives the same times as mapped at once.
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
            segs = np.asarray(segment, dtype=np.int32)
            segs = np.full(n, segs, dtype=np.int32) if segs.ndim == 0 else segs.copy()
            np.minimum(np.maximum(segs, 0, out=segs), len(self.segments) - 1, out=segs)
        used: set[str] = set()
        one = n == 0 or segs[0] == segs[-1] and (len(self.segments) == 1 or np.all(segs == segs[0]))
        for k in ([int(segs[0])] if one and n else np.unique(segs).tolist()):
            sel = slice(None) if one else segs == k
            seg = self.segments[int(k)]
            d = (dev[sel] - seg.dev0).astype(np.float64)
            names = [method] if method else self._choices(seg)
            ests, kept = [], []
            for name in names:
                # an estimate whose variance cannot fall below what the ones so far give everywhere cannot win
                floor = self._var_floor(seg, name)
                if ests and floor is not None and floor >= float(np.max(np.min([v for _, v in ests], axis=0))):
                    continue
                ests.append(self._estimate(seg, name, d, smooth))
                kept.append(name)
            a, var, m = choose(ests, kept)
            ref[sel] = dev[sel] + seg.z0 + np.rint(a).astype(np.int64)
            unc[sel] = np.minimum(np.rint(np.sqrt(np.maximum(var, 0.0))), UNKNOWN_UNC_NS).astype(np.int64)
            used |= m
        self._last_method = min(used, key=METHOD_ORDER.index) if used else "identity"
        return ref, unc, segs

    @staticmethod
    def _var_floor(seg: _Segment, m: str) -> float | None:
        """A lower bound of an estimator's variance anywhere in the segment (None: none known)."""
        if m == "probes":
            return seg.band**2 + seg.wander
        if m == "arrival" and seg.env.line is not None:
            return seg.env.spread() ** 2
        return None

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
        if bank.n == 0:
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
        """The best evidence in use for the current segment (at its latest device time, live)."""
        if not self.segments:
            return "identity"
        seg = self.segments[-1]
        d = np.array([float(seg.dev_hi - seg.dev0)])
        names = self._choices(seg)
        return next(iter(choose([self._estimate(seg, m, d, False) for m in names], names)[2]))

    def segments_info(self) -> list[dict]:
        """Per segment: its index, why it began (``start``; ``driver``: a reported reset; ``arrival_back``,
        ``arrival_forward``, ``arrival_early``: the samples' device times; ``step``: agreeing outlier edges or
        probes; ``edge_back``/``probe_forward``...: that evidence, on a stream without samples), where (device and
        reference time), the device time of its first accepted edge pair and its evidence counts."""
        return [{"index": s.index, "cause": s.cause, "device_ns": s.dev0, "host_ns": s.host0,
                 "first_edge_device_ns": s.first_edge_ns, "edges": s.edges, "probes": s.probes,
                 "offsets": s.offsets, "arrivals": s.arrivals} for s in self.segments]

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
