"""FilterBank: K Kalman filters on (offset, skew) run side by side on one segment's evidence.  Pure.

The filters differ in the skew's random-walk intensity and in the scale of the stated evidence noise; estimates
average them by likelihood (Bayesian model averaging over the few that count), the gate and the innovation scale use
the most parsimonious likely one.  Live: ``update`` (gated; a segment's first measurements wait on probation until
they agree, a run of agreeing rejections is a *step*), ``predict``.  Offline: ``smooth`` reruns the bank forward and
backward over the logged measurements (``synchub.agent.clock.kalman``), leaving out the ones both sides put beyond
``OUTLIER_SIGMA``.
"""

from __future__ import annotations

import math

import numpy as np

from synchub.agent.core.units import NS

from .kalman import combine, filter_pass, fuse, mixture, parsimonious, pass_parts, predict_state, two_filter

#: 1-sigma of the skew a segment's filters start from: the device's rate is unknown (2000 ppm) ...
SKEW_PRIOR = 2e-3
#: Two first edges that agree within this skew (1 sigma; crystals are within a few hundred ppm) start the filter;
#: otherwise three on one line must.
SKEW_PLAUSIBLE = 250e-6
#: The two-sided estimate leaves out a logged measurement this many sigma from what the others say about it.
OUTLIER_SIGMA = 8.0
#: Rejections in a row a bank keeps to look for a step among (``FilterBank._step_run``).
BAD_KEEP = 64


