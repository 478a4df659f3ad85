"""Time-discrimination metrics of embedding sequences (numpy only; used by training, export checks and benches).

The aligner's coarse step correlates two streams' embedding sequences over lags; what matters is that this
similarity peaks at the true lag.  ``lag_curve`` is that similarity, ``lag_accuracy`` the fraction of held-out
recordings whose peak lies within +-``tol`` frames of the truth.
"""

from __future__ import annotations

import itertools

import numpy as np

from .features import MODALITIES

#: The pairs the issue asks about (the seed paper's six plus imu/audio/video pairs).
EVAL_PAIRS = (
    ("imu", "audio"),
    ("imu", "video"),
    ("audio", "video"),
    ("text", "video"),
    ("text", "telemetry"),
    ("telemetry", "video"),
    ("text", "image"),
    ("telemetry", "image"),
)
ALL_PAIRS = tuple(itertools.combinations(MODALITIES, 2))


def lag_curve(a: np.ndarray, b: np.ndarray, max_lag: int, valid_a=None, valid_b=None) -> np.ndarray:
    """Mean cosine similarity of ``a[i]`` and ``b[i + lag]`` for lag in ``-max_lag..max_lag`` (frames).

    ``a``/``b`` are (T, d) L2-normalized embeddings on the same frame grid.  Frames of ``a`` whose partner
    falls outside ``b`` (or is invalid) are left out of that lag's mean.
    """
    ta, tb = len(a), len(b)
    va = np.ones(ta, bool) if valid_a is None else np.asarray(valid_a) > 0
    vb = np.ones(tb, bool) if valid_b is None else np.asarray(valid_b) > 0
    out = np.full(2 * max_lag + 1, -np.inf)
    for k, lag in enumerate(range(-max_lag, max_lag + 1)):
        i0, i1 = max(0, -lag), min(ta, tb - lag)
        if i1 - i0 < 1:
            continue
        m = va[i0:i1] & vb[i0 + lag : i1 + lag]
        if m.sum() < 1:
            continue
        out[k] = float(np.einsum("ij,ij->i", a[i0:i1][m], b[i0 + lag : i1 + lag][m]).mean())
    return out


def peak_lag(curve: np.ndarray) -> int:
    max_lag = (len(curve) - 1) // 2
    return int(np.argmax(curve)) - max_lag


def refined_peak(curve: np.ndarray) -> float:
    """Peak lag with parabolic sub-frame refinement (frames)."""
    k = int(np.argmax(curve))
    lag = float(k - (len(curve) - 1) // 2)
    if 0 < k < len(curve) - 1 and np.all(np.isfinite(curve[k - 1 : k + 2])):
        y0, y1, y2 = curve[k - 1 : k + 2]
        den = y0 - 2 * y1 + y2
        if den < 0:
            lag += float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
    return lag


def lag_accuracy(pairs_of_embeddings, max_lag: int = 100, tol: int = 1, true_lag: int = 0) -> float:
    """Fraction of (a, b) embedding pairs whose ``lag_curve`` peaks within ``tol`` frames of ``true_lag``."""
    hits = [abs(peak_lag(lag_curve(a, b, max_lag)) - true_lag) <= tol for a, b in pairs_of_embeddings]
    return float(np.mean(hits)) if hits else float("nan")
