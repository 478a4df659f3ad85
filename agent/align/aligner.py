"""The aligner: offset (and drift) of a target stream's device clock against a reference stream already on the
reference clock.  Pure: arrays in, results out.

Convention: ``offset_ns = ref_time - device_time``; a target sample stamped ``d`` on its device clock happened at
reference time ``d + offset``.  The target window is ``span = (d0, d1)`` on its device clock; the reference
signal must cover ``[d0 + prior - search, d1 + prior + search]`` on the reference clock.

Stages:

1. **Coarse** search over ``prior +- search_s`` (2 s default): either the similarity of encoder embeddings
   (``neural``: mean-centred, normalized correlation of the embedding sequences, summed over dimensions, parabolic
   vertex on the similarity curve), or the classical onset signals on a 100 Hz grid (``classical``).
2. **Fine** correlation of the classical onset signals on a 1 kHz grid around the coarse candidate
   (``+- max(fine_s, coarser sample period)``), parabolic refinement to a fraction of a millisecond.
3. **Confidence**: peak-to-sidelobe ratio (PSR) of the coarse curve and the ratio of the best peak outside the
   main lobe to the main peak.  Low PSR, an ambiguous second peak, a peak on the search edge, too few events, a
   flat/NaN signal or a missing model: the result is ``ok=False`` with a ``reason`` (abstention), never a
   confident wrong offset.
4. **Drift** (``synchub.agent.align.drift.DriftTracker``): a Theil-Sen line through the accepted window offsets
   over device time, with outliers (> 5 robust sigmas and > 3 of their own sigma from the line) rejected.

Results become ``OffsetEstimate`` evidence (``AlignResult.evidence``) with a 1-sigma from the peak width and PSR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.units import NS

from .correlation import (
    coverage_weight,
    embedding_curve,
    gcc_ml,
    ncc_valid,
    parabolic,
    peak_stats,
    smooth,
    to_grid,
)
from .markers import DEFAULT_RULES, MarkerRule
from .onsets import Onsets, matched_events


@dataclass(frozen=True)
class AlignerSettings:
    search_s: float = 2.0  # coarse search half-range around the prior
    fine_s: float = 0.12  # fine search half-range around the coarse candidate (at least the coarser period)
    grid_hz: float = 1000.0  # fine grid
    coarse_hz: float = 100.0  # classical coarse grid
    coarse_smooth_s: float = 0.02  # Gaussian smoothing of onsets for the coarse search
    fine_smooth: float = 0.3  # fine-stage Gaussian smoothing, in units of the coarser sample period
    min_psr: float = 8.0  # coarse peak-to-sidelobe ratio below this: abstain
    max_sidelobe: float = 0.8  # best peak outside the main lobe / main peak above this: abstain (ambiguous)
    neural_min_psr: float = 3.5  # embedding curves have broad peaks: their own thresholds
    neural_max_sidelobe: float = 0.6
    min_events: int = 2  # fewer onsets in the target window: abstain
    min_matched: int = 3  # fewer target events with a reference event at the chosen lag: abstain
    min_overlap: float = 0.5  # lags where the reference covers less of the target window are not considered
    sigma_floor_ns: float = 500_000.0  # shape differences between modalities' onsets
    sigma_scale: float = 1.0  # calibration of the reported sigma against measured errors
    markers: tuple[MarkerRule, ...] = DEFAULT_RULES  # what marker lines mean (``markers.py``)
    # per modality pair: what the peak cannot show (how differently they register one event), calibrated on
    # held-out data (``calibration.py``); replaces sigma_floor_ns for that pair when larger
    pair_sigma_floor_ms: tuple[tuple[str, str, float], ...] = ()
    # the hybrid weighs its classical-type and neural estimates of a window by their sigmas times these
    # (``calibration.py``: per modality pair, fitted on a calibration split; ``window_sigma_scales`` (m1, m2, method,
    # k) holds them per pair, ``WindowAligner`` sets the two of its pair)
    classical_sigma_k: float | None = None  # None: uncalibrated (the hybrid then keeps the classical estimate)
    neural_sigma_k: float | None = None
    window_sigma_scales: tuple[tuple[str, str, str, float], ...] = ()
    max_disagree_sigmas: float = 4.0  # the two further apart than this many combined sigmas: abstain


@dataclass(frozen=True)
class AlignResult:
    ok: bool
    offset_ns: int  # ref - device, valid at device_ns
    sigma_ns: int
    confidence: float  # PSR of the deciding curve
    device_ns: int  # centre of the target window, device clock
    method: str  # "classical" | "neural" | "hybrid"
    reason: str = ""  # why it abstained ("" when ok)
    neural_only: bool = False  # a hybrid's answer from its neural candidate alone (no onset correlation confirmed it)

    def evidence(self, stream: str) -> OffsetEstimate | None:
        if not self.ok:
            return None
        return OffsetEstimate(
            stream=stream,
            device_ns=int(self.device_ns),
            offset_ns=int(self.offset_ns),
            sigma_ns=max(1, int(self.sigma_ns)),
            source=self.method,
            confidence=confidence_of(self.confidence),
        )


def confidence_of(psr: float) -> float:
    """PSR -> a 0..1 confidence, 1 - exp(-PSR / 3) (0.83 at PSR 5, 0.98 at 12).  Gentle on purpose: the sigma
    already reflects the peak's quality and the ClockModel divides the sigma by the confidence."""
    return float(1.0 - math.exp(-max(psr, 0.0) / 3.0)) if math.isfinite(psr) else 1.0


