"""How an input file's clock is tied to the reference clock: sync edges (TPrime-style), barcodes, or the aligner.

A ``Link`` maps times on an input's own clock (its *file clock*: an XDF's recorder, a WAV's sample clock, a CSV's
time column) onto the reference clock with one agent ``ClockModel`` per timeline of that clock (a CSV whose clock
went back has two).  Its evidence:

* ``edge_link``: the input's sync edges (on its file clock) paired with the reference's sync edges (on the
  reference clock) by ``edge_pairs.pair_edges``, or by barcode value where both sides decode barcodes
  (``barcode.BarcodeDecoder``), fed to the model as trigger edge pairs (``ClockModel.add_edges``) with the edges'
  timing error as sigma;
* ``aligner_link``: windows of one of its streams aligned against a reference stream by the aligner's public entry
  point (``align.window.WindowAligner.estimate``; accepted results through ``align.drift.DriftTracker``, sigmas scaled
  by sqrt(window / hop) as ``AlignmentTracker`` does), judged all together once the input is read (``judge``: the
  robust line's, each side of a step on its own), fed as ``OffsetEstimate`` evidence.  The uncertainty it maps
  with is calibrated by the file engine's own table (``out_table``, ``calibration.FILES_TABLE``): without receive
  times the error left is a bias the windows share (a vowel's onset taken for its utterance's start in noise), which
  the model's average of many windows does not shrink: it is one window's sigma over a minute of windows, falling
  with a longer span as measured (``Link.shared_ns``), unless the onset check measured it; the link
  carries it, not the model's evidence (counted once), and the table scales all it says (``Link.map_parts``).

Both read bounded windows of data: the aligner's buffers hold one window plus its search range.  Pure apart from
iterating the pieces it is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from synchub.agent.align.aligner import AlignerSettings
from synchub.agent.align.calibration import SigmaTable
from synchub.agent.align.disagreement import DisagreementRun
from synchub.agent.align.drift import DriftTracker
from synchub.agent.align.tracker import calibrated_settings, window_evidence
from synchub.agent.align.window import WindowAligner, load_runners, modality_of, reason_kind
from synchub.agent.clock.barcode import BarcodeDecoder
from synchub.agent.clock.choice import UNKNOWN_UNC_NS
from synchub.agent.clock.edge_pairs import EdgePairs, pair_codes, pair_edges
from synchub.agent.clock.model import R_SCALES, RW_BANK_PPM, ClockModel
from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.stream import StreamInfo

from .judge import judge_windows

NS = 1_000_000_000
MIN_PAIRS = 3
#: Dense streams are mapped through the clock model at this spacing and interpolated in between (``dense_map``).
DENSE_STEP_NS = 20_000_000
#: Random walks the links' clock models try (ppm per sqrt(hour)): a crystal's thermal wander, not faster.  A sampled
#: pulse's timing error is a sawtooth where the pulses' phase walks slowly across the sample grid; a faster walk
#: would follow it.
LINK_RW_PPM = tuple(r for r in RW_BANK_PPM if r <= 2.0)
#: Scales of the stated edge variance the links' models try: not below it.  The stated sigma of a sampled edge is
#: its quantization (a sample period / sqrt(12)); over a run of pulses whose phase walks slowly across the sample
#: grid the errors form a ramp that a line fits closely, and a model that believed the noise smaller would take the
#: ramp's wrap for a clock step.
LINK_R_SCALES = tuple(s for s in R_SCALES if s >= 1.0)
MIN_OFFSETS = 2
#: The bias an aligner link's windows share (a vowel's onset taken for its utterance's start, a wrong peak the next
#: windows also see) is shared by the windows of about a minute: over a longer span it falls as 1 / span, as far as
#: that was measured (``BIAS_MEASURED_NS``), and beyond it as independent minutes, the cautious square root
#: (``Link.shared_ns``).  On the corpus's calibration split (16 speech and 10 sound-effect recordings at 60, 150 and
#: 300 s; the file engine's table refit for each law) 1 / span kept the 1-sigma's coverage level across the lengths
#: (64.9 / 68.7 / 69.3 %; held-out 68.4 / 65.1 / 78.5 %); the square root over-covered the longer ones (61.8 / 75.6 /
#: 76.6 %; held-out 300 s 82.4 %), one window's sigma at every length more so (58 % at 60 s, 82-90 % at 300 s).
BIAS_SPAN_NS = 60 * NS
BIAS_MEASURED_NS = 300 * NS
#: Edge pairs of digital steps scatter about their fit by the quantization of both sides (a sample period / sqrt(12)
#: each) where the pulses' phase walks across each sample grid (1.00 of it in ``bench align-files``); a side whose
#: clock paced the pulses (SpikeGLX's sync source is an imec or NI card's own) sees every pulse at the same phase, so
#: its quantization is one bias all edges share, up to half a sample, which no fit averages away (0.64 of it there).
#: Below this share, the part of the expected variance the residuals do not show is that shared bias: the link's
#: uncertainty is at least its square root (``Link.floor_ns``).
SHARED_BELOW = 0.8


@dataclass
class Link:
    """An input's file clock -> the reference clock (see the module docstring)."""

    method: str  # "reference", "edges", "barcodes", "hybrid", "neural", "classical"
    models: dict[int, ClockModel] = field(default_factory=dict)
    via: str = ""  # "<stream> -> <reference stream>"
    pairs: dict[int, EdgePairs] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    residuals: list[tuple[int, int]] = field(default_factory=list)  # (file time, evidence - model) ns
    scatter_ns: float = 0.0  # aligner windows: their scatter beyond their sigmas (``clock.robust.robust_weighed``)
    window_sigma_ns: float = 0.0  # aligner windows: one window's sigma (the median of those the model weighs) ...
    span_ns: int = 0  # ... and the time from the first one's start to the last one's end (``shared_ns``) ...
    bias_averages: bool = False  # ... over which their shared bias averages (a pair the file engine's table has)
    drift_sigma_ppm: float | None = None  # aligner windows: the 1-sigma of the drift over them (``judge.drift_sigma``)
    # aligner links (k, g ns; the file engine's table, else 1, 0): the mapped uncertainty is
    # k * sqrt(unc^2 + shared^2 + hidden^2 + g^2) (``shared_ns``: none where the onset check measured it), and the
    # drift's beyond the windows (``map_parts``); None (edges): as the model reports it
    calibration: tuple[float, float] | None = None
    floor_ns: float = 0.0  # edge links: the timing error every edge shares (a side that paced the pulses)
    steps: list = field(default_factory=list)  # aligner links: ``align.steps.Step``s between segments of its model
    disputed: list = field(default_factory=list)  # ... and spans its line is disputed in (``judge.disputed``)
    shift_ns: int = 0  # aligner links: added to every mapped time (``onset_check``: the rise the windows hid) ...
    drift_fix: tuple[float, int] = (0.0, 0)  # ... and (ppm, about a reference time): the drift they missed (``Drift``)
    hidden_ns: float = 0.0  # ... and its 1-sigma: what the average could not see may be as much again (half of it)
    bias_measured: bool = False  # ... moved to the start of the sounds' rise: the bias the windows share measured
    # there (``hidden_ns`` its uncertainty), no longer one window's sigma in every mapped time
    semantics: object = field(default=None, repr=False)  # aligner links: the marker rules its windows read
    out_of_depth: str = ""  # hybrid aligner links: why the neural path is not to be trusted here (``disagreement``)
    classical_ns: int | None = None  # ... and the offset its classical estimates agreed on (searched around again)
    windows: int = 0  # aligner links: the target's windows (with samples), a reference in them or not
    neural_only: int = 0  # hybrid aligner links: the windows found by the neural candidate alone (no onset confirmed)

    def map(self, t_ns: np.ndarray, timeline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reference times of file-clock times ``t_ns`` on their ``timeline``s, with their 1-sigma (ns; unknown:
        ``UNKNOWN_UNC_NS``): ``map_parts``'s, the table's k and g on the part it scales."""
        t = np.asarray(t_ns, dtype=np.int64)
        out, unc, fixed = self.map_parts(t, timeline)
        known = unc < UNKNOWN_UNC_NS
        if self.calibration is not None:
            k, g = self.calibration
            u = unc[known].astype(np.float64)
            unc[known] = np.rint(np.hypot(k * np.sqrt(u * u + g * g), fixed[known])).astype(np.int64)
        for s in [*self.steps, *self.disputed]:  # between the windows around a step: on either side of it
            near = known & (t > s.lo_ns) & (t < s.hi_ns)
            unc[near] = np.maximum(unc[near], abs(s.size_ns))
        return out, unc

    def map_parts(self, t_ns: np.ndarray, timeline: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reference times, the 1-sigma part the file engine's table scales, the part it does not; ns).  Scaled:
        all an aligner link says of its windows: the model's, the bias they share (one window's sigma, unless the
        onset check measured it) and the check's own (``hidden_ns``); not: beyond the windows that tied it (a log
        longer than its recording), the drift's 1-sigma times the distance (``drift_sigma_ppm``, judged on its own).
        What ``bench align --real-files --fit-sigma`` fits the table on, part by part."""
        t = np.asarray(t_ns, dtype=np.int64)
        fixed = np.zeros(len(t))
        if self.method == "reference":
            return t, np.zeros(len(t), dtype=np.int64), fixed
        out, unc = t.copy(), np.full(len(t), UNKNOWN_UNC_NS, dtype=np.int64)
        for k in np.unique(timeline).tolist():
            m = self.models.get(int(k))
            if m is None:
                continue
            sel = timeline == k
            out[sel], unc[sel] = dense_map(lambda tt, ss, m=m: m.map(tt, ss, smooth=True)[:2], t[sel],
                                           _segments(m, t[sel]))
        known = unc < UNKNOWN_UNC_NS
        if self.floor_ns:
            unc[known] = np.rint(np.hypot(unc[known].astype(np.float64), self.floor_ns)).astype(np.int64)
        if self.drift_fix[0]:
            out[known] += np.rint((out[known] - self.drift_fix[1]) * (self.drift_fix[0] * 1e-6)).astype(np.int64)
        out[known] += self.shift_ns
        if self.calibration is not None:
            shared = 0.0 if self.bias_measured else self.shared_ns
            u = unc[known].astype(np.float64)
            unc[known] = np.rint(np.sqrt(u * u + shared ** 2 + self.hidden_ns ** 2)).astype(np.int64)
            if self.drift_sigma_ppm and self.residuals:
                # beyond the windows that tied it: the drift's own uncertainty grows with the distance, as far as
                # the model extrapolates the line
                w = [r[0] for r in self.residuals]
                far = np.maximum(np.maximum(min(w) - t[known], t[known] - max(w)), 0).astype(np.float64)
                fixed[known] = far * self.drift_sigma_ppm * 1e-6
        return out, unc, fixed

    @property
    def shared_ns(self) -> float:
        """The 1-sigma of the bias an aligner link's windows share: one window's sigma, for windows over a minute or
        less (``BIAS_SPAN_NS``); over a longer span, falling as 1 / span up to ``BIAS_MEASURED_NS`` and as the square
        root beyond, for a pair of modalities the file engine's table calibrates, where that was measured
        (``bias_averages``; elsewhere the bias may be a constant latency between them, an IMU that feels a knock
        after the microphone hears it: not averaged)."""
        if not self.bias_averages or self.span_ns <= BIAS_SPAN_NS:
            return self.window_sigma_ns
        measured = min(self.span_ns, BIAS_MEASURED_NS)
        return self.window_sigma_ns * BIAS_SPAN_NS / measured * math.sqrt(measured / self.span_ns)

    def state(self) -> dict:
        return {k: m.state() for k, m in self.models.items()}


def dense_map(fn, t: np.ndarray, segs: np.ndarray, step_ns: int = DENSE_STEP_NS) -> tuple[np.ndarray, np.ndarray]:
    """``fn(times, segments) -> (mapped, 1-sigma)`` on a dense run of samples: evaluated every ``step_ns`` of each
    segment's monotone runs and interpolated in between (the offset is smooth over milliseconds: the interpolation
    error is far below a nanosecond; the clock model's smoother costs microseconds per time)."""
    t = np.asarray(t, dtype=np.int64)
    n = len(t)
    if n <= 64:
        return fn(t, segs)
    out = np.empty(n, dtype=np.int64)
    unc = np.empty(n, dtype=np.int64)
    bounds = [0, *(np.flatnonzero(np.diff(segs)) + 1).tolist(), n]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        tt, ss = t[a:b], segs[a:b]
        span = int(tt[-1]) - int(tt[0])
        if b - a <= 64 or span <= 0 or np.any(np.diff(tt) < 0):
            out[a:b], unc[a:b] = fn(tt, ss)
            continue
        k = max(1, int((b - a) * step_ns / span))
        idx = np.unique(np.r_[np.arange(0, b - a, k), b - a - 1])
        g, u = fn(tt[idx], ss[idx])
        xp = tt[idx].astype(np.float64)
        out[a:b] = tt + np.rint(np.interp(tt.astype(np.float64), xp, (g - tt[idx]).astype(np.float64))).astype(
            np.int64)
        unc[a:b] = np.rint(np.interp(tt.astype(np.float64), xp, u.astype(np.float64))).astype(np.int64)
    return out, unc


def _segments(m: ClockModel, t: np.ndarray) -> np.ndarray:
    """A model without arrivals starts segments where its evidence stepped: samples take the last that began
    before them."""
    if len(m.segments) <= 1:
        return np.zeros(len(t), dtype=np.int32)
    starts = np.array([s.dev0 for s in m.segments], dtype=np.int64)
    order = np.argsort(starts, kind="stable")
    k = np.clip(np.searchsorted(starts[order], t, side="right") - 1, 0, len(starts) - 1)
    return order[k].astype(np.int32)


def decode_barcodes(t_ns: np.ndarray, width_ns: np.ndarray) -> list[tuple[int, int]]:
    """Barcodes in a channel's pulses (rising edge times and widths)."""
    dec = BarcodeDecoder(0)
    edges = []
    for t, w in zip(t_ns.tolist(), width_ns.tolist(), strict=True):
        edges += [(t, 1), (t + max(w, 1), 0)]
    return dec.feed(edges) + dec.flush()


def edge_link(name: str, src: dict[int, tuple[np.ndarray, np.ndarray]], ref: tuple[np.ndarray, np.ndarray],
              sigma_ns: float, prior_ns: int | None, sample_ns: int, barcode: bool, step_sigma_ns: float = 0.0) -> Link:
    """A link from sync edges: ``src`` maps a timeline to its edges (file-clock times, widths), ``ref`` is the
    reference's (reference-clock times, widths).  ``step_sigma_ns``: the quantization of the sides whose edges are
    digital steps (``SHARED_BELOW``)."""
    link = Link("edges")
    ref_codes = decode_barcodes(*ref) if barcode else []
    for tl, (t, w) in sorted(src.items()):
        pairs = None
        if barcode:
            codes = decode_barcodes(t, w)
            if len(codes) >= MIN_PAIRS and len(ref_codes) >= MIN_PAIRS:
                pairs = pair_codes(codes, ref_codes)
                link.method = "barcodes"
        if pairs is None or pairs.n < MIN_PAIRS:
            pairs = pair_edges(t, ref[0], prior_ns=prior_ns, sample_ns=sample_ns)
        link.pairs[tl] = pairs
        if pairs.how == "prior":
            link.notes.append(f"timeline {tl}: periodic pulses, the offset is known modulo their period; the one "
                              f"nearest the expected offset was taken ({pairs.offset_ns / NS:+.6f} s)")
        if pairs.n < MIN_PAIRS:
            link.notes.append(f"timeline {tl}: {pairs.n} sync edges paired (of {len(t)}), too few")
            continue
        m = ClockModel(f"{name}#{tl}", consensus=2, rw_bank_ppm=LINK_RW_PPM, r_scales=LINK_R_SCALES)
        m.add_edges(pairs.src, pairs.ref, sigma_ns)
        link.models[tl] = m
        est, _, _ = m.map(pairs.src, _segments(m, pairs.src), smooth=True)
        res = (pairs.ref - est).astype(np.float64)
        link.residuals += list(zip(pairs.src.tolist(), res.tolist(), strict=True))
        rms = float(np.sqrt(np.mean(res * res)))
        if rms < SHARED_BELOW * step_sigma_ns:
            shared = math.sqrt(step_sigma_ns * step_sigma_ns - rms * rms)
            link.floor_ns = max(link.floor_ns, shared)
            link.notes.append(f"timeline {tl}: the edges scatter {rms / 1e3:.2f} us about the fit, less than their "
                              f"sampling's {step_sigma_ns / 1e3:.2f} us: a clock that paced the pulses sees them at "
                              f"one phase, a bias they share ({shared / 1e3:.2f} us 1-sigma, added to the uncertainty)")
    return link


class _Buf:
    def __init__(self):
        self.t = np.zeros(0, dtype=np.int64)
        self.x = None

    def add(self, t: np.ndarray, x) -> None:
        if isinstance(x, list):
            self.x = (self.x or []) + list(x)
        else:
            x = np.asarray(x, dtype=np.float32)
            self.x = x if self.x is None else np.concatenate([self.x, x])
        self.t = np.concatenate([self.t, t])

    def trim(self, t0: int) -> None:
        k = int(np.searchsorted(self.t, t0))
        if k:
            self.t, self.x = self.t[k:], self.x[k:]

    def cut(self, a: int, b: int):
        i, j = np.searchsorted(self.t, [a, b])
        return self.t[i:j], (self.x[i:j] if self.x is not None else [])

    @property
    def last(self) -> int | None:
        return int(self.t[-1]) if len(self.t) else None


def aligner_link(name: str, ref_info: StreamInfo, tgt_info: StreamInfo, ref: Iterator, tgt: Iterator, prior_ns: int,
                 method: str = "hybrid", window_s: float = 16.0, hop_s: float = 4.0,
                 settings: AlignerSettings | None = None, table: SigmaTable | None = None,
                 out_table: SigmaTable | None = None, markers: tuple = (), rate: float = 0.0,
                 centre_ns: int = 0, scaled: bool = True) -> Link:
    """A link from the aligner: ``ref`` yields ``(reference-clock times, data)`` of the reference stream, ``tgt``
    ``(file-clock times, data)`` of the target stream, both in time order.  ``table``: the sigma table its
    windows are calibrated by, with the aligner settings fitted with it (``calibrated_settings``), as the live
    ``AlignmentTracker`` runs them (``settings`` overrides those); ``out_table``: the one its mapped uncertainty
    is calibrated by (``Link.calibration``: the pair's k and g; none, no entry for the pair, or ``scaled`` off: k = 1,
    g = 0, all the link says; an entry: the bias its windows share averages over minutes, ``Link.shared_ns``, the
    table applied or not); ``markers``: what a marker stream's lines mean (rules; none: the settings' default
    words); ``rate``: the target's times are stretched by it about ``centre_ns`` for the windows (a clock that runs
    fast or slow by more than a window's events allow: ``coarse.coarse_fit``), whose offsets are taken back to the
    file's own times; ``prior_ns`` is then the offset of the stretched times."""
    if rate:
        tgt = ((t + np.rint((np.asarray(t, dtype=np.int64) - centre_ns) * rate).astype(np.int64), x) for t, x in tgt)
    runners = load_runners({modality_of(ref_info), modality_of(tgt_info)}) if method != "classical" else {}
    settings = settings or calibrated_settings(table, False)
    if markers:
        settings = replace(settings, markers=tuple(markers))
    win = WindowAligner(ref_info, tgt_info, runners, settings)
    drift = DriftTracker()
    # a clock off by more than the model's skew prior (2000 ppm) allows: the whole recording's rate widens it
    model = ClockModel(name, consensus=2, rw_bank_ppm=LINK_RW_PPM, skew_prior_ppm=max(2000.0, 2e6 * abs(rate)))
    link = Link(method, {0: model}, notes=[], semantics=win.semantics)
    has = out_table is not None and out_table.has(win.ref_mod, win.tgt_mod)
    link.calibration = out_table.of(win.ref_mod, win.tgt_mod) if has and scaled else (1.0, 0.0)
    link.bias_averages = has  # measured on the table's pairs; elsewhere a constant latency may be the bias
    reasons: dict[str, list] = {}  # reason_kind -> [windows, the first one's reason]
    W, H = int(window_s * NS), int(hop_s * NS)
    tb, rb = _Buf(), _Buf()
    state = {"tgt": True, "ref": True}

    def pull(it, buf, key) -> bool:
        for t, x in it:
            if len(t):
                buf.add(np.asarray(t, dtype=np.int64), x)
                return True
        state[key] = False
        return False

    d0 = None
    found: list[OffsetEstimate] = []
    offline: list[OffsetEstimate] = []
    run = DisagreementRun(W)
    while True:
        if d0 is None:
            if not pull(tgt, tb, "tgt") and tb.last is None:
                break
            d0 = int(tb.t[0]) if len(tb.t) else None
            if d0 is None:
                continue
        while state["tgt"] and (tb.last is None or tb.last < d0 + W):
            pull(tgt, tb, "tgt")
        if tb.last is None or tb.last < d0:
            break
        mid = d0 + W // 2
        prior = int(round(drift.offset_at(mid))) if drift.points else prior_ns
        lo, hi = win.ref_range((d0, d0 + W), prior)
        while state["ref"] and (rb.last is None or rb.last < hi):
            pull(ref, rb, "ref")
        tt, tx = tb.cut(d0, d0 + W)
        rt, rx = rb.cut(lo, hi)
        link.windows += len(tt) > 0
        if len(tt) and len(rt):
            res = win.estimate(rt, rx, tt, tx, (d0, d0 + W), prior, methods=(method,))[method]
            if method == "hybrid" and run.add(res) and not link.out_of_depth:
                link.out_of_depth, link.classical_ns = run.note(), run.offset_ns()
            # the bias the windows share is the link's to carry (``Link.map``), not the model's: counted once
            ev = window_evidence(res, name, W / H, table, (win.ref_mod, win.tgt_mod), shared=False) if res.ok else None
            if res.ok and drift.add(res):
                found.append(ev)
                link.neural_only += res.neural_only
            else:
                if res.ok:  # off the drift line: an outlier, or the far side of a step (``align.steps``)
                    offline.append(ev)
                why = res.reason or "offset off the drift line"
                reasons.setdefault(reason_kind(why), [0, why])[0] += 1
        elif len(tt):
            reasons.setdefault("no reference samples", [0, "no reference samples in the window"])[0] += 1
        d0 += H
        i = int(np.searchsorted(tb.t, d0))
        if i < len(tb.t) and int(tb.t[i]) > d0 + W:  # a gap in the target: on to its next sample
            d0 += (int(tb.t[i]) - d0) // H * H
        tb.trim(d0)
        rb.trim(lo - W)
        if not state["tgt"] and (tb.last is None or tb.last < d0):
            break
    link.notes += [f"{n} window{'s' if n > 1 else ''}{' like' if n > 1 and reason_kind(why) != why else ''}: {why}"
                   for n, why in sorted(reasons.values(), key=lambda r: -r[0])[:5]]
    if rate:
        found, offline = _unstretched(found, rate, centre_ns), _unstretched(offline, rate, centre_ns)
    if len(found) < MIN_OFFSETS:
        link.models = {}
        return link
    judge_windows(link, model, found, offline, W / H, rate, W)
    return link


def _unstretched(evs: list[OffsetEstimate], rate: float, centre_ns: int) -> list[OffsetEstimate]:
    """Windows' offsets found on times stretched by ``rate`` about ``centre_ns``, at their own file times:
    ref - d = (ref - w) + (w - d)."""
    out = []
    for f in evs:
        d = centre_ns + int(round((f.device_ns - centre_ns) / (1.0 + rate)))
        out.append(replace(f, device_ns=d, offset_ns=f.offset_ns + f.device_ns - d))
    return out
