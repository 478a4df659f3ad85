"""Calibration of the aligner's reported sigma against measured errors.  Pure.

An alignment's sigma comes from its correlation peak (width, PSR, events, sample periods); what it cannot see is
how differently two modalities register the same event (a marker stamped before its sound starts, an IMU that
feels a knock a little after the microphone hears it).  That part is a floor per modality pair, added in
quadrature (``AlignerSettings.pair_sigma_floor_ms``), measured on held-out data with ``floor_for_coverage``:
the smallest floor that makes ``target`` of the errors fall within their 1-sigma.
"""

from __future__ import annotations

import numpy as np

COVERAGE_1SIGMA = 0.68


def coverage(errors_ns, sigmas_ns, k: float = 1.0) -> float:
    """Fraction of |errors| within ``k`` of their sigma (nan without data)."""
    e = np.abs(np.asarray(errors_ns, dtype=np.float64))
    s = np.asarray(sigmas_ns, dtype=np.float64)
    ok = np.isfinite(e) & np.isfinite(s)
    return float(np.mean(e[ok] <= k * s[ok])) if ok.any() else float("nan")


def floor_for_coverage(errors_ns, sigmas_ns, target: float = COVERAGE_1SIGMA) -> float:
    """The smallest floor f (ns) with ``coverage(errors, sqrt(sigma^2 + f^2)) >= target``: 0 when the sigmas
    already cover enough.  Each error needs f >= sqrt(max(e^2 - s^2, 0)); the floor is that need's quantile."""
    e = np.abs(np.asarray(errors_ns, dtype=np.float64))
    s = np.asarray(sigmas_ns, dtype=np.float64)
    ok = np.isfinite(e) & np.isfinite(s)
    if not ok.any():
        return 0.0
    need = np.sqrt(np.maximum(e[ok] ** 2 - s[ok] ** 2, 0.0))
    return float(np.quantile(need, target, method="higher"))


def pair_floor_ns(table, a: str, b: str, default_ns: float = 0.0) -> float:
    """The floor (ns) of the unordered modality pair (a, b) in ``table`` ((m1, m2, floor_ms), ...)."""
    for m1, m2, ms in table:
        if {m1, m2} == {a, b}:
            return float(ms) * 1e6
    return default_ns
