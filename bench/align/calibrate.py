"""``bench align --real --split calibration --fit-sigma FILE``: the per-modality-pair calibration of the hybrid
path's reported uncertainty (``synchub.agent.align.calibration.SigmaTable``), fitted on one run of the calibration
split with no table applied, and written with the split, recordings and date it came from."""

from __future__ import annotations

import collections
import datetime
import sys

import numpy as np

from synchub.agent.align.calibration import SigmaTable, coverage, fit_scale, fit_scale_floor
from synchub.agent.align.window import table_mismatch
from synchub.agent.clock.choice import UNKNOWN_UNC_NS
from synchub.models.runner import fingerprints


def _r(v, p=3):
    return None if v is None or not np.isfinite(v) else round(float(v), p)


def fit_table(pooled: dict, run_out: dict, pairs_of: dict, target: float = 0.68) -> dict:
    """The per-modality-pair calibration fitted on one ``bench align --real`` run (``pooled``: (pair name, mode)
    -> outcomes, one per recording) with no table applied: the hybrid's live errors and reported sigmas of every
    pair name with that modality pair, pooled."""
    samples = {(r, t): v for (r, t, _m), v in _live_samples(pooled, pairs_of, ("hybrid",)).items()}
    return fit_pairs(samples, {"split": run_out["corpus"], "recordings": run_out["recordings"],
                               "duration_s": run_out["duration_s"], "window_s": run_out["window_s"],
                               "hop_s": run_out["hop_s"], "method": "hybrid", "mode": "live"}, target)


def fit_windows(samples: dict, target: float = 0.68) -> list[dict]:
    """``{(ref, tgt, method): (errors_ns, window sigmas_ns)}`` of the classical and neural windows (no table
    applied) -> the ``windows`` entries of the table document: per pair and method the ``fit_scale`` k by which the
    hybrid weighs that estimate, with the coverage before and after."""
    out = []
    for (ref, tgt, method), (e, s) in sorted(samples.items()):
        e, s = np.asarray(e, dtype=np.float64), np.asarray(s, dtype=np.float64)
        ok = np.isfinite(s) & (s > 0) & (s < UNKNOWN_UNC_NS)
        k = fit_scale(e[ok], s[ok], target)
        if not np.isfinite(k) or k <= 0:
            continue
        out.append({"pair": [ref, tgt], "method": method, "scale": round(k, 3), "events": int(ok.sum()),
                    "cover_1sigma_pct_before": _r(100 * coverage(e[ok], s[ok]), 2),
                    "cover_1sigma_pct_fitted": _r(100 * coverage(e[ok], k * s[ok]), 2)})
    return out


def fit_window_table(pooled: dict, pairs_of: dict, target: float = 0.68) -> list[dict]:
    """``fit_windows`` on one ``bench align --real`` run (live mode, no window scales applied): the classical and
    neural windows' errors and sigmas of every pair name with that modality pair, pooled."""
    return fit_windows(_live_samples(pooled, pairs_of, ("classical", "neural")), target)


def table_pair_coverage(pooled: dict, pairs_of: dict, summarize, method: str = "hybrid") -> dict:
    """The live ``method``'s 1-/2-sigma coverage per modality pair, the unit a ``SigmaTable`` calibrates (speech
    and sound-effect markers share audio-text), and over every pair: events pooled over recordings
    (``summarize``: the benchmark's figures of a list of pair outcomes), with the 1-sigma's 95 % interval
    bootstrapped over the recordings (``sample_ci``)."""
    groups: dict = collections.defaultdict(list)
    for (name, mode), outs in pooled.items():
        if mode == "live":
            ref, tgt = _pair_of(name, pairs_of)
            groups["-".join(sorted((ref, tgt)))].extend(outs)
            groups["all"].extend(outs)
    keep = ("events", "mapped", "cover_1sigma_pct", "cover_2sigma_pct")
    return {k: {"outcomes": len(v), **{f: summarize(v, method)[f] for f in keep},
                "cover_1sigma_ci95": sample_ci(_recording_samples(v, method))} for k, v in sorted(groups.items())}


