"""Hand-made alignment features: onset signals per modality, resampling onto a common grid, correlation.

Pure numpy, no I/O.  Every modality is turned into an *onset* description on its own clock: where something
started happening, and how strongly.  Two streams that see the same world events then have onset signals that
line up when the clocks are aligned, whatever their sample rates and signal shapes.

* IMU (n, 6): norm of accel and gyro deviation from the window's median (gravity and bias removed), positive
  first difference.
* audio (n, 1): energy envelope in 1 ms blocks, positive first difference.  Two audio streams are also matched
  directly with GCC-PHAT on the raw 16 kHz samples (``gcc_phat``).
* video / image (n, h, w): per-pixel positive frame differences above the noise, averaged (LED on, shake,
  brightness change).
* telemetry (n, c): robust-normalized positive differences of the fast channels; values that summarize the
  preceding ``window_s`` are placed at the window's centre.
* text (event log lines): an event train, one impulse per line, optionally only the lines whose keywords a
  partner modality can see (``TEXT_SEEN_BY``).

Sampled onsets are spread uniformly over the interval between consecutive sample times (linear interpolation),
so a step that happens between two samples puts its mass centroid at their midpoint: unbiased on average, and
sub-sample precise where an integrating sensor (exposure, telemetry window) records a partial step.

Bad input (NaN samples, too few samples, a flat signal) never raises: ``Onsets.problem`` says what was wrong and
the aligner abstains with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NS = 1_000_000_000

#: log-line keywords each modality can see with a sharp onset (motion onsets are smooth: left out).
TEXT_SEEN_BY: dict[str, tuple[str, ...]] = {
    "imu": ("impact",),
    "audio": ("impact", "beep"),
    "video": ("led", "impact"),
    "image": ("led", "impact", "motion"),
    "telemetry": ("led", "beep", "impact"),
    "text": (),
}

#: telemetry channels used for onsets (index -> weight) and the averaging window their values summarize.
TELEMETRY_CHANNELS = (2, 3, 4)
TELEMETRY_WINDOW_S = 0.1
AUDIO_BLOCK_S = 0.001


@dataclass
class Onsets:
    """Onset mass of one stream window on its own clock.

    ``kind == "intervals"``: ``t_ns`` (m,) sample centre times, ``mass`` (m - 1,) onset between consecutive times
    (spread uniformly over the interval).  ``kind == "impulses"``: ``t_ns`` (m,) and ``mass`` (m,) point masses.
    ``problem`` is empty when usable, else a reason ("no samples", "flat signal", ...).
    """

    kind: str
    t_ns: np.ndarray
    mass: np.ndarray
    problem: str = ""
    n_events: int = 0
    notes: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problem


def _bad(kind: str, problem: str) -> Onsets:
    return Onsets(kind, np.zeros(0, dtype=np.int64), np.zeros(0), problem=problem)


def _clean(samples: np.ndarray, min_n: int) -> tuple[np.ndarray | None, str, int]:
    """Float64 copy with NaN/inf replaced by the previous valid value; reason when unusable."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = len(x)
    if n < min_n:
        return None, f"too few samples ({n} < {min_n})", 0
    flat = x.reshape(n, -1)
    bad = ~np.isfinite(flat)
    n_bad = int(bad.any(axis=1).sum())
    if n_bad > n // 2:
        return None, f"mostly non-finite samples ({n_bad}/{n})", n_bad
    if n_bad:
        flat = flat.copy()
        for c in np.nonzero(bad.any(axis=0))[0]:
            col = flat[:, c]
            good = np.isfinite(col)
            if not good.any():
                col[:] = 0.0
                continue
            idx = np.where(good, np.arange(n), 0)
            np.maximum.accumulate(idx, out=idx)
            first = int(np.argmax(good))
            idx[:first] = first
            flat[:, c] = col[idx]
        x = flat.reshape(x.shape)
    return x, "", n_bad


HOLD_S = 0.15  # an onset is a rise above the maximum of the preceding HOLD_S (suppresses ringing, shake)


def _noise(x: np.ndarray) -> float:
    d = np.diff(x)
    return float(np.median(np.abs(d - np.median(d)))) * 1.4826 if len(d) else 0.0


def novelty(level: np.ndarray, hold: int) -> np.ndarray:
    """Per interval k-1 -> k: how far ``level[k]`` rises above the max of the ``hold`` samples before it, minus
    3 noise sigmas (positive part).  Length ``len(level) - 1``."""
    n = len(level)
    if n < 2:
        return np.zeros(0)
    hold = max(1, int(hold))
    pad = np.concatenate([np.full(hold - 1, level[0]), level[:-1]])
    prev_max = np.lib.stride_tricks.sliding_window_view(pad, hold).max(axis=1) if hold > 1 else level[:-1]
    return np.maximum(level[1:] - prev_max - 3.0 * _noise(level), 0.0)


def _hold(t_ns: np.ndarray) -> int:
    if len(t_ns) < 2:
        return 1
    return max(1, int(round(HOLD_S * NS / float(np.median(np.diff(t_ns))))))


def _finish(t_ns: np.ndarray, on: np.ndarray, notes: dict | None = None) -> Onsets:
    o = Onsets("intervals", np.asarray(t_ns, dtype=np.int64), on, notes=notes or {})
    peak = float(on.max()) if len(on) else 0.0
    if not np.isfinite(peak) or peak <= 0.0:
        o.problem = "flat signal (no onsets above noise)"
        return o
    # events: runs of onset mass above a tenth of the strongest onset
    strong = on > 0.1 * peak
    o.n_events = int(np.count_nonzero(strong[1:] & ~strong[:-1]) + int(strong[0]))
    return o


