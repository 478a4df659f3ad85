"""ClockModel: one stream's device clock mapped onto the reference clock, with drift and an uncertainty.  Pure.

Evidence, each with its own noise model (the modules of this package):

* **trigger edges** (device time, reference time, 1-sigma edge jitter) and **aligner offsets** (``OffsetEstimate``,
  ref - device with a sigma) go into a Kalman filter bank on (offset, skew) whose skew follows a random walk
  (thermal drift): intensities from 0 (a perfect crystal: the filter is then exactly the least-squares line) to
  50 ppm/sqrt(h) in a 1-2-5 series (``RW_BANK_PPM``), times noise scales from 0.01x to 100x the stated variance
  (``R_SCALES``), averaged by likelihood (``bank.FilterBank``, ``kalman``).  A segment's first edges wait until two
  of them agree on a plausible skew, or three on any line; after a reset the previous segment's skew (the same
  oscillator) is the prior; a segment that only aligner offsets map (seconds late, ms apart) starts from the skew
  its arrival envelope measured (``Envelope.slope``), not from a line through its first few offsets, and what they
  map carries the error they all share (``OffsetEstimate.shared_ns``) undiminished.  Innovations
  beyond ``gate_sigma`` are rejected and counted; a run of rejections that agree with each other starts a new
  segment (a step) rather than locking the filter out.
* **round-trip probes** (``probes``): min-RTT filtered bands, their centres into a second filter bank; a mapped
  time's 1-sigma adds the band's typical half-width (the link's asymmetry no round trip can see) and the wander.
* **arrival times only** (``envelope``): the lower envelope of arrival - device time, late by the link's minimum
  latency.

Each mapped time gets the estimate with the smallest variance *at that time* (``choice.choose``): the smoothed
variance offline, the filter's prediction live; trigger edges and aligner offsets are fused by variance in the same
filter (``method`` "hybrid" when both are used).  Segments (a device clock reset starts a new one, never a mapping
across it) are the ``timeline.Timeline`` this class extends.

**Cost.**  An edge or probe is one 2x2 Kalman step per filter of the bank (vectorized), arrivals a min per chunk, a
few comparisons against the segment's estimate and a hull over ~``window_s`` points once per second.
``map(..., smooth=True)`` (the collector/offline path) reruns the filters forward and backward over the stored
evidence once (cached until new evidence) and fuses the two (a two-filter smoother) at the mapped times.

Times are int64 ns; floats only inside the filters, relative to a per-segment origin.
"""

from __future__ import annotations

import math

import numpy as np

from synchub.agent.core.evidence import OffsetEstimate, Probe
from synchub.agent.core.units import NS

from .choice import METHOD_ORDER, UNKNOWN_UNC_NS, choices, choose
from .fallback import MAX_TRIGGER_UNC_NS, TriggerFallback
from .kalman import q_per_ns
from .probes import RttWindow, excludes_line, fit_probe, probe_band
from .segment import Segment
from .timeline import EARLY_MARGIN_NS, EARLY_RESPLIT_EDGES, Timeline

#: Random-walk intensities of the filter bank, ppm per sqrt(hour): a 1-2-5 series, so that a drift wander anywhere
#: from a steady crystal to a heated one is within a factor of 1.6 of one of them (the likelihood-weighted average of
#: the bank then follows the data, not the nearest preset).
RW_BANK_PPM = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
#: Scales of the stated evidence variance the bank also tries (the stated jitter may be ~10x too large or ~10x too
#: small: a device that stamps edges with a coarse counter adds tick/sqrt(12) the trigger line cannot know of).
R_SCALES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)