def reported(err: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """The events with a reported sigma (finite and known; none when the sigmas do not pair with the errors)."""
    return np.isfinite(sig) & (sig < UNKNOWN_UNC_NS) if len(sig) == len(err) else np.zeros(len(err), bool)


def sample_ci(samples, k: float = 1.0, n_boot: int = 2000) -> list[float] | None:
    """95 % interval (percent) of the ``k``-sigma coverage bootstrapped over ``samples`` ((|errors|, sigmas) of one
    world or recording each: its events share its bias, so it, not the event, is the sample); events without a
    sigma left out.  None with fewer than three samples that have sigmas."""
    hit, n = [], []
    for e, sg in samples:
        e, sg = np.asarray(e, dtype=np.float64), np.asarray(sg, dtype=np.float64)
        has = reported(e, sg)
        if has.any():
            hit.append(float(np.sum(e[has] <= k * sg[has])))
            n.append(float(np.sum(has)))
    if len(n) < 3:
        return None
    hit_a, n_a = np.array(hit), np.array(n)
    idx = np.random.default_rng(0).integers(0, len(n_a), (n_boot, len(n_a)))
    cov = hit_a[idx].sum(axis=1) / n_a[idx].sum(axis=1)
    return [round(100.0 * float(q), 1) for q in np.percentile(cov, [2.5, 97.5])]


def _recording_samples(outs, method: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(|errors|, sigmas) of ``method`` per recording (``_Out.recording``), its pairs' events pooled."""
    by: dict = collections.defaultdict(lambda: ([], []))
    for o in outs:
        by[o.recording][0].extend(np.abs(np.asarray(o.err[method], dtype=np.float64)).tolist())
        by[o.recording][1].extend(o.sigma[method])
    return [(np.array(e), np.array(s)) for e, s in by.values()]


def _pair_of(name: str, pairs_of: dict) -> tuple[str, str]:
    return next((r, t) for p in pairs_of.values() for n, r, t in p if n == name)


def _live_samples(pooled: dict, pairs_of: dict, methods) -> dict:
    """``{(ref, tgt, method): ([errors], [sigmas])}`` of ``methods`` in live mode, every pair name with that
    modality pair pooled."""
    samples: dict = collections.defaultdict(lambda: ([], []))
    for (name, mode), outs in pooled.items():
        if mode != "live":
            continue
        ref, tgt = _pair_of(name, pairs_of)
        for o in outs:
            for m in methods:
                if m in o.err:
                    samples[(ref, tgt, m)][0].extend(o.err[m])
                    samples[(ref, tgt, m)][1].extend(o.sigma[m])
    return samples


def fit_pairs(samples: dict, source: dict, target: float = 0.68, by: str = "") -> dict:
    """``{(ref, tgt): (errors_ns, sigmas_ns[, fixed_ns[, groups]])}`` -> the table document (``SigmaTable.load``
    reads it): per pair ``fit_scale_floor``'s k and g (``fixed_ns``: a part of each uncertainty the table does not
    scale), with the coverage before and after on the data it was fitted on; ``groups``: each sample's label (its
    recording's length), the fitted 1-sigma's coverage per label as ``cover_1sigma_pct_fitted_by_<by>``."""
    pairs = []
    for (ref, tgt), (e, s, *rest) in sorted(samples.items()):
        e, s = np.asarray(e, dtype=np.float64), np.asarray(s, dtype=np.float64)
        h = np.asarray(rest[0], dtype=np.float64) if rest else np.zeros(len(e))
        ok = np.isfinite(s) & (s < UNKNOWN_UNC_NS)
        k, fl = fit_scale_floor(e[ok], s[ok], target, fixed_ns=h[ok])
        if not np.isfinite(k):
            continue
        raw, t = np.hypot(s[ok], h[ok]), np.hypot(k * np.hypot(s[ok], fl), h[ok])
        pairs.append({"pair": [ref, tgt], "scale": round(k, 3), "floor_ms": round(fl / 1e6, 3), "events": int(ok.sum()),
                      "cover_1sigma_pct_before": _r(100 * coverage(e[ok], raw), 2),
                      "cover_2sigma_pct_before": _r(100 * coverage(e[ok], raw, 2.0), 2),
                      "cover_1sigma_pct_fitted": _r(100 * coverage(e[ok], t), 2),
                      "cover_2sigma_pct_fitted": _r(100 * coverage(e[ok], t, 2.0), 2)})
        if len(rest) > 1:
            g = np.asarray(rest[1])[ok]
            pairs[-1][f"cover_1sigma_pct_fitted_by_{by}"] = {str(x): _r(100 * coverage(e[ok][g == x], t[g == x]), 2)
                                                             for x in dict.fromkeys(g.tolist())}
    encoders = fingerprints({m for pair in samples for m in pair[:2]})
    return {"what": "per modality pair, the calibrated 1-sigma scale * sqrt(sigma^2 + floor^2) of the hybrid "
                    "path's reported uncertainty (agent/align/calibration.py SigmaTable)",
            **source, "target_1sigma": target, "date": datetime.date.today().isoformat(), "encoders": encoders,
            "pairs": pairs}


def checked(table: SigmaTable, warn=lambda line: print(line, file=sys.stderr)) -> SigmaTable:
    """``table``, after one ``warn`` line if it was fitted with other encoders than those loaded now
    (``$SYNCHUB_MODEL_DIR``: a candidate set judged with the shipped table)."""
    why = table_mismatch(table)
    if why:
        warn("warning: " + why)
    return table