class FilterBank:
    """K Kalman filters on x = (offset, skew) at device time ``t``, differing in skew random-walk intensity ``q``
    and evidence-noise scale ``rs``.  Offsets are relative to the segment's origin (floats, ns).  Estimates average
    the filters by their likelihoods (``mixture``); the gate and the innovation scale use the most parsimonious
    likely filter (``best``)."""

    def __init__(self, qs: np.ndarray, skew_prior: float, gate_sigma: float, forget_s: float, rs=None,
                 step_n: int = 4, consensus: int = 1, skew0: float = 0.0, quick_skew: float = SKEW_PLAUSIBLE,
                 step_span: float = 0.0):
        self.q = np.asarray(qs, dtype=float)
        self.rs = np.ones(len(self.q)) if rs is None else np.asarray(rs, dtype=float)  # measurement-noise scales
        self.K = len(self.q)
        self.skew_var0 = skew_prior**2
        self.skew0 = float(skew0)  # the prior's skew (a segment after a reset: the same oscillator's last skew)
        self.quick_skew = float(quick_skew)  # 1-sigma of the skew ``consensus`` measurements may show around skew0
        self.gate = gate_sigma
        self.step_n = step_n
        self.step_span = float(step_span)  # ... and the device time (ns) a step's rejections must span at least
        self.consensus = consensus  # measurements that must agree before the first one is used
        self._probation: list[tuple[float, float, float]] = []
        self.vetted = False  # started from measurements that agreed: the gate applies from the next one
        self.skew_measured = False  # skew0 was measured on this segment (``prior_skew``), not assumed
        # the two-sided ``smooth``'s skew prior (skew, variance) where the same evidence, seen whole, measured it
        # better than when the live filter started (``smooth_skew``); None: skew0, skew_var0
        self._smooth_prior: tuple[float, float] | None = None
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
        self.last_taken = -math.inf  # device time (as ``update``'s d) of the newest measurement taken: the timeline held
        self.nis = 1.0
        self.dropped = 0  # logged measurements the two-sided estimate left out as outliers
        self._cache = None
        self._best: int | None = None  # cached per likelihood state
        self._mix: tuple[np.ndarray, np.ndarray] | None = None
        # every measurement, for the two-sided ``smooth`` offline; the live agent never smooths and sets it False
        self.keep_log = True
        self.log_d: list[float] = []
        self.log_z: list[float] = []
        self.log_r: list[float] = []

    @property
    def best(self) -> int:
        if self._best is None:
            self._best = parsimonious(self.ll)
        return self._best

    @property
    def mix(self) -> tuple[np.ndarray, np.ndarray]:
        """The filters that count in the average now and their weights (``mixture`` of the live likelihoods)."""
        if self._mix is None:
            self._mix = mixture(self.ll)
        return self._mix

    def prior_skew(self, skew: float, sd: float) -> None:
        """Before the filter starts: the skew measured by other evidence of this segment (the arrival envelope's
        slope, when only coarse aligner offsets come): the filter starts from it when it is tighter than the prior,
        so that a few noisy first offsets do not fit a drift (and extrapolate it seconds ahead)."""
        if self.n == 0 and sd * sd < self.skew_var0:
            self.skew0, self.skew_var0, self.skew_measured = float(skew), float(sd) ** 2, True

    def smooth_skew(self, skew: float, sd: float) -> None:
        """For the two-sided ``smooth`` only: the skew prior as the whole recording's arrivals measure it over the
        span of the logged measurements, where it is the better one: the prior was measured too (``prior_skew``:
        from the arrivals seen by the filter's first measurement, seconds of them) or is wider (the default).  A
        filter on a handful of ms-noisy aligner offsets would fit the drift through them otherwise; the
        filters weigh this prior against them by its variance."""
        if (self.skew_measured or sd * sd < self.skew_var0) and (skew, sd * sd) != self._smooth_prior:
            self._smooth_prior = (float(skew), float(sd) ** 2)
            self._cache = None

    def reopen(self, offset_var: float, skew_var: float) -> None:
        """Evidence from elsewhere says the clock moved beyond what the filters predict (a trigger back after a
        pause that aligner offsets bridged): every filter's offset and skew variance grow by these, pending
        rejections are forgotten, so that the next measurements re-anchor the state instead of starting a step."""
        self.P[:, 0, 0] += max(float(offset_var), 0.0)
        self.P[:, 1, 1] += max(float(skew_var), 0.0)
        self._bad, self.step = [], []
        self.reinit += 1

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
        predict_state(self.x, self.P, dt, self.q)
        self.t = d

    def update(self, d: float, z: float, r: float, log: bool = True, outlier: bool = False) -> bool:
        """One measurement ``z`` = offset at device time ``d`` with variance ``r``.  False when gated out (or, before
        the filter starts, when a consensus of others left it out).  ``outlier``: the caller knows it cannot be on
        the line (a probe whose hard bounds leave it out): gated out whatever its innovation, towards a step."""
        if self.n == 0 and self.consensus > 1:
            return self._probate(d, z, r, log)
        if self.n == 0:
            self._init(d, z, r)
            self.n = 1
            self.last_taken = max(self.last_taken, d)
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
        if (self.n >= 3 or self.vetted) and (gate_norm > self.gate or outlier):
            self.rejected += 1
            self._bad = [*self._bad[-BAD_KEEP:], (d, z, r)]
            run = self._step_run()
            if run is not None:
                # a step the filters cannot follow (step_n rejections agreeing with each other, not noise):
                # the model starts a new segment from them
                self.reinit += 1
                self.step, self._bad = run, []
            return False
        self._bad.clear()
        self.last_taken = max(self.last_taken, d)
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
            best = self._consensus(p, 0.0, max(SKEW_PRIOR, math.sqrt(self.skew_var0)), 3)
            if best and self.skew_var0 < SKEW_PRIOR**2 and not self.skew_measured:
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

    def _step_run(self) -> list[tuple[float, float, float]] | None:
        """The rejections in a row that make a step, or None: the last ``step_n`` of them, or as many as the last
        ``step_span`` of device time holds (a run shorter than that is no step: a device that stamped late for a
        moment), when they agree with each other (only the last ones: one that does not fit the others, e.g. a
        glitch's pair among them, must not keep the filter locked out for good)."""
        bad = self._bad
        if len(bad) < self.step_n or bad[-1][0] - bad[0][0] < self.step_span:
            return None
        k = len(bad) - self.step_n
        while k > 0 and bad[-1][0] - bad[k][0] < self.step_span:
            k -= 1
        run = bad[k:]
        return run if self._bad_agree(run) else None

    def _bad_agree(self, bad: list[tuple[float, float, float]]) -> bool:
        d = np.array([b[0] for b in bad])
        z = np.array([b[1] for b in bad])
        r = np.array([b[2] for b in bad])
        if len(np.unique(d)) < 2:
            return False
        A = np.vstack([np.ones_like(d), d - d.mean()]).T
        coef, *_ = np.linalg.lstsq(A, z, rcond=None)
        res = z - A @ coef
        # within the noise the bank has learnt (a coarse device counter stamps far coarser than the stated jitter)
        return bool(np.all(np.abs(res) < 6 * np.sqrt(r * max(self.rs[self.best] * self.scale, 1.0)) + 1.0))

    def _log(self, d, z, r) -> None:
        if not self.keep_log:
            return
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
        skew0, var0 = self._smooth_prior or (self.skew0, self.skew_var0)
        order = np.argsort(np.asarray(self.log_d), kind="stable")
        ld = np.asarray(self.log_d)[order]
        lz = np.asarray(self.log_z)[order]
        lr = np.asarray(self.log_r)[order]
        for _ in range(2):
            ks, w = mixture(filter_pass(ld, lz, lr, self.q, var0, self.rs, store=False, skew0=skew0)[3])
            fw = filter_pass(ld, lz, lr, self.q[ks], var0, self.rs[ks], skew0=skew0)
            bw = filter_pass(-ld[::-1], lz[::-1], lr[::-1], self.q[ks], var0, self.rs[ks], skew0=-skew0)
            if len(ld) < 5:
                break
            # a measurement the others (both sides of it) put beyond OUTLIER_SIGMA was let in while the live
            # filter knew little (the first few, before the gate): left out, once
            k = int(np.argmax(w))
            idx = np.arange(len(ld))
            a, var = fuse(ld, fw, bw, self.q[ks], ld, idx - 1, idx + 1)
            bad = np.abs(lz - a[k]) > OUTLIER_SIGMA * np.sqrt(var[k] + lr * self.rs[ks[k]])
            if not bad.any():
                break
            ld, lz, lr = ld[~bad], lz[~bad], lr[~bad]
            self.dropped = int(bad.sum())
        fw, bw = (*fw, pass_parts(fw)), (*bw, pass_parts(bw))
        self._cache = (len(self.log_d), ld, fw, bw, self.q[ks], w)
        return self._cache[1:]

    def smooth(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two-filter smoother over the logged measurements, averaged over the bank by likelihood: offset and
        variance at device times ``d``."""
        ld, fw, bw, qs, w = self._passes()
        a, var = combine(w, *two_filter(ld, fw, bw, qs, np.asarray(d, dtype=np.float64)))
        return a, var * self.scale