class ClockModel(Timeline):
    """Device time -> reference time for one stream.  See the module docstring.

    ``method`` forces an estimator ("triggers", "probes", "arrival", "neural", "hybrid"); "auto" picks the best
    evidence.  ``edge_sigma_ns`` is the default edge jitter used when ``add_edges`` gets no sigma.  ``r_scales``: the
    evidence-noise scales the bank tries (file alignment trusts a sampled edge's quantization as the noise floor).
    """

    def __init__(self, name: str = "", nominal_period_ns: int | None = None, window_s: float = 120.0, *,
                 method: str = "auto", gate_sigma: float = 6.0, skew_prior_ppm: float = 2000.0,
                 rw_bank_ppm: tuple[float, ...] = RW_BANK_PPM, reset_back_ns: int = 10_000_000,
                 reset_forward_ns: int = 10 * NS, probe_rtt_margin: float = 0.25, edge_sigma_ns: float = 1000.0,
                 early_margin_ns: int = EARLY_MARGIN_NS, consensus: int = 2, r_scales: tuple[float, ...] = R_SCALES):
        pairs = sorted(((i, sc) for i in range(len(rw_bank_ppm)) for sc in r_scales),
                       key=lambda p: (p[0], abs(math.log(p[1]))))
        super().__init__(window_s, gate_sigma=gate_sigma, skew_prior=skew_prior_ppm * 1e-6,
                         qs=np.array([q_per_ns(rw_bank_ppm[i]) for i, _ in pairs]),
                         rscales=np.array([sc for _, sc in pairs]), reset_back_ns=reset_back_ns,
                         reset_forward_ns=reset_forward_ns, early_margin_ns=early_margin_ns, consensus=consensus)
        self.name = name
        self.nominal_period_ns = nominal_period_ns
        self.samples_in_order = nominal_period_ns is not None  # a step back of a regular stream: a reset at once
        self.forced = method
        self.rw_bank_ppm = tuple(rw_bank_ppm)
        self._bank_rw = [float(rw_bank_ppm[i]) for i, _ in pairs]
        self.probe_rtt_margin = probe_rtt_margin
        self.edge_sigma_ns = edge_sigma_ns
        self._rtt = RttWindow(self.window_s, probe_rtt_margin)  # the min-RTT window of the current segment
        self._last_method = "identity"
        # a trigger-wired stream (``StreamClocks`` sets it): its aligner offsets are its fallback, never its path
        self.fallback: TriggerFallback | None = None

    def _new_segment(self, device_ns: int, host_ns: int, z: int, cause: str = "start") -> Segment:
        seg = super()._new_segment(device_ns, host_ns, z, cause)
        self._rtt.clear()
        return seg

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
            dr, z = float(d - seg.dev0), float(r - d - seg.z0)
            if seg.trig.update(dr, z, sigma * sigma) or self._back_after_fallback(seg, dr, z, sigma * sigma):
                seg.edges += 1
                if seg.first_edge_ns is None:
                    seg.first_edge_ns = d
                seg.last_edge_ns = d if seg.last_edge_ns is None else max(seg.last_edge_ns, d)
                if seg.cause == "arrival_early" and seg.trig.n >= EARLY_RESPLIT_EDGES and not seg.placed:
                    self._resplit_early(seg)
                if seg.fall is not None or self.fallback is not None and self.fallback.active:
                    seg.fall = None  # edges again: the trigger path takes over (it predicted across the gap)
                    if self.fallback is not None:
                        self.fallback.edges_back(self.name)
                ok += 1
            else:
                self._count("edge_outlier")
                ok += self._step(seg, "trig")
        return ok

    def _back_after_fallback(self, seg: Segment, dr: float, z: float, var: float) -> bool:
        """An edge pair the trigger bank gated out while aligner offsets carried the stream: where the fallback
        bank (which followed the clock through the pause) agrees with it, the clock drifted beyond the trigger
        bank's prediction, not stepped: the bank reopens by that much and takes the pair (no new segment)."""
        fall = seg.fall
        if fall is None or fall.n == 0 or seg.last_edge_ns is None:
            return False
        a, fvar = fall.predict(np.array([dr]))
        fvar = float(fvar[0]) + seg.shared_var + var
        if abs(z - float(a[0])) > self.gate_sigma * math.sqrt(fvar):
            return False
        nu = z - seg.trig.predict(np.array([dr]))[0][0]
        gap = max(float(seg.dev0 + dr - seg.last_edge_ns), 1.0)
        seg.trig.reopen(nu * nu + fvar, (nu / gap) ** 2)
        seg.trig.rejected -= 1  # the gated try just before
        return seg.trig.update(dr, z, var)

    def add_offset(self, est: OffsetEstimate) -> bool:
        """An aligner's offset (ref - device at ``device_ns``) with its sigma, fused by variance with the edges."""
        sigma = float(est.sigma_ns) / max(min(float(est.confidence), 1.0), 1e-3)
        if not (sigma > 0 and math.isfinite(sigma)):
            self._count("offset_bad_sigma")
            return False
        d = int(est.device_ns)
        if self.fallback is not None and (not self.segments or self.segments[-1].fresh):
            self._count("offset_no_segment")  # a wired stream's offsets never start nor place a segment
            return False
        seg = self._segment_for(d, d + int(est.offset_ns), int(est.offset_ns), "offset")
        if seg is None:
            return False
        if self.fallback is not None:
            return self._fallback_offset(seg, est, sigma)
        if seg.trig.n == 0 and not seg.edges:  # offsets alone: the drift from the arrivals, not from the first few
            measured = seg.env.slope()
            if measured is not None:
                seg.trig.prior_skew(*measured)
        if seg.trig.update(float(d - seg.dev0), float(est.offset_ns - seg.z0), sigma * sigma):
            seg.offsets += 1
            seg.shared_var = float(est.shared_ns) ** 2
            return True
        self._count("offset_outlier")
        return self._step(seg, "trig", "offsets") > 0

    def _fallback_offset(self, seg: Segment, est: OffsetEstimate, sigma: float) -> bool:
        """A trigger-wired stream's aligner offset (``fallback``): measured against the trigger path where that
        covers it; into the segment's fallback bank only when the trigger evidence is stale and the offset's window
        lies after the last edge; else it touches nothing.  ``sigma``: the 1-sigma ``add_offset`` weighs it by."""
        fb, d = self.fallback, int(est.device_ns)
        if fb.covered(seg, d) and seg.trig.n:
            a, var = seg.trig.predict(np.array([float(d - seg.dev0)]))
            if float(var[0]) <= float(MAX_TRIGGER_UNC_NS) ** 2:
                fb.measure(est.offset_ns, seg.z0 + int(round(float(a[0]))))
        if fb.fresh(seg, d):
            self._count("offset_trigger_fresh")
            return False
        if seg.last_edge_ns is not None and d <= seg.last_edge_ns:
            self._count("offset_covered_by_edges")
            return False
        est = fb.correct(est)
        if seg.fall is None:
            seg.fall = fb.start(self.name, seg.trig)
            seg.fall_method = "hybrid" if seg.trig.n else "neural"
            seg.trig_until = (seg.dev0 if seg.last_edge_ns is None else seg.last_edge_ns) + fb.stale_ns
            if seg.fall.n == 0 and (measured := seg.env.slope()) is not None:
                seg.fall.prior_skew(*measured)  # offsets alone: the drift from the arrivals
        if seg.fall.update(float(d - seg.dev0), float(est.offset_ns - seg.z0), sigma * sigma):
            seg.fallback_offsets += 1
            fb.fed += 1
            seg.shared_var = float(est.shared_ns) ** 2
            return True
        self._count("offset_outlier")
        if not seg.fall.step:
            return False
        # offsets that agree with each other beyond the gate: the clock wandered further than the edges' drift
        # foretold (no segment: the bank reopens by that much and takes them)
        bad, seg.fall.step = seg.fall.step, []
        nu = bad[-1][1] - float(seg.fall.predict(np.array([bad[-1][0]]))[0][0])
        span = max(bad[-1][0] - (seg.trig_until - fb.stale_ns - seg.dev0), float(NS))
        seg.fall.reopen(nu * nu, (nu / span) ** 2)
        self._count("fallback_reanchored")
        taken = sum(seg.fall.update(bd, bz, br) for bd, bz, br in bad)
        seg.fallback_offsets += taken
        fb.fed += taken
        return taken > 0

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
        lo, hi, inconsistent, whole_hi = probe_band(seg, s, d, r)
        if inconsistent:
            self._count("probe_arrival_inconsistent")  # a bound is wrong somewhere: keep the round trip's
        excluded = excludes_line(seg, float(d - seg.dev0), lo, hi)
        if excluded:
            self._count("probe_excludes_line")  # whatever its round trip: it tells of a step (or lies)
        if excluded > 0:  # above the line, a step back: the arrivals that tightened it are the old timeline's
            hi = whole_hi
        if not self._rtt.admit(s, int(hi - lo), seg.probe.n) and not excluded:
            self._count("probe_rtt_filtered")
            return False
        if fit_probe(seg, float(d - seg.dev0), lo, hi, rtt, excluded):
            return True
        self._count("probe_outlier")
        return self._step(seg, "probe", "probes") > 0

    def add(self, item: Probe | OffsetEstimate) -> None:
        """Any evidence item (``Probe`` or ``OffsetEstimate``; edges go through a matcher first)."""
        if isinstance(item, Probe):
            self.add_probe(item.host_send_ns, item.device_ns, item.host_recv_ns)
        elif isinstance(item, OffsetEstimate):
            self.add_offset(item)
        else:
            raise TypeError(f"ClockModel.add: unsupported evidence {type(item).__name__}")

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
            names = [method] if method else choices(seg.candidates(), self.forced)
            ests, kept = [], []
            for name in names:
                # an estimate whose variance cannot fall below what the ones so far give everywhere cannot win
                floor = seg.var_floor(name)
                if ests and floor is not None and floor >= float(np.max(np.min([v for _, v in ests], axis=0))):
                    continue
                ests.append(seg.estimate(name, d, smooth))
                kept.append(name)
            a, var, m = choose(ests, kept)
            ref[sel] = dev[sel] + seg.z0 + np.rint(a).astype(np.int64)
            unc[sel] = np.minimum(np.rint(np.sqrt(np.maximum(var, 0.0))), UNKNOWN_UNC_NS).astype(np.int64)
            used |= m
        self._last_method = min(used, key=METHOD_ORDER.index) if used else "identity"
        return ref, unc, segs

    def arrival_bound(self, device_ns, skew_ppm: float, line: bool = True) -> np.ndarray:
        """The latest reference time each of ``device_ns`` (current segment) can have been taken at, from the
        arrivals so far: the tightest block minimum of host - device carried there with ``skew_ppm`` of rate error
        (``Envelope.bounds``); +inf (float) where no arrival has been seen.  With ``line``, also the envelope's line
        where it is fitted (``Envelope.slope``: enough blocks) with a slope within ``skew_ppm``: the hull edge
        under the minima, late by the link's minimum latency only (a line through a sparse stream's first few
        arrivals may tilt by thousands of ppm and lie below the truth: not used)."""
        dev = np.atleast_1d(np.asarray(device_ns, dtype=np.int64))
        if not self.segments:
            return np.full(len(dev), np.inf)
        seg = self.segments[-1]
        d = (dev - seg.dev0).astype(np.float64)
        b = seg.env.bounds(d, float(skew_ppm) * 1e-6)
        fitted = seg.env.slope() if line else None
        if fitted is not None and abs(fitted[0]) <= float(skew_ppm) * 1e-6:
            b = np.minimum(b, seg.env.predict(d))
        return dev.astype(np.float64) + seg.z0 + b

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
        names = choices(seg.candidates(), self.forced)
        return next(iter(choose([seg.estimate(m, d, False) for m in names], names)[2]))

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
            bank = seg.bank_for(m)
            a, var = bank.predict(np.array([d]))
            if m == "probes":
                var = var + seg.band**2 + seg.wander
            elif m == "neural" or bank is seg.fall:
                var = var + seg.shared_var
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
        if self.fallback is not None:
            out["fallback"] = {**self.fallback.state(), "offsets": seg.fallback_offsets}
        if seg.probes:
            out.update(probe_band_ns=int(seg.band), probe_wander_ns=int(math.sqrt(seg.wander)), min_rtt_ns=int(seg.min_rtt))
        return out
