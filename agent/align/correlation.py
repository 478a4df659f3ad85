"""Correlation of alignment signals: onsets on a common grid, normalized cross-correlation, GCC, embedding
similarity over lags, and the peak of a curve.  Pure numpy.

* ``to_grid``/``smooth``: an ``Onsets`` as mass per bin of a regular grid, Gaussian smoothing;
* ``ncc_valid``: normalized cross-correlation of a target against a longer reference (valid lags only);
* ``gcc_phat``/``gcc_ml``: generalized cross-correlation of two recordings of the same waveform (two microphones),
  PHAT-weighted or coherence-weighted over frames;
* ``embedding_curve``: the similarity of two streams' encoder embeddings over lags (``coverage_weight`` discounts
  lags the reference only partly covers);
* ``parabolic``/``peak_stats``: a curve's peak to a fraction of a bin, its peak-to-sidelobe ratio and sidelobe.
"""

from __future__ import annotations

import math

import numpy as np

from synchub.agent.core.units import NS

from .onsets import Onsets


def to_grid(o: Onsets, t0_ns: int, n: int, rate_hz: float) -> np.ndarray:
    """Onset mass per grid bin; bin j covers ``[t0 + j/rate, t0 + (j+1)/rate)``."""
    out = np.zeros(n)
    if not o.ok or n <= 0 or len(o.t_ns) == 0:
        return out
    step = NS / rate_hz
    pos = (o.t_ns - int(t0_ns)).astype(np.float64) / step  # in bins
    if o.kind == "impulses":
        c = pos - 0.5
        j = np.floor(c).astype(np.int64)
        frac = c - j
        for jj, w in ((j, (1.0 - frac) * o.mass), (j + 1, frac * o.mass)):
            ok = (jj >= 0) & (jj < n)
            np.add.at(out, jj[ok], w[ok])
        return out
    cum = np.concatenate([[0.0], np.cumsum(o.mass)])
    edges = np.arange(n + 1, dtype=np.float64)
    c = np.interp(edges, pos, cum, left=0.0, right=cum[-1])
    return np.diff(c)


def smooth(x: np.ndarray, sigma_bins: float) -> np.ndarray:
    """Gaussian smoothing (same length)."""
    if sigma_bins < 0.3 or len(x) == 0:
        return x
    r = int(np.ceil(4 * sigma_bins))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_bins) ** 2)
    k /= k.sum()
    if len(x) > 4000 and r > 16:
        n = len(x) + 2 * r
        nf = 1 << int(np.ceil(np.log2(n)))
        y = np.fft.irfft(np.fft.rfft(x, nf) * np.fft.rfft(k, nf), nf)[r : r + len(x)]
        return y
    return np.convolve(x, k, mode="same")


def ncc_valid(ref: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """Normalized cross-correlation of ``tgt`` slid along the longer ``ref``: curve[m] = corr(tgt, ref[m:m+len])."""
    n, m = len(ref), len(tgt)
    if m == 0 or n < m:
        return np.zeros(0)
    nf = 1 << int(np.ceil(np.log2(n + m)))
    t = tgt - tgt.mean()
    num = np.fft.irfft(np.fft.rfft(ref, nf) * np.conj(np.fft.rfft(t, nf)), nf)[: n - m + 1]
    c1 = np.concatenate([[0.0], np.cumsum(ref)])
    c2 = np.concatenate([[0.0], np.cumsum(ref * ref)])
    s1 = c1[m:] - c1[:-m]
    s2 = c2[m:] - c2[:-m]
    var_r = np.maximum(s2 - s1 * s1 / m, 0.0)
    den = np.sqrt(var_r) * np.sqrt(float(np.sum(t * t)))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 1e-12 * max(1.0, float(den.max()) if len(den) else 1.0), num / den, 0.0)
    return out


def gcc_phat(ref: np.ndarray, tgt: np.ndarray, max_lag: int, beta: float = 1.0) -> np.ndarray:
    """Generalized cross-correlation with phase transform: curve over lags -max_lag..max_lag (tgt delayed
    relative to ref by lag => peak at +lag, i.e. tgt[k] ~ ref[k - lag])."""
    n = len(ref) + len(tgt)
    nf = 1 << int(np.ceil(np.log2(n)))
    r = np.fft.rfft(ref - np.mean(ref), nf)
    t = np.fft.rfft(tgt - np.mean(tgt), nf)
    cross = t * np.conj(r)
    mag = np.abs(cross)
    cross = cross / np.maximum(mag, 1e-12 * max(float(mag.max()), 1e-30)) ** beta
    cc = np.fft.irfft(cross, nf)
    return np.concatenate([cc[-max_lag:], cc[: max_lag + 1]]) if max_lag > 0 else cc[:1]


