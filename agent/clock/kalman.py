"""Kalman filter passes over a bank of (offset, skew) models, the two-filter smoother, and bank averaging.  Pure.

The state is ``x = (offset, skew)`` at device time ``t``: ``offset`` = reference - device time (ns, relative to a
segment's origin), ``skew`` its rate of change; the skew follows a random walk of intensity ``q`` (1/ns, from a
drift wander in ppm per sqrt(hour): ``q_per_ns``).  A *bank* runs several such filters side by side (different
``q`` and evidence-noise scales) and averages them by likelihood (``mixture``, ``combine``).

* ``filter_pass``: one Kalman pass over sorted measurements for every filter of a bank (the states after each
  update, the log-likelihoods);
* ``two_filter``/``fuse``: a forward and a backward pass fused at any device times (the two-sided estimate);
* ``linear_smoother``/``least_squares_bound``: one filter of the same model with known noise: the benchmark's
  optimal linear estimator and its mean square error.

``synchub.agent.clock.bank.FilterBank`` runs the bank live (gating, probation, steps) and calls these for its
two-sided estimate.  Times are floats relative to a local origin (ns).
"""

from __future__ import annotations

import math

import numpy as np

from synchub.agent.core.units import NS

#: Bank averaging: filters whose likelihood is at least this fraction of the best one's count, at most this many.
MIX_MIN_WEIGHT = 1e-3
MIX_MAX_MODELS = 8


def q_per_ns(ppm_per_sqrt_h: float) -> float:
    """Skew random-walk spectral density in 1/ns (skew is dimensionless) of a drift wander in ppm per sqrt(hour)."""
    return (ppm_per_sqrt_h * 1e-6) ** 2 / (3600.0 * NS)



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



def two_filter(ld: np.ndarray, fw, bw, qs: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward passes (of filters with intensities ``qs``) over measurements at sorted device times
    ``ld``, fused at device times ``d``: offsets and variances, shape (filters, len(d)); one side alone before the
    first or after the last measurement."""
    # forward: last snapshot at or before d; backward: first snapshot strictly after d (a measurement at d counts once)
    jn = np.searchsorted(ld, d, side="right")
    return fuse(ld, fw, bw, qs, d, jn - 1, jn)


def pass_parts(pass_) -> tuple[np.ndarray, ...]:
    """A pass's snapshots as (offset, skew, P00, P01, P11), each (measurements, filters), cached on the pass."""
    if len(pass_) == 5:
        return pass_[4]
    X, P = pass_[0], pass_[1]
    return X[..., 0], X[..., 1], P[..., 0, 0], P[..., 0, 1], P[..., 1, 1]


def fuse(ld: np.ndarray, fw, bw, qs: np.ndarray, d: np.ndarray, i: np.ndarray, jn: np.ndarray):
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
    x0, x1, p00, p01, p11 = (v[ic] for v in pass_parts(fw))
    f1 = x1
    f0 = x0 + dt * x1
    f00 = p00 + dt * (2 * p01 + dt * p11) + q * dt**3 / 3
    f01 = p01 + dt * p11 + q * dt**2 / 2
    f11 = p11 + q * dt
    x0, x1, p00, p01, p11 = (v[jc] for v in pass_parts(bw))
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
    fw = filter_pass(e, zz, rr, qs, skew_prior**2)
    bw = filter_pass(-e[::-1], zz[::-1], rr[::-1], qs, skew_prior**2)
    a_s, v_s = two_filter(e, fw, bw, qs, pts)
    i = np.clip(np.searchsorted(e, pts, side="right") - 1, 0, len(e) - 1)
    xf, Pf = propagate(fw[0][i, 0], fw[1][i, 0], pts - e[i], float(q))
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



def parsimonious(ll: np.ndarray, margin: float = 2.0) -> int:
    """The smallest random walk (the bank is sorted by intensity) whose log-likelihood is within ``margin`` of the
    best: a steadier clock is preferred unless the data say otherwise."""
    return int(np.flatnonzero(ll >= np.max(ll) - margin)[0])


def predict_state(x: np.ndarray, P: np.ndarray, dt, q) -> None:
    """Constant-rate prediction over ``dt`` of (offset, rate) filters with random-walk intensities ``q``, in place
    (states ``x[..., 2]``, covariances ``P[..., 2, 2]``; ``dt`` and ``q`` broadcast against the leading shape)."""
    x[..., 0] += x[..., 1] * dt
    p00 = P[..., 0, 0] + 2 * dt * P[..., 0, 1] + dt * dt * P[..., 1, 1] + q * dt**3 / 3
    p01 = P[..., 0, 1] + dt * P[..., 1, 1] + q * dt**2 / 2
    P[..., 0, 0] = p00
    P[..., 0, 1] = P[..., 1, 0] = p01
    P[..., 1, 1] += q * dt


def propagate(x: np.ndarray, P: np.ndarray, dt, q):
    xo, Po = x.copy(), P.copy()
    predict_state(xo, Po, dt, q)
    return xo, Po


def filter_pass(d, z, r, qs, skew_var0, rs=None, store: bool = True, skew0: float = 0.0):
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
            predict_state(x, P, dt, qs)
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