def abstain(method: str, span, reason: str, offset_ns: int = 0, psr: float = 0.0) -> AlignResult:
    return AlignResult(False, int(offset_ns), 0, float(psr), int((span[0] + span[1]) // 2), method, reason)


@dataclass
class _Curve:
    offset_ns: float  # refined peak offset
    psr: float
    sidelobe: float
    at_edge: bool
    hwhm_ns: float
    curve: np.ndarray
    first_ns: float  # offset of curve[0]
    step_ns: float


class Aligner:
    """Pure aligner for one target against one reference (see module doc)."""

    def __init__(self, settings: AlignerSettings | None = None):
        self.s = settings or AlignerSettings()

    # ------------------------------------------------------------------ helpers
    def _curve_from(self, curve: np.ndarray, first_ns: float, step_ns: float, exclude: int) -> _Curve:
        i, psr, side = peak_stats(curve, exclude)
        pos = parabolic(curve, i)
        at_edge = i <= 0 or i >= len(curve) - 1
        peak = float(curve[i]) if len(curve) else 0.0
        # half width at half maximum of the main lobe (above the sidelobe mean)
        base = float(np.median(curve)) if len(curve) else 0.0
        half = base + 0.5 * (peak - base)
        lo = i
        while lo > 0 and curve[lo - 1] > half:
            lo -= 1
        hi = i
        while hi < len(curve) - 1 and curve[hi + 1] > half:
            hi += 1
        hwhm = max(0.5, 0.5 * (hi - lo + 1)) * step_ns
        return _Curve(first_ns + pos * step_ns, psr, side, at_edge, hwhm, curve, first_ns, step_ns)

    def _onset_curve(self, ref: Onsets, tgt: Onsets, span, centre_ns: float, half_ns: float, rate: float,
                     sigma_s: float, exclude_s: float) -> _Curve | str:
        step = NS / rate
        d0, d1 = int(span[0]), int(span[1])
        n_t = int((d1 - d0) / step)
        n_l = int(math.ceil(half_ns / step))
        if n_t < 4:
            return "target window too short"
        t_grid = to_grid(tgt, d0, n_t, rate)
        r0 = d0 + centre_ns - n_l * step
        r_grid = to_grid(ref, int(round(r0)), n_t + 2 * n_l, rate)
        if not np.any(t_grid > 0):
            return "no target onsets in the window"
        if not np.any(r_grid > 0):
            return "no reference onsets in the search range"
        sb = sigma_s * rate
        curve = ncc_valid(smooth(r_grid, sb), smooth(t_grid, sb))
        if len(ref.t_ns):  # lags where the reference data covers only part of the target window count less
            known = np.zeros(len(r_grid))
            a = int(np.floor((int(ref.t_ns[0]) - round(r0)) / step))
            b = int(np.ceil((int(ref.t_ns[-1]) - round(r0)) / step))
            known[max(a, 0) : max(min(b, len(known)), 0)] = 1.0
            curve = curve * coverage_weight(known, n_t, self.s.min_overlap)
        exclude = max(2, int(math.ceil(exclude_s * rate)))
        return self._curve_from(curve, float(round(r0) - d0), step, exclude)

    def _sigma(self, c: _Curve, floor_ns: float, period_s: float = 0.0, n_events: int = 1) -> int:
        """1-sigma of a window's offset: each matched onset is quantized by the coarser sample period
        (uniform, period / sqrt(12)) and averaged over the window's events; plus the peak width over the PSR
        and a floor for shape differences between modalities.  ``sigma_scale`` calibrates it (bench)."""
        psr = c.psr if np.isfinite(c.psr) else 100.0
        q = period_s * NS / math.sqrt(12.0) / math.sqrt(max(n_events, 1))
        w = c.hwhm_ns / max(psr, 4.0) / math.sqrt(max(n_events, 1))
        return int(self.s.sigma_scale * math.sqrt(q * q + w * w + floor_ns * floor_ns + self.s.sigma_floor_ns ** 2))

    def _check_inputs(self, ref: Onsets, tgt: Onsets) -> str:
        if not tgt.ok:
            return f"target: {tgt.problem}"
        if not ref.ok:
            return f"reference: {ref.problem}"
        if tgt.n_events < self.s.min_events:
            return f"too few target events ({tgt.n_events} < {self.s.min_events})"
        return ""

    def _judge(self, c: _Curve, min_psr: float | None = None, max_sidelobe: float | None = None) -> str:
        min_psr = self.s.min_psr if min_psr is None else min_psr
        max_sidelobe = self.s.max_sidelobe if max_sidelobe is None else max_sidelobe
        if c.at_edge:
            return "peak at the edge of the search range"
        if not c.psr >= min_psr:
            return f"low confidence (PSR {c.psr:.1f} < {min_psr})"
        if c.sidelobe > max_sidelobe:
            return f"ambiguous (second peak {c.sidelobe:.2f} of the main peak)"
        return ""

    # ------------------------------------------------------------------ stages
    def fine(self, ref: Onsets, tgt: Onsets, span, centre_ns: float, period_s: float, method: str = "hybrid",
             coarse_psr: float | None = None, min_matched: int | None = None,
             chance_sigmas: float = 3.0) -> AlignResult:
        """Fine onset correlation around ``centre_ns`` on the 1 kHz grid (+- max(fine_s, period)).
        ``min_matched`` (default ``settings.min_matched``) and ``chance_sigmas`` (how far above the chance count
        the matched events must be) are lowered by callers whose candidate is independent evidence (a neural lag)."""
        why = self._check_inputs(ref, tgt)
        if why:
            return abstain(method, span, why, int(centre_ns))
        half = max(self.s.fine_s, 1.0 * period_s) * NS
        sigma_s = max(2.0 / self.s.grid_hz, self.s.fine_smooth * period_s)
        c = self._onset_curve(ref, tgt, span, centre_ns, half, self.s.grid_hz, sigma_s, period_s + 3 * sigma_s)
        if isinstance(c, str):
            return abstain(method, span, c, int(centre_ns))
        if c.at_edge:
            return abstain(method, span, "fine peak at the edge of its range", int(c.offset_ns), c.psr)
        tol = max(3.0 * sigma_s, period_s, 0.01) * NS
        matched, chance, n_t = matched_events(ref, tgt, c.offset_ns, tol, span)
        need = self.s.min_matched if min_matched is None else min_matched
        if matched < need or matched <= chance + chance_sigmas * math.sqrt(chance):
            return abstain(method, span, f"too few matched events ({matched} of {n_t}, {chance:.1f} by chance)",
                            int(c.offset_ns), c.psr)
        psr = c.psr if coarse_psr is None else coarse_psr
        if coarse_psr is None:
            why = self._judge(c)
            if why:
                return abstain(method, span, why, int(c.offset_ns), c.psr)
        elif c.sidelobe > self.s.max_sidelobe:
            return abstain(method, span, f"fine curve ambiguous (second peak {c.sidelobe:.2f})", int(c.offset_ns),
                            c.psr)
        floor = 0.3 * NS / self.s.grid_hz
        spread = max(ref.notes.get("spread_ns", 0.0), tgt.notes.get("spread_ns", 0.0)) / math.sqrt(max(matched, 1))
        floor = math.hypot(floor, spread)  # marker lines whose onsets scatter by their rule's spread
        # level mode (still images): an event's evidence is spread over its visibility, not one sample interval
        q_period = period_s * (math.sqrt(3.0) if "impulses" in (ref.kind, tgt.kind) and period_s >= 0.5 else 1.0)
        sigma = self._sigma(c, floor, q_period, matched)
        return AlignResult(True, int(round(c.offset_ns)), sigma, float(psr),
                           int((span[0] + span[1]) // 2), method)

    def classical(self, ref: Onsets, tgt: Onsets, span, prior_ns: int, period_s: float) -> AlignResult:
        """Coarse onset correlation over prior +- search_s (100 Hz), then ``fine``."""
        why = self._check_inputs(ref, tgt)
        if why:
            return abstain("classical", span, why, prior_ns)
        sig = max(self.s.coarse_smooth_s, 0.1 * period_s)
        c = self._onset_curve(ref, tgt, span, float(prior_ns), self.s.search_s * NS, self.s.coarse_hz, sig,
                              max(3 * sig, period_s, 0.05))
        if isinstance(c, str):
            return abstain("classical", span, c, prior_ns)
        why = self._judge(c)
        if why:
            return abstain("classical", span, why, int(c.offset_ns), c.psr)
        return self.fine(ref, tgt, span, c.offset_ns, period_s, "classical", coarse_psr=c.psr)

    def neural(self, ref_times, ref_vectors, tgt_times, tgt_vectors, span, prior_ns: int,
               rate_hz: float) -> AlignResult:
        """Coarse lag from embedding similarity over prior +- search_s, parabolic vertex on the curve."""
        curve, first, step, why = embedding_curve(ref_times, ref_vectors, tgt_times, tgt_vectors, span, prior_ns,
                                                  self.s.search_s, rate_hz)
        if why:
            return abstain("neural", span, why, prior_ns)
        exclude = max(2, int(math.ceil(0.1 * rate_hz)))
        c = self._curve_from(curve, first, step, exclude)
        why = self._judge(c, self.s.neural_min_psr, self.s.neural_max_sidelobe)
        if why:
            return abstain("neural", span, why, int(c.offset_ns), c.psr)
        return AlignResult(True, int(round(c.offset_ns)), self._sigma(c, 0.3 * step, 2.0 * step / NS, 1), float(c.psr),
                           int((span[0] + span[1]) // 2), "neural")

    def fuse(self, c: AlignResult, n: AlignResult, span) -> AlignResult:
        """One window's classical-type estimate ``c`` and neural estimate ``n``, both ok, as one: their
        inverse-variance mean, each sigma calibrated (``classical_sigma_k``, ``neural_sigma_k``), with the fused
        sigma; an abstention when they disagree by more than ``max_disagree_sigmas`` of their combined sigma (one of
        them is wrong, a confident peak does not say which; it keeps the classical offset and sigma for
        ``disagreement.DisagreementRun``).  Uncalibrated (either k None) the raw sigmas are not comparable across
        methods (the neural's is pessimistic): the classical estimate, after the check."""
        kc, kn = self.s.classical_sigma_k, self.s.neural_sigma_k
        sc = max((1.0 if kc is None else kc) * c.sigma_ns, 1.0)
        sn = max((1.0 if kn is None else kn) * n.sigma_ns, 1.0)
        d = float(c.offset_ns - n.offset_ns)
        both = math.hypot(sc, sn)
        if abs(d) > self.s.max_disagree_sigmas * both:
            return AlignResult(False, c.offset_ns, int(round(sc)), c.confidence, c.device_ns, "hybrid",
                               f"neural and classical disagree by {abs(d) / 1e6:.0f} ms ({abs(d) / both:.1f} sigma)")
        if kc is None or kn is None:
            return AlignResult(True, c.offset_ns, c.sigma_ns, c.confidence, c.device_ns, "hybrid")
        wc, wn = 1.0 / sc**2, 1.0 / sn**2
        off = (wc * c.offset_ns + wn * n.offset_ns) / (wc + wn)
        return AlignResult(True, int(round(off)), int(round(1.0 / math.sqrt(wc + wn))), c.confidence, c.device_ns,
                           "hybrid")

    def hybrid(self, ref: Onsets, tgt: Onsets, span, prior_ns: int, period_s: float,
               neural: AlignResult | None) -> AlignResult:
        """Neural coarse search + fine onset correlation, cross-checked and fused (``fuse``).

        * the classical wide search is confident: fused with the neural estimate when there is one (abstains when
          the two disagree by many sigmas, however confident the classical peak), else the classical result;
        * only the neural candidate is confident: the fine onset correlation around it (its second peak checked
          on the local curve), or the neural offset itself when the fine signals are unusable there; abstains when
          a stream is flat (no onset above its noise: nothing to align on, however faint noise's embeddings peak).
        """
        c, n_ok = self.classical(ref, tgt, span, prior_ns, period_s), neural is not None and neural.ok

        def as_hybrid(r: AlignResult, k: float | None, alone: bool = False) -> AlignResult:
            return AlignResult(True, r.offset_ns, int(round((1.0 if k is None else k) * r.sigma_ns)), r.confidence,
                               r.device_ns, "hybrid", neural_only=alone)

        if c.ok:
            return self.fuse(c, neural, span) if n_ok else as_hybrid(c, self.s.classical_sigma_k)
        if not n_ok:
            reason = c.reason if neural is None else f"neural: {neural.reason}; classical: {c.reason}"
            return abstain("hybrid", span, reason, prior_ns)
        if flat := "; ".join(f"{w}: {o.problem}" for w, o in (("reference", ref), ("target", tgt)) if o.flat):
            return abstain("hybrid", span, f"neural peak on a flat signal ({flat})", prior_ns)
        # broad embedding peak, pessimistic sigma: refined within +- 2 sigma (<= 0.15 s, >= a period), not fused
        half = max(period_s, min(2.0 * neural.sigma_ns / NS, 0.15))
        f = self.fine(ref, tgt, span, float(neural.offset_ns), half, "hybrid", coarse_psr=neural.confidence,
                      min_matched=2, chance_sigmas=2.0)
        if f.ok and abs(f.offset_ns - neural.offset_ns) <= half * NS:  # (fine looks +- fine_s: beyond, another onset)
            return as_hybrid(f, self.s.classical_sigma_k)
        return as_hybrid(neural, self.s.neural_sigma_k, alone=True)


def apply_arrival_bound(r: AlignResult, bound_ns: int | None, slack_ns: int = 500_000) -> AlignResult:
    """Every sample reaches the host after it was taken, so ref - device <= min(host - device) over the window,
    when the host stamps are arrivals on the reference clock.  An estimate above that bound (+ slack for the
    device's stamp jitter) is moved onto the bound.  Only for a bound known to hold (the benches' simulated
    arrivals); the live tracker moves only estimates within 3 sigma of it and abstains on the others."""
    if bound_ns is None or not r.ok or r.offset_ns <= bound_ns + slack_ns:
        return r
    return replace(r, offset_ns=int(bound_ns), sigma_ns=max(r.sigma_ns, int(abs(r.offset_ns - bound_ns) / 2)))


def violates_bound(r: AlignResult, bound_ns: int | None, slack_ns: int = 500_000) -> bool:
    """``r`` lies above the arrival bound by more than slack + 3 of its sigmas."""
    return bound_ns is not None and r.ok and r.offset_ns - bound_ns > slack_ns + 3 * r.sigma_ns


def gcc_fine(ref_t, ref_x, tgt_t, tgt_x, span, centre_ns: float, half_ns: float, rate_hz: float,
             sub_s: float = 2.0, method: str = "hybrid", max_sidelobe: float = 0.6, frame: int = 2048) -> AlignResult:
    """``_gcc_pass`` around ``centre_ns``, then once more around its result: a parabolic vertex is biased toward
    the nearer sample unless the peak sits near a whole sample, so the second pass, whose lag is near zero, keeps
    the result independent of where the coarse stage put the centre."""
    r = _gcc_pass(ref_t, ref_x, tgt_t, tgt_x, span, centre_ns, half_ns, rate_hz, sub_s, method, max_sidelobe, frame)
    if not r.ok:
        return r
    r2 = _gcc_pass(ref_t, ref_x, tgt_t, tgt_x, span, float(r.offset_ns), 4.0 * NS / rate_hz, rate_hz, sub_s,
                   method, max_sidelobe, frame)
    return r2 if r2.ok else r


def _gcc_pass(ref_t, ref_x, tgt_t, tgt_x, span, centre_ns: float, half_ns: float, rate_hz: float,
              sub_s: float, method: str, max_sidelobe: float, frame: int) -> AlignResult:
    """Sample-level refinement of two streams of the same waveform (two microphones): GCC (coherence-weighted,
    ``correlation.gcc_ml``; PHAT-like where the signals are coherent) of the raw samples on a common ``rate_hz`` grid around ``centre_ns`` (+- ``half_ns``), in ``sub_s`` sub-windows (so drift
    does not smear the peak), parabolic vertex per sub-window, median over them.  Abstains when fewer than half of
    the sub-windows agree within two samples."""
    d0, d1 = int(span[0]), int(span[1])
    rt, tt = np.asarray(ref_t, dtype=np.int64), np.asarray(tgt_t, dtype=np.int64)
    rx = np.asarray(ref_x, dtype=np.float64).reshape(len(rt), -1)[:, 0]
    tx = np.asarray(tgt_x, dtype=np.float64).reshape(len(tt), -1)[:, 0]
    if len(rt) < 16 or len(tt) < 16 or not (np.all(np.isfinite(rx)) and np.all(np.isfinite(tx))):
        return abstain(method, span, "gcc: too few or non-finite samples", int(centre_ns))
    step = NS / rate_hz
    lag_max = int(math.ceil(half_ns / step))
    n_sub = max(1, int((d1 - d0) // int(sub_s * NS)))
    m = int(sub_s * NS / step) if n_sub > 1 else int((d1 - d0) / step)
    lags: list[float] = []
    times: list[float] = []  # each sub-window's estimate holds at its own centre (drift)
    for k in range(n_sub):
        g = d0 + k * m * step + np.arange(m) * step
        a = np.interp(g, tt, tx, left=0.0, right=0.0)
        b = np.interp(g + centre_ns, rt, rx, left=0.0, right=0.0)
        if np.std(a) == 0 or np.std(b) == 0:
            continue
        full = frame // 2 - 1
        cc = gcc_ml(b, a, full, frame)  # over +-frame/2: hum-only sub-windows show their periodic peaks
        i, _psr, side = peak_stats(cc, max(2, int(0.002 * rate_hz)))
        if abs(i - full) <= lag_max and 0 < i < len(cc) - 1 and side < max_sidelobe:
            lags.append(parabolic(cc, i) - full)  # only sub-windows where a shared sound stands out
            times.append(float(g[m // 2]))
    if not lags:
        return abstain(method, span, "gcc: no usable sub-window", int(centre_ns))
    lags_a = np.asarray(lags)
    med = float(np.median(lags_a))
    agree = np.abs(lags_a - med) <= 2.0
    if agree.sum() < max(1, len(lags_a) // 2 + 1):
        return abstain(method, span, f"gcc: sub-windows disagree ({int(agree.sum())} of {len(lags_a)})",
                        int(centre_ns))
    lag = float(np.mean(lags_a[agree]))
    spread = float(np.std(lags_a[agree])) if agree.sum() > 1 else 0.5
    sigma = max(0.1, spread / math.sqrt(agree.sum()), 0.1) * step
    # tgt[k] ~ ref[k - lag] on grids offset by centre: the true offset is centre - lag samples
    at = int(round(float(np.mean(np.asarray(times)[agree]))))
    return AlignResult(True, int(round(centre_ns - lag * step)), int(sigma), float(agree.sum()), at, method)