def gcc_ml(ref: np.ndarray, tgt: np.ndarray, max_lag: int, frame: int = 2048) -> np.ndarray:
    """GCC with maximum-likelihood (coherence) weighting, Welch-averaged over Hann frames (hop frame/2): bins where
    the two signals are coherent count, bins of independent noise do not (plain PHAT weights them all equally).
    Same lag convention as ``gcc_phat``; ``max_lag`` < frame / 2."""
    n = min(len(ref), len(tgt))
    frame = int(min(frame, 1 << int(np.floor(np.log2(max(n, 8))))))
    hop = frame // 2
    win = np.hanning(frame)
    sxy = np.zeros(frame // 2 + 1, dtype=np.complex128)
    sxx = np.zeros(frame // 2 + 1)
    syy = np.zeros(frame // 2 + 1)
    for a in range(0, n - frame + 1, hop):
        r = np.fft.rfft((ref[a : a + frame] - np.mean(ref[a : a + frame])) * win)
        t = np.fft.rfft((tgt[a : a + frame] - np.mean(tgt[a : a + frame])) * win)
        sxy += t * np.conj(r)
        sxx += np.abs(t) ** 2
        syy += np.abs(r) ** 2
    mag = np.abs(sxy)
    coh = np.clip(mag**2 / np.maximum(sxx * syy, 1e-30), 0.0, 0.999)
    w = coh / (1.0 - coh) / np.maximum(mag, 1e-30)
    cc = np.fft.irfft(sxy * w, frame)
    max_lag = min(max_lag, frame // 2 - 1)
    return np.concatenate([cc[-max_lag:], cc[: max_lag + 1]]) if max_lag > 0 else cc[:1]


def parabolic(curve: np.ndarray, i: int) -> float:
    """Sub-bin peak position near integer index ``i`` (vertex of the parabola through i-1, i, i+1)."""
    if i <= 0 or i >= len(curve) - 1:
        return float(i)
    a, b, c = curve[i - 1], curve[i], curve[i + 1]
    den = a - 2 * b + c
    if den >= 0:
        return float(i)
    return float(i) + float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))


def peak_stats(curve: np.ndarray, exclude: int) -> tuple[int, float, float]:
    """(argmax, peak-to-sidelobe ratio, ratio of the best value outside the main lobe to the main peak).  The main
    lobe runs downhill from the peak to the first minimum on each side, and at least +-exclude bins."""
    if len(curve) == 0:
        return 0, 0.0, 1.0
    i = int(np.argmax(curve))
    lo, hi = i, i  # the main lobe: downhill from the peak to the first minimum on each side
    while lo > 0 and curve[lo - 1] < curve[lo]:
        lo -= 1
    while hi < len(curve) - 1 and curve[hi + 1] < curve[hi]:
        hi += 1
    mask = np.ones(len(curve), dtype=bool)
    mask[max(0, min(lo, i - exclude)) : max(hi, i + exclude) + 1] = False
    side = curve[mask]
    peak = float(curve[i])
    if len(side) < 3:
        return i, float("inf") if peak > 0 else 0.0, 0.0
    sd = float(np.std(side))
    psr = (peak - float(np.mean(side))) / sd if sd > 0 else (float("inf") if peak > 0 else 0.0)
    second = float(np.max(side))
    ratio = second / peak if peak > 0 else 1.0
    return i, psr, ratio


def coverage_weight(known: np.ndarray, m: int, min_overlap: float) -> np.ndarray:
    """Per lag (valid correlation of a length-``m`` target along ``known``): the covered fraction, 0 below
    ``min_overlap``."""
    c = np.concatenate([[0.0], np.cumsum(known)])
    frac = (c[m:] - c[:-m]) / max(m, 1)
    return np.where(frac >= min_overlap, frac, 0.0)


def embedding_curve(ref_times, ref_vectors, tgt_times, tgt_vectors, span, prior_ns: int, search_s: float,
                    rate_hz: float):
    """Normalized similarity of target embeddings against reference embeddings over lags prior +- search_s.

    Returns (curve, offset of curve[0] in ns, step ns, problem).  Both sequences are resampled (linear) onto a
    grid at ``rate_hz``, mean-centred per dimension, then correlated per dimension and summed.
    """
    rt = np.asarray(ref_times, dtype=np.int64)
    tt = np.asarray(tgt_times, dtype=np.int64)
    rv = np.asarray(ref_vectors, dtype=np.float64)
    tv = np.asarray(tgt_vectors, dtype=np.float64)
    if len(tt) < 3 or len(rt) < 3:
        return None, 0.0, 0.0, "too few embedding frames"
    if not (np.all(np.isfinite(rv)) and np.all(np.isfinite(tv))):
        return None, 0.0, 0.0, "non-finite embeddings"
    step = NS / rate_hz
    d0, d1 = int(span[0]), int(span[1])
    n_t = int((d1 - d0) / step)
    n_l = int(math.ceil(search_s * NS / step))
    tg = d0 + np.arange(n_t) * step
    r0 = d0 + prior_ns - n_l * step
    rg = r0 + np.arange(n_t + 2 * n_l) * step
    if rt[0] > rg[0] + 0.5 * (rg[-1] - rg[0]) or rt[-1] < rg[0] + 0.5 * (rg[-1] - rg[0]):
        return None, 0.0, 0.0, "reference embeddings do not cover the search range"

    def resample(t, v, grid):
        out = np.empty((len(grid), v.shape[1]))
        rel_t = (t - t[0]).astype(np.float64)
        rel_g = grid - t[0]
        for k in range(v.shape[1]):
            out[:, k] = np.interp(rel_g, rel_t, v[:, k])
        inside = (grid >= t[0]) & (grid <= t[-1])
        return out, inside

    a, ina = resample(tt, tv, tg)
    b, inb = resample(rt, rv, rg)
    a = np.where(ina[:, None], a - a[ina].mean(axis=0), 0.0)
    b = np.where(inb[:, None], b - b[inb].mean(axis=0), 0.0)
    if float(np.sum(a * a)) <= 1e-12:
        return None, 0.0, 0.0, "flat target embeddings"
    n, m = len(b), len(a)
    nf = 1 << int(np.ceil(np.log2(n + m)))
    num = np.fft.irfft(np.sum(np.fft.rfft(b, nf, axis=0) * np.conj(np.fft.rfft(a, nf, axis=0)), axis=1), nf)
    num = num[: n - m + 1]
    e = np.concatenate([[0.0], np.cumsum(np.sum(b * b, axis=1))])
    den = np.sqrt(np.maximum(e[m:] - e[:-m], 1e-12)) * math.sqrt(float(np.sum(a * a)))
    return num / den * coverage_weight(inb.astype(np.float64), m, 0.5), float(r0 - d0), step, ""
