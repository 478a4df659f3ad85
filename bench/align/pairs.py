"""``bench align``'s evaluation of one pair in one world: the target aligned against the reference window by
window by every method, each event of the world mapped onto the reference clock and compared with its true time
(``run_pair``); the hybrid method's clock model fed as the agent would (``feed_window``, ``hybrid_map``); the
per-pair summary (``summarize``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np

from synchub.agent.align.aligner import AlignerSettings
from synchub.agent.align.calibration import SigmaTable, coverage
from synchub.agent.align.drift import DriftTracker, theil_sen
from synchub.agent.align.tracker import window_evidence
from synchub.agent.align.window import WindowAligner
from synchub.agent.clock.choice import UNKNOWN_UNC_NS
from synchub.agent.clock.model import ClockModel
from synchub.agent.core.units import NS
from synchub.drivers.sim import render as R
from synchub.drivers.sim.clocks import DeviceClock
from synchub.drivers.sim.world import World

from .calibrate import reported, sample_ci
from .hold import EarlyHold
from .scenario import RATES, BenchSpec
from .streams import Stream, cut, embed_stream

#: offsets (or trigger edges) that judge the arrival envelope's latency: from their scatter, not one offset's sigma
JUDGED = 3


@dataclass
class PairOutcome:
    errors: dict  # method -> list of abs error ns (mapped events)
    missed: dict  # method -> events not mapped
    windows: dict  # method -> (abstained, total)
    drift_err: dict  # method -> list of |ppm err| per target
    sigmas: dict = field(default_factory=dict)  # method -> reported 1-sigma (ns) of each mapped event, if any
    hybrid_by_pair: dict = field(default_factory=dict)  # (ref, target modality) -> ([|err|], [raw sigma]) of hybrid
    window_by_pair: dict = field(default_factory=dict)  # (ref, target, method) -> ([|err|], [window sigma]): classical, neural
    held: int = 0  # hybrid events held for the offsets that judge the envelope (``hold``)
    held_wait_ns: int = 0  # the longest such wait (device time)


def _true_drift(clock: DeviceClock, true_end: int) -> float:
    return float(clock.drift_ppm_at(np.array([true_end]))[0])


def run_pair(streams: dict[str, Stream], world: World, ref_m: str, targets, bench: BenchSpec, runners: dict,
             settings: AlignerSettings, rng: np.random.Generator, emb_cache: dict | None = None,
             table: SigmaTable | None = None) -> PairOutcome:
    """One pair in one world; ``table`` calibrates the hybrid's reported uncertainty (none: the raw one)."""
    table = table or SigmaTable((), {})
    methods = bench.methods
    out = PairOutcome({m: [] for m in methods}, {m: 0 for m in methods}, {m: [0, 0] for m in methods},
                      {m: [] for m in methods}, {m: [] for m in methods})
    ref = streams[ref_m]
    ref_t = ref.true_ns + np.rint(rng.normal(0, bench.ref_jitter_us * 1e3, len(ref.true_ns))).astype(np.int64)
    order = np.argsort(ref_t, kind="stable")
    ref_t = ref_t[order]
    ref_x = [ref.data[i] for i in order] if isinstance(ref.data, list) else ref.data[order]
    ev_true = world.events["t_ns"].astype(np.int64)
    neural_on = "neural" in methods or "hybrid" in methods
    emb_cache = {} if emb_cache is None else emb_cache
    ref_emb = None
    if neural_on:
        ref_emb = embed_stream(runners, ref_m, ref_t, ref_x)
    hop_ns = int(bench.hop_s * NS)
    for tm in targets:
        coarser = max([1.0 / RATES[m] for m in (ref_m, tm) if RATES[m] > 0] or [0.0])
        win_ns = int(max(bench.window_s, bench.window_periods * coarser) * NS)
        tgt = streams[tm]
        wa = WindowAligner(ref.info(), tgt.info(), runners, settings)
        tgt_emb = None
        if neural_on:
            if tm not in emb_cache:
                emb_cache[tm] = embed_stream(runners, tm, tgt.device_ns, tgt.data)
            tgt_emb = emb_cache[tm]
        # events as the target's device clock stamps them
        ev_dev = tgt.clock.to_device(ev_true)
        d_start = int(tgt.clock.to_device(np.array([0]))[0]) + int(0.5 * NS)
        d_end = int(tgt.clock.to_device(np.array([int(world.duration_s * NS)]))[0]) - int(0.5 * NS)
        starts = np.arange(d_start, d_end - win_ns + 1, hop_ns)
        if len(starts) == 0:
            continue
        centres = starts + win_ns // 2
        sel = (ev_dev >= centres[0] - hop_ns // 2) & (ev_dev < centres[-1] + hop_ns // 2)
        e_dev, e_true = ev_dev[sel], ev_true[sel]
        owner = np.clip(np.rint((e_dev - centres[0]) / hop_ns).astype(np.int64), 0, len(centres) - 1)
        trackers = {m: DriftTracker() for m in ("classical", "neural")}
        model = ClockModel(name=tm, window_s=120.0, skew_prior_ppm=bench.skew_prior_ppm)
        model_has = False
        hold = EarlyHold(int(bench.hold_s * NS))
        offsets: list = []
        fed_until = -(1 << 62)
        if tm in bench.triggered:  # the target's device sees the 1 Hz trigger: edges into the model
            rises, _w = R.render_trigger(0, int(world.duration_s * NS))
            d_edges = tgt.clock.to_device(rises, jitter=True)
            r_edges = rises + np.rint(rng.normal(0, 2e3, len(rises))).astype(np.int64)
            # the device stamps the edge with its own jitter; the host GPIO stamp adds ~2 us
            edge_sigma = float(np.hypot(tgt.clock.spec.jitter_us * 1e3, 2e3))
        for w, d0 in enumerate(starts):
            d1 = d0 + win_ns
            idx = np.nonzero(owner == w)[0]
            ed, et = e_dev[idx], e_true[idx]
            if "arrival" in methods:
                out.windows["arrival"][1] += 1
                if len(ed):
                    off = np.interp(ed, tgt.device_ns, (tgt.host_ns - tgt.device_ns).astype(np.float64))
                    out.errors["arrival"].extend(np.abs(ed + off - et).tolist())
            span = (int(d0), int(d1))
            lo, hi = wa.ref_range(span, 0)
            rt, rx = cut(ref_t, ref_x, lo, hi)
            tt, tx = cut(tgt.device_ns, tgt.data, d0, d1)
            i0, i1 = np.searchsorted(tgt.device_ns, [d0, d1])
            bound = int(np.min(tgt.host_ns[i0:i1] - tgt.device_ns[i0:i1])) if i1 > i0 else None
            res = wa.estimate(rt, rx, tt, tx, span, 0, methods=[m for m in methods if m != "arrival"],
                              ref_emb=ref_emb, tgt_emb=tgt_emb, arrival_bound_ns=bound)
            for m, r in res.items():
                out.windows[m][1] += 1
                if not r.ok:
                    out.windows[m][0] += 1
                if m == "hybrid":
                    # the agent feeds every stream's arrival times (and trigger edges, where wired) to its clock
                    # model, in device-time order, up to the window's centre: ClockModel takes evidence more than
                    # 1 s older than its newest as out of order (or a clock reset)
                    centre = int(d0) + win_ns // 2
                    if tm in bench.triggered:
                        k = d_edges < centre
                        for de, rf in zip(d_edges[k], r_edges[k], strict=True):
                            a0, a1 = np.searchsorted(tgt.device_ns, [fed_until, de])
                            if a1 > a0:
                                model.add_arrivals(tgt.device_ns[a0:a1], tgt.host_ns[a0:a1])
                            fed_until = max(fed_until, int(de))
                            model.add_edges(np.array([de]), np.array([rf]), edge_sigma)
                            offsets.append((int(de), int(rf - de), int(edge_sigma)))
                            model_has = True
                        d_edges, r_edges = d_edges[~k], r_edges[~k]
                    fed_until, fed = feed_window(model, tgt, fed_until, centre, r, tm, win_ns / hop_ns, offsets)
                    model_has = model_has or fed
                    if not model_has:
                        out.missed[m] += len(ed)
                        continue
                    for got in hybrid_events(hold, model, ed, et, offsets, centre, bench.skew_prior_ppm,
                                             coarser * NS):
                        _record(out, ref_m, tm, table, *got)
                    continue
                tr = trackers[m]
                if not r.ok:
                    out.missed[m] += len(ed)
                    continue
                tr.add(r)
                if len(ed):
                    drift = tr.drift_ppm
                    mapped = ed + r.offset_ns - drift * 1e-6 * (ed - r.device_ns)
                    out.errors[m].extend(np.abs(mapped - et).tolist())
                    out.sigmas[m].extend([float(r.sigma_ns)] * len(ed))
                    raw = out.window_by_pair.setdefault((ref_m, tm, m), ([], []))
                    raw[0].extend(np.abs(mapped - et).tolist())
                    raw[1].extend([float(r.sigma_ns)] * len(ed))
        _record(out, ref_m, tm, table, *hold.flush())
        out.held += hold.held
        out.held_wait_ns = max(out.held_wait_ns, hold.max_wait_ns)
        true_drift = _true_drift(tgt.clock, int(world.duration_s * NS))
        if "arrival" in methods:
            a, b = theil_sen(((tgt.device_ns[::max(1, len(tgt.device_ns) // 400)] - tgt.device_ns[0]) / NS),
                             (tgt.host_ns - tgt.device_ns)[::max(1, len(tgt.device_ns) // 400)].astype(float))
            out.drift_err["arrival"].append(abs(-b / 1e3 - true_drift))
        for m in ("classical", "neural"):
            if m in methods and len(trackers[m].points) >= trackers[m].min_points:
                out.drift_err[m].append(abs(trackers[m].drift_ppm - true_drift))
        if "hybrid" in methods and model_has:
            st = model.state()
            if "drift_ppm" in st:
                out.drift_err["hybrid"].append(abs(float(st["drift_ppm"]) - true_drift))
    return out


def _record(out: PairOutcome, ref_m: str, tm: str, table: SigmaTable, true_ns, mapped, unc) -> None:
    """The hybrid's mapped events: their errors and the reported sigmas (calibrated, and raw for the fit)."""
    if len(true_ns) == 0:
        return
    err = np.abs(np.asarray(mapped) - np.asarray(true_ns))
    out.errors["hybrid"].extend(err.tolist())
    out.sigmas["hybrid"].extend(table.apply(ref_m, tm, unc).tolist())
    raw = out.hybrid_by_pair.setdefault((ref_m, tm), ([], []))
    raw[0].extend(err.tolist())
    raw[1].extend(np.asarray(unc).tolist())


def feed_window(model, tgt, fed_until: int, centre: int, r, name: str, overlap: float, offsets: list,
                arrivals: bool = True) -> tuple[int, bool]:
    """What the agent gives the target's ClockModel for one window: the target's arrival times (device, host)
    from ``fed_until`` up to the window's centre (unless ``arrivals`` is False: no host times) and the window's
    offset when ``r`` is ok, its sigma scaled by sqrt(``overlap`` = window / hop: overlapping windows share
    events).  The offset is appended to ``offsets``; returns (fed until, whether anything was fed)."""
    fed = False
    a0, a1 = np.searchsorted(tgt.device_ns, [fed_until, centre])
    if a1 > a0 and arrivals:
        model.add_arrivals(tgt.device_ns[a0:a1], tgt.host_ns[a0:a1])
        fed_until, fed = centre, True
    if r.ok:
        ev = window_evidence(r, name, overlap)  # as the live tracker emits it (its output is calibrated, not this)
        model.add_offset(ev)
        offsets.append((ev.device_ns, ev.offset_ns, ev.sigma_ns))
        fed = True
    return fed_until, fed


def hybrid_events(hold: EarlyHold, model, device_ns, true_ns, offsets: list, now_ns: int,
                  skew_prior_ppm: float = 300.0, period_ns: float = 0.0) -> list[tuple]:
    """One window's events mapped by the hybrid (``hybrid_map_unc``), as ``(true_ns, mapped, unc)`` batches to
    record: before ``JUDGED`` offsets or edges have judged the arrival envelope's latency (the envelope alone, or
    one or two offsets that cannot tell a late envelope from a wrong offset) they wait in ``hold`` instead; the
    windows from the ``JUDGED``-th on remap them and release them, first, once that mapping has settled
    (``hold.EarlyHold.release``; until then the window's own events join them)."""
    mapper = partial(hybrid_map_unc, model, offsets=offsets, skew_prior_ppm=skew_prior_ppm, period_ns=period_ns)
    judged = len(offsets) >= JUDGED
    out = []
    if judged and len((released := hold.release(mapper, now_ns))[0]):
        out.append(released)
    if len(device_ns):
        mapped, unc = mapper(np.asarray(device_ns, dtype=np.int64))
        if hold.hold_ns > 0 and (not judged or hold.waiting):  # early events join those whose mapping sharpens
            hold.hold(device_ns, true_ns, mapped, unc)
        else:
            out.append((np.asarray(true_ns), mapped, unc))
    return out


def hybrid_map(model, device_ns: np.ndarray, offsets: list, skew_prior_ppm: float = 300.0,
               period_ns: float = 0.0, slack_ns: int = 500_000) -> np.ndarray:
    """Reference times of ``device_ns`` (``hybrid_map_unc`` without the uncertainty)."""
    return hybrid_map_unc(model, device_ns, offsets, skew_prior_ppm, period_ns, slack_ns)[0]


def hybrid_map_unc(model, device_ns: np.ndarray, offsets: list, skew_prior_ppm: float = 300.0,
                   period_ns: float = 0.0, slack_ns: int = 500_000) -> tuple[np.ndarray, np.ndarray]:
    """Reference times of ``device_ns`` from a ClockModel fed with aligner offsets, trigger edges and arrivals,
    and the 1-sigma (ns) of the estimate each time got.

    The arrival envelope is late by the link's minimum latency, which its own spread cannot show; the aligner's
    offsets ``[(device_ns, offset_ns, sigma_ns)]`` measure it: L = weighted mean of (envelope - offset).  Where
    L is not significantly above zero (<= 2 standard errors + 1 ms) and the envelope is the more precise (on its
    own spread once three or more offsets judged L; on fewer, on its whole uncertainty: its own, L's and L's
    standard error in quadrature, which is also the uncertainty it reports), the envelope is used; elsewhere the
    offset/edge filter (its own uncertainty), bounded above by the arrivals (a sample cannot be taken after it
    arrived: ``ClockModel.arrival_bound`` with the skew prior, the envelope's line where it is fitted).  Before the aligner or a trigger has said anything: the envelope alone."""
    arr, arr_unc, _s = model.map(device_ns, method="arrival")
    unknown = np.full(len(device_ns), float(UNKNOWN_UNC_NS))
    if np.all(arr_unc >= UNKNOWN_UNC_NS):  # no arrival envelope in this segment yet: the model answers identity
        arr, arr_unc = None, None
    if not offsets:
        return (arr, arr_unc.astype(np.float64)) if arr is not None else (device_ns + 0, unknown)
    est, est_unc, _s = model.map(device_ns, method="hybrid")
    est_unc = est_unc.astype(np.float64)
    if arr is None:
        return est, est_unc
    d = np.array([o[0] for o in offsets], dtype=np.int64)
    off = np.array([o[1] for o in offsets], dtype=np.float64)
    sig = np.maximum(np.array([o[2] for o in offsets], dtype=np.float64), 1e3)
    w = 1.0 / sig**2
    # the filter is slow to trust its first offsets: the nearest offset itself, sigma grown by the skew prior
    # over the distance, where that is more certain
    j = np.argmin(np.abs(device_ns[:, None] - d[None, :]), axis=1)
    own = device_ns + np.rint(off[j]).astype(np.int64)
    own_unc = np.sqrt(sig[j] ** 2 + (skew_prior_ppm * 1e-6 * np.abs(device_ns - d[j])) ** 2)
    better = own_unc < est_unc
    est = np.where(better, own, est)
    est_unc = np.where(better, own_unc, est_unc)
    env_at, _u, _s = model.map(d, method="arrival")
    lat = (env_at - d).astype(np.float64) - off
    bias = float(np.sum(w * lat) / np.sum(w))
    se = float(np.sqrt(1.0 / np.sum(w)))
    if len(lat) >= JUDGED:  # the offsets' own scatter, when it says more than their sigmas
        se = max(se, float(np.std(lat)) / np.sqrt(len(lat)))
    se = max(se, 0.1 * period_ns)  # a systematic floor: onsets seen at a coarse rate can be biased that much
    env_ok = bias <= 2.0 * se + 1e6
    env_unc = np.sqrt(arr_unc.astype(np.float64) ** 2 + max(bias, 0.0) ** 2 + se**2)
    # the envelope wins on its own spread once its latency L is judged (not significantly above zero, from the
    # scatter of three or more offsets); on fewer, L is a guess: it wins only on its whole uncertainty
    use_arr = env_ok & ((arr_unc if len(lat) >= JUDGED else env_unc) < est_unc)
    # a sample cannot have been taken after it arrived: the arrivals bound it, and the envelope's line where it is
    # fitted with a plausible slope (not through a sparse stream's first few arrivals: it may tilt by 8000 ppm)
    ub = model.arrival_bound(device_ns, skew_prior_ppm)
    cap = np.where(np.isfinite(ub), np.floor(np.minimum(ub, 9e18)), 9e18).astype(np.int64) + slack_ns
    return np.where(use_arr, arr, np.minimum(est, cap)), np.where(use_arr, env_unc, est_unc)


def tolerance_ns(ref_m: str, targets) -> float:
    periods = [1.0 / RATES[m] for m in (ref_m, *targets) if RATES[m] > 0]
    return max(1e6, 0.5 * max(periods) * NS) if periods else 1e6


def summarize(name: str, tol_ns: float, outs: list[PairOutcome], methods) -> list[dict]:
    rows = []
    for m in methods:
        err = np.concatenate([np.asarray(o.errors[m], dtype=np.float64) for o in outs]) if outs else np.zeros(0)
        missed = sum(o.missed[m] for o in outs)
        ab = sum(o.windows[m][0] for o in outs)
        tot = sum(o.windows[m][1] for o in outs)
        drifts = [d for o in outs for d in o.drift_err[m]]
        n_ev = len(err) + missed
        sig = np.concatenate([np.asarray(o.sigmas.get(m, ()), dtype=np.float64) for o in outs]) if outs else err
        has = reported(err, sig)
        rows.append({
            "pair": name,
            "method": m,
            "median_ms": round(float(np.median(err)) / 1e6, 4) if len(err) else None,
            "p95_ms": round(float(np.percentile(err, 95)) / 1e6, 4) if len(err) else None,
            "within_tol_pct": round(100.0 * float(np.sum(err <= tol_ns)) / n_ev, 2) if n_ev else None,
            "drift_err_ppm": round(float(np.median(drifts)), 3) if drifts else None,
            "abstain_pct": round(100.0 * ab / tot, 2) if tot else None,
            # the reported 1-sigma (hybrid: the clock model's uncertainty; classical/neural: the window's)
            "sigma_median_ms": round(float(np.median(sig[has])) / 1e6, 4) if has.any() else None,
            "cover_1sigma_pct": _cover_pct(err, sig, has, 1.0),
            "cover_2sigma_pct": _cover_pct(err, sig, has, 2.0),
        })
        if m == "hybrid":  # the coverage's spread over worlds (their events share a bias: few worlds, wide)
            rows[-1]["cover_1sigma_ci95"] = world_ci(outs, m)
            # events held for the judging offsets (``hold.EarlyHold``), and the longest wait
            rows[-1]["held_pct"] = round(100.0 * sum(o.held for o in outs) / n_ev, 2) if n_ev else None
            rows[-1]["held_max_s"] = round(max((o.held_wait_ns for o in outs), default=0) / NS, 1)
    return rows


def _cover_pct(err: np.ndarray, sig: np.ndarray, has: np.ndarray, k: float) -> float | None:
    """Percent of the ``has`` events within ``k`` of their sigma (None without any)."""
    return round(100.0 * coverage(err[has], sig[has], k), 2) if has.any() else None


def world_ci(outs: list[PairOutcome], method: str, k: float = 1.0, n_boot: int = 2000) -> list[float] | None:
    """95 % interval (percent) of the ``k``-sigma coverage of ``method``'s events, bootstrapped over the worlds
    (``outs``, one per seed): a world's events share its bias, so the worlds, not the events, are the samples.
    None with fewer than three worlds that have sigmas."""
    return sample_ci([(o.errors.get(method, ()), o.sigmas.get(method, ())) for o in outs], k, n_boot)


def pooled_coverage(per_pair: dict[str, list[PairOutcome]], method: str = "hybrid") -> dict:
    """``method``'s 1- and 2-sigma coverage over every pair's events (``per_pair``: name -> one outcome per world),
    with the 1-sigma's 95 % interval over worlds (a world's pairs pooled as one sample)."""
    names = list(per_pair)
    worlds = [PairOutcome({method: [e for nm in names for e in per_pair[nm][i].errors.get(method, ())]}, {}, {}, {},
                          {method: [x for nm in names for x in per_pair[nm][i].sigmas.get(method, ())]})
              for i in range(min((len(v) for v in per_pair.values()), default=0))]
    e = np.array([x for w in worlds for x in w.errors[method]], dtype=np.float64)
    sg = np.array([x for w in worlds for x in w.sigmas[method]], dtype=np.float64)
    has = reported(e, sg)
    if not has.any():
        return {}
    return {"method": method, "events": int(has.sum()), "cover_1sigma_pct": _cover_pct(e, sg, has, 1.0),
            "cover_2sigma_pct": _cover_pct(e, sg, has, 2.0), "cover_1sigma_ci95": world_ci(worlds, method)}
