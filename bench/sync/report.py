"""``synchub bench sync``'s figures from the corrected times: error statistics per stream and method, the
least-squares bound, and the checks against the goals (resets, counter wraps, chunking, live after settling).

``checks.streams.<stream>``: ``resets_true``, ``resets_visible`` (those after which the driver's device time does
not just go on: see ``timelines``), ``resets_detected`` (visible resets a segment of the clock model started within
5 s of), ``false_segments`` (segments no reset explains: steps the edges showed, e.g. a coarse counter's quantization
flipping), ``mixed_segments`` (segments holding samples of two timelines: a corrupt mapping), ``first_match_periods`` (per true reset: trigger periods from the first edge
the device saw on its new timeline to the first edge pair the new segment accepted), ``block_vs_align_ns`` (largest
difference between ``triggers`` and ``triggers-align``), ``live_rms_after_10s_us`` (``triggers-live`` RMS over the
samples at least 10 s into their clock segment), wraps and the error around them, the matcher's counts.
``checks.targets`` lists each goal with its value and pass/fail.
"""

from __future__ import annotations

import math

import numpy as np

from synchub.agent.clock.kalman import linear_smoother, q_per_ns
from synchub.agent.core.units import NS

from .scenario import Scenario
from .simulate import SimStream

SETTLE_NS = 10 * NS  # live figures skip the first 10 s of each clock segment


def metrics(err_ns: np.ndarray, true_ns: np.ndarray, tol_us: float) -> dict:
    e = err_ns.astype(np.float64) / 1e3
    if len(e) == 0:
        nan = float("nan")
        return {"rms_us": nan, "median_us": nan, "p99_us": nan, "max_us": nan, "drift_err_ppm": nan,
                "within_tol_pct": nan}
    a = np.abs(e)
    t = (true_ns - true_ns[0]).astype(np.float64) / NS
    slope = float(np.polyfit(t, e, 1)[0]) if len(t) > 2 and np.ptp(t) > 0 else 0.0  # us per s == ppm
    return {"rms_us": float(np.sqrt(np.mean(e**2))), "median_us": float(np.median(a)),
            "p99_us": float(np.percentile(a, 99)), "max_us": float(a.max()), "drift_err_ppm": slope,
            "within_tol_pct": float(100.0 * np.mean(a <= tol_us))}