def imu_onsets(t_ns, samples) -> Onsets:
    x, why, _ = _clean(samples, 8)
    if x is None:
        return _bad("intervals", why)
    dev = x - np.median(x, axis=0)
    level = np.linalg.norm(dev[:, :3], axis=1) + np.linalg.norm(dev[:, 3:6], axis=1)
    return _finish(t_ns, novelty(level, _hold(t_ns)))


def audio_envelope(t_ns, samples, block_s: float = AUDIO_BLOCK_S) -> tuple[np.ndarray, np.ndarray]:
    """RMS envelope in blocks of ``block_s``: (block centre times, rms)."""
    x = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)[:, 0]
    t = np.asarray(t_ns, dtype=np.int64)
    if len(t) < 2:
        return t[:0], x[:0]
    period = float(np.median(np.diff(t)))
    b = max(1, int(round(block_s * NS / period)))
    m = len(x) // b
    xb = x[: m * b].reshape(m, b)
    rms = np.sqrt(np.mean(xb * xb, axis=1))
    tb = t[: m * b].reshape(m, b)
    centres = tb[:, 0] + (tb[:, -1] - tb[:, 0]) // 2
    return centres, rms


def audio_onsets(t_ns, samples) -> Onsets:
    x, why, _ = _clean(samples, 64)
    if x is None:
        return _bad("intervals", why)
    x = x[:, 0] - np.median(x[:, 0])
    tc, env = audio_envelope(t_ns, x)
    if len(env) < 4:
        return _bad("intervals", "too few audio blocks")
    return _finish(tc, novelty(env, _hold(tc)))


def video_onsets(t_ns, frames) -> Onsets:
    """Level = mean over pixels of |frame - median frame| / that pixel's own typical deviation (clipped), so a
    small LED counts as much as a global shake; onset = novelty of the level."""
    x, why, _ = _clean(frames, 3)
    if x is None:
        return _bad("intervals", why)
    f = x.reshape(len(x), -1)
    dev = np.abs(f - np.median(f, axis=0))
    scale = np.median(dev, axis=0) * 1.4826 + 1.0
    level = np.mean(np.minimum(dev / scale, 20.0), axis=1)
    return _finish(t_ns, novelty(level, _hold(t_ns)))


def telemetry_onsets(t_ns, samples, window_s: float = TELEMETRY_WINDOW_S, channels=TELEMETRY_CHANNELS) -> Onsets:
    x, why, _ = _clean(samples, 4)
    if x is None:
        return _bad("intervals", why)
    chans = [c for c in channels if c < x.shape[1]] or list(range(x.shape[1]))
    t = np.asarray(t_ns, dtype=np.int64) - int(window_s * NS / 2)
    on = np.zeros(len(x) - 1)
    for c in chans:
        col = x[:, c] - np.median(x[:, c])
        pos = novelty(col, 1)
        scale = float(np.max(pos)) if len(pos) else 0.0
        if scale > 0:
            on += pos / scale
    return _finish(t, on)


def text_onsets(t_ns, lines, partner: str | None = None) -> Onsets:
    """Event train of log lines; with ``partner``, only the lines whose keywords that modality sees."""
    t = np.asarray(t_ns, dtype=np.int64)
    keys = TEXT_SEEN_BY.get(partner or "text", ())
    if keys:
        keep = np.array([any(k in str(s) for k in keys) for s in lines], dtype=bool)
        t = t[keep] if len(keep) else t
    o = Onsets("impulses", t, np.ones(len(t)), n_events=len(t))
    if len(t) == 0:
        o.problem = "no events (no log lines)" if not keys or not len(lines) else "no events the partner can see"
    return o


def onsets(modality: str, t_ns, samples, partner: str | None = None) -> Onsets:
    """Onsets of a stream window; ``modality`` is a StreamInfo type (``marker`` counts as text)."""
    t = np.asarray(t_ns, dtype=np.int64)
    if modality in ("text", "marker"):
        return text_onsets(t, samples, partner)
    if len(t) != len(samples):
        return _bad("intervals", f"{len(t)} times for {len(samples)} samples")
    if len(t) > 1 and np.any(np.diff(t) <= 0):
        order = np.argsort(t, kind="stable")
        keep = np.concatenate([[True], np.diff(t[order]) > 0])
        t, samples = t[order][keep], np.asarray(samples)[order][keep]
    fn = {"imu": imu_onsets, "audio": audio_onsets, "video": video_onsets, "image": video_onsets,
          "telemetry": telemetry_onsets}.get(modality)
    if fn is None:
        return _bad("intervals", f"no classical features for modality {modality!r}")
    return fn(t, samples)


# ------------------------------------------------------------------------------------------------ grid
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


# ------------------------------------------------------------------------------------------------ correlation
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
    """(argmax, peak-to-sidelobe ratio, ratio of the best peak outside +-exclude to the main peak)."""
    if len(curve) == 0:
        return 0, 0.0, 1.0
    i = int(np.argmax(curve))
    mask = np.ones(len(curve), dtype=bool)
    mask[max(0, i - exclude) : i + exclude + 1] = False
    side = curve[mask]
    peak = float(curve[i])
    if len(side) < 3:
        return i, float("inf") if peak > 0 else 0.0, 0.0
    sd = float(np.std(side))
    psr = (peak - float(np.mean(side))) / sd if sd > 0 else (float("inf") if peak > 0 else 0.0)
    second = float(np.max(side))
    ratio = second / peak if peak > 0 else 1.0
    return i, psr, ratio