def quantization(d_exact: np.ndarray, tick_ns: float, jitter_ns: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance (ns, ns^2) of the error of edge stamps ``floor((d + j) / tick) * tick + tick / 2`` (the
    driver's reading: the centre of the tick the edge fell in) for exact device times ``d`` and stamping jitter
    ``j ~ N(0, jitter_ns**2)``.  A jitter much smaller than the tick leaves a bias set by where each edge falls
    within its tick: edges that keep their phase (a period that is a whole number of ticks) share it."""
    phase = np.mod(np.asarray(d_exact, dtype=np.float64), tick_ns) / tick_ns
    s = jitter_ns / tick_ns
    if s > 3.0:  # dithered: no bias left
        return np.zeros(len(phase)), np.full(len(phase), jitter_ns**2 + tick_ns**2 / 12)
    if s == 0.0:
        return (0.5 - phase) * tick_ns, np.zeros(len(phase))
    m = np.arange(-int(np.ceil(7 * s)) - 1, int(np.ceil(7 * s)) + 2)[None, :]  # tick offsets the jitter reaches
    p = _ndtr((m + 1 - phase[:, None]) / s) - _ndtr((m - phase[:, None]) / s)
    err = m + 0.5 - phase[:, None]  # error in ticks when the jittered edge lands m ticks on
    mean = (p * err).sum(axis=1)
    return mean * tick_ns, np.maximum((p * err**2).sum(axis=1) - mean**2, 0.0) * tick_ns**2


_erf = np.vectorize(math.erf, otypes=[float])


def _ndtr(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


#: Phases of the device's tick grid the bound averages over (no estimator knows where the grid sits).
GRID_PHASES = 8


def edge_noise(sc: Scenario, s: SimStream, phase: float = 0.0) -> tuple[np.ndarray, float]:
    """Per sync edge the device saw, with its tick grid shifted by ``phase`` (a fraction of a tick): the bias of its
    stamp (``quantization``), and the white noise variance an estimator that cannot know where each edge fell
    within its tick must assume (ns^2): the jitter of both sides and the quantization's power over the edges."""
    bias, var = quantization(s.edge_dev_true + phase * s.ns_per_tick, s.ns_per_tick, s.spec.clock.jitter_us * 1e3)
    r = float(np.mean(var) + np.mean(bias**2)) + (sc.trigger.ref_jitter_us * 1e3) ** 2 if len(bias) else 0.0
    return bias, r


def ls_bound(sc: Scenario, s: SimStream, idx: np.ndarray) -> tuple[float, float]:
    """(smoother bound, filter bound) in us: RMS error of the optimal linear estimators (per true clock segment)
    that know the true noise and drift random walk but not where the device's tick grid sits: the jitter of both
    sides as white noise, and the stamps' quantization (a tick's uniform error where the jitter dithers it; where it
    does not, the error an edge's phase in the tick sets, which edges that keep their phase share and no averaging
    removes) carried to the samples, averaged over ``GRID_PHASES`` positions of the grid."""
    if not s.spec.trigger or len(s.edge_dev_true) < 2:
        return math.nan, math.nan
    q = q_per_ns(s.spec.clock.random_walk_ppm)
    eval_seg = s.segment[idx]
    eval_dev = s.clock.to_device(s.true[idx])
    var_s, var_f = [], []
    for seg in np.unique(eval_seg):
        mine = s.edge_seg == seg
        if mine.sum() < 2:
            continue
        pts = eval_dev[eval_seg == seg]
        tot_s, tot_f = np.zeros(len(pts)), np.zeros(len(pts))
        for k in range(GRID_PHASES):
            bias, r = edge_noise(sc, s, k / GRID_PHASES)
            white = 1.0 - float(np.mean(bias**2)) / r  # the part of the noise power that is not the stamps' bias
            b_s, v_s, b_f, v_f = linear_smoother(s.edge_dev_true[mine], bias[mine], r, q, pts)
            tot_s += (v_s * white + b_s**2) / GRID_PHASES
            tot_f += (v_f * white + b_f**2) / GRID_PHASES
        var_s.append(tot_s)
        var_f.append(tot_f)
    if not var_s:
        return math.nan, math.nan
    return (float(np.sqrt(np.mean(np.concatenate(var_s)))) / 1e3,
            float(np.sqrt(np.mean(np.concatenate(var_f)))) / 1e3)


def oracle(sc: Scenario, s: SimStream, idx: np.ndarray, ref_stamp: dict[int, int]) -> float:
    """RMS error (us) of the bound's smoother on this run's own edge pairs: the realized counterpart of the bound,
    free of the luck of one noise realization that an RMS over a smooth error curve carries (a line through 600
    edges has two degrees of freedom)."""
    if not s.spec.trigger or len(s.edge_dev_true) < 2:
        return math.nan
    _, r = edge_noise(sc, s)
    z = np.array([ref_stamp[t] for t in s.edge_true.tolist()], dtype=np.int64) - s.edge_stamp
    q = q_per_ns(s.spec.clock.random_walk_ppm)
    eval_seg, truth = s.segment[idx], s.true[idx]
    err = []
    for seg in np.unique(eval_seg):
        mine = s.edge_seg == seg
        if mine.sum() < 2:
            continue
        x = s.clock.to_device(truth[eval_seg == seg])
        z0 = int(z[mine][0])  # offsets relative to one of them: a device clock may read 1e18 ns (an RTC)
        a = linear_smoother(s.edge_dev_true[mine], z[mine] - z0, r, q, x)[0]
        err.append(a - ((truth[eval_seg == seg] - x) - z0))
    return float(np.sqrt(np.mean(np.concatenate(err) ** 2)) / 1e3) if err else math.nan


def _segment_starts(s: SimStream) -> np.ndarray:
    """True time of each true segment's first sample (-1 where a segment has none)."""
    n = int(s.segment.max()) + 1 if len(s.segment) else 0
    starts = np.full(max(n, s.resets_true + 1), -1, dtype=np.int64)
    first = np.flatnonzero(np.r_[True, np.diff(s.segment) != 0])
    starts[s.segment[first]] = s.true[first]
    return starts


def apparent_jumps(s: SimStream) -> list[int]:
    """Per true reset, how far the device time the driver delivers jumped (ns): the device time's advance across it
    less the reference time's.  A jump by whole wraps of a narrow counter, or back by exactly a reboot's downtime
    (a clock that stood still), delivers none."""
    out = []
    for k in range(1, s.resets_true + 1):
        after = np.flatnonzero(s.segment == k)
        before = np.flatnonzero(s.segment == k - 1)
        if not len(after) or not len(before):
            out.append(0)
            continue
        i, j = before[-1], after[0]
        out.append(int(s.device_ns[j] - s.device_ns[i]) - int(s.true[j] - s.true[i]))
    return out


def timelines(s: SimStream) -> np.ndarray:
    """Per true clock segment, the timeline it belongs to as the driver delivers device time: a reset whose
    apparent jump is under 1 ms leaves nothing to detect, and both sides are one timeline."""
    tl = np.arange(s.resets_true + 1)
    for k, jump in enumerate(apparent_jumps(s), start=1):
        if abs(jump) < 1_000_000:
            tl[k] = tl[k - 1]
    return tl


def reset_checks(sc: Scenario, s: SimStream, info: list[dict], segs: np.ndarray, idx: np.ndarray) -> dict:
    """Resets found (and how soon the matcher followed them), segments no reset explains, segments that map
    samples of two timelines (corrupt).  ``info``: the stream's ``StreamClocks.segments``."""
    tl = timelines(s)
    host_first = {}
    for k in range(1, len(tl)):
        sel = np.flatnonzero(s.segment == k)
        if len(sel) and tl[k] != tl[k - 1]:
            host_first[k] = int(s.host[sel[0]])
    used, detected, periods = set(), 0, []
    edge_dev = np.array([e.t_ns for e in s.edges], dtype=np.int64)
    for k, h in host_first.items():
        cand = [g for g in info[1:] if g["index"] not in used and -2 * NS <= g["host_ns"] - h <= 5 * NS]
        if not cand:
            continue
        g = min(cand, key=lambda g: abs(g["host_ns"] - h))
        used.add(g["index"])
        detected += 1
        seen = s.edge_true[s.edge_seg == k]
        if not s.spec.trigger or not len(seen):
            continue
        d = g["first_edge_device_ns"]
        hit = np.flatnonzero(edge_dev == d) if d is not None else []
        if len(hit):
            periods.append(float((s.edge_report_true[hit[0]] - seen[0]) / (sc.trigger.period_s * NS)))
        else:
            periods.append(math.inf)
    mixed = 0
    for g in np.unique(segs):
        if len(np.unique(tl[s.segment[idx][segs == g]])) > 1:
            mixed += 1
    return {"resets_true": s.resets_true, "resets_visible": len(host_first), "resets_detected": detected,
            "false_segments": len(info) - 1 - len(used), "mixed_segments": mixed,
            "first_match_periods": periods, "segments": [{k: g[k] for k in ("index", "cause", "edges")} for g in info]}


def wrap_checks(s: SimStream, err: np.ndarray, truth: np.ndarray) -> dict:
    """Largest error within a quarter wrap period (at most 2 s) of a counter wrap, and the p99 elsewhere."""
    if not len(s.wrap_true_ns):
        return {}
    wrap_ns = s.modulus * s.ns_per_tick
    win = min(2 * NS, wrap_ns / 4)
    near = np.zeros(len(truth), dtype=bool)
    for w in s.wrap_true_ns.tolist():
        near |= np.abs(truth - w) < win
    a = np.abs(err) / 1e3
    if not near.any() or near.all():
        return {}
    return {"max_err_near_wraps_us": float(a[near].max()), "p99_err_elsewhere_us": float(np.percentile(a[~near], 99))}


def report(sc: Scenario, streams: list[SimStream], evals: list[np.ndarray], results: dict,
           ref_stamp: dict[int, int]) -> dict:
    """``ref_stamp``: the host's stamp of each pulse, by its true time."""
    rows, bound, checks = [], {}, {"streams": {}, "targets": []}
    for s, idx in zip(streams, evals, strict=True):
        truth = s.true[idx]
        b_s, b_f = ls_bound(sc, s, idx)
        if not math.isnan(b_s):
            bound[s.name] = b_s
        per = {"resets_true": s.resets_true, "resets_driver": len(s.driver_resets), "wraps": s.wraps,
               "bound_live_us": b_f, "oracle_us": oracle(sc, s, idx, ref_stamp), "samples": len(s.true),
               "edges_device": len(s.edges)}
        for m, res in results.items():
            if s.name not in res or (m == "probes" and not s.spec.probes):
                continue
            if m.startswith("triggers") and not s.spec.trigger:
                continue
            err = res[s.name] - truth
            rows.append({"stream": s.name, "method": m, **metrics(err, truth, sc.tolerance_us)})
            u = res.get("_unc", {}).get(s.name)
            if u is not None:  # how often the model's own 1-sigma covers the error (68% when calibrated)
                per.setdefault("within_1sigma_pct", {})[m] = round(float(100 * np.mean(np.abs(err) <= u)), 1)
            st = res.get("_state", {}).get(s.name)
            if m == "triggers" and st:
                per.update(reset_checks(sc, s, res["_segments"][s.name], res["_segment"][s.name], idx))
                per["matcher"] = st.get("matcher")
                per["model_rejected"] = st.get("rejected")
                per.update(wrap_checks(s, err, truth))
            if m == "triggers-live":
                starts = _segment_starts(s)
                settled = truth >= starts[s.segment[idx]] + SETTLE_NS
                per["live_rms_after_10s_us"] = metrics(err[settled], truth[settled], sc.tolerance_us)["rms_us"]
            if m == "probes" and st:
                per["probe_rejected"] = {k: v for k, v in st.get("rejected", {}).items() if k.startswith("probe")}
        if "triggers" in results and "triggers-align" in results and s.name in results["triggers"]:
            per["block_vs_align_ns"] = int(np.max(np.abs(results["triggers"][s.name]
                                                         - results["triggers-align"][s.name]), initial=0))
        checks["streams"][s.name] = per
    for m in ("triggers-align", "triggers-live"):
        if m in results and "_cost" in results[m]:
            checks[f"cost_{m}"] = results[m]["_cost"]  # what the clock layer costs per item (this machine)
    _targets(sc, rows, bound, checks)
    return {"scenario": sc.name, "results": rows, "bound_us": bound, "checks": checks}


def _target(checks: dict, what: str, value, ok: bool) -> None:
    checks["targets"].append({"what": what, "value": value, "pass": bool(ok)})


def _targets(sc: Scenario, rows: list[dict], bound: dict, checks: dict) -> None:
    by = {(r["stream"], r["method"]): r for r in rows}
    period = sc.trigger.period_s
    for name, b in bound.items():
        for m in ("triggers", "triggers-align"):
            r = by.get((name, m))
            if r:
                _target(checks, f"{name}: {m} RMS <= 1.2 x LS bound", r["rms_us"] / b, r["rms_us"] <= 1.2 * b)
        live = checks["streams"][name].get("live_rms_after_10s_us")
        if live is not None and not math.isnan(live):
            _target(checks, f"{name}: triggers-live RMS (10 s into each segment) <= 3 x LS bound", live / b,
                    live <= 3 * b)
    for d in sc.device:
        px = by.get((d.name, "pyxdf"))
        if px and d.clock.latency_min_ms >= 5.0:
            for m, factor in (("triggers", 10.0), ("probes", 3.0)):
                r = by.get((d.name, m))
                if r:
                    ratio = px["rms_us"] / max(r["rms_us"], 1e-9)
                    _target(checks, f"{d.name}: {m} >= {factor:g}x lower RMS than pyxdf", ratio, ratio >= factor)
    for name, per in checks["streams"].items():
        if per["resets_true"] and "resets_detected" in per:
            _target(checks, f"{name}: every clock reset detected ({per['resets_visible']} of {per['resets_true']} "
                    "change the delivered device time)", per["resets_detected"],
                    per["resets_detected"] >= per["resets_visible"])
            if per.get("first_match_periods"):
                worst = max(per["first_match_periods"])
                _target(checks, f"{name}: first edge pair of each new segment within 3 periods ({period:g} s)",
                        worst, worst <= 3.0)
        if "mixed_segments" in per:
            _target(checks, f"{name}: no segment mixes two clock timelines", per["mixed_segments"],
                    per["mixed_segments"] == 0)
        if per.get("max_err_near_wraps_us") is not None:
            ok = per["max_err_near_wraps_us"] <= max(3 * per["p99_err_elsewhere_us"], 1.0)
            _target(checks, f"{name}: no error jump at counter wraps ({per['wraps']} wraps)",
                    per["max_err_near_wraps_us"], ok)
        if "block_vs_align_ns" in per:
            _target(checks, f"{name}: align (chunk by chunk) equals the block correction within 1 ns",
                    per["block_vs_align_ns"], per["block_vs_align_ns"] <= 1)


def print_report(res: dict) -> None:
    print(f"scenario {res['scenario']}")
    print(f"{'stream':<10} {'method':<15} {'rms_us':>11} {'median_us':>11} {'p99_us':>11} {'max_us':>11} "
          f"{'drift_ppm':>10} {'tol%':>6}")
    for r in res["results"]:
        print(f"{r['stream']:<10} {r['method']:<15} {r['rms_us']:>11.3f} {r['median_us']:>11.3f} "
              f"{r['p99_us']:>11.3f} {r['max_us']:>11.3f} {r['drift_err_ppm']:>10.4f} {r['within_tol_pct']:>6.1f}")
    for name, b in res["bound_us"].items():
        per = res["checks"]["streams"][name]
        live = per.get("live_rms_after_10s_us")
        extra = f"; triggers-live after 10 s of each segment {live:.3f} us" if live is not None else ""
        print(f"LS bound {name}: {b:.3f} us (the optimal smoother on this run's edges: {per['oracle_us']:.3f} us)"
              f"{extra}")
    for t in res["checks"]["targets"]:
        print(f"[{'PASS' if t['pass'] else 'FAIL'}] {t['what']}: {t['value']}")
