"""Numpy-only preprocessing shared by training and runtime: one stream's samples -> model input on a frame grid.

Every modality is turned into a ``(C, T)`` float32 matrix on a common grid of ``FRAME_RATE_HZ`` frames.  Frame
``k`` covers ``[k * FRAME_NS, (k + 1) * FRAME_NS)`` of the stream's *own* clock and its centre is
``(k + 0.5) * FRAME_NS``; the grid is anchored at absolute multiples of the frame period, so two streams' frame
indices differ by their clock offset rounded to frames.

Normalization is scale-free (so gains, units and sensor placement do not matter), computed over the span that is
featurized:

* level channels: deviation from the channel median, log-compressed relative to the channel's sample-to-sample
  noise: ``sign(d) * log1p(|d| / noise)``;
* energy channels: ``log(energy + eps)`` minus its median.

The last channel of every modality is ``valid``: the fraction of the frame backed by real samples.  Samples with
NaN/inf, timestamps out of order, flat channels and empty streams are counted in ``Features.problems`` and
masked, never raised.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

import numpy as np

from .tones import without_steady_lines

FRAME_RATE_HZ = 50
FRAME_NS = 1_000_000_000 // FRAME_RATE_HZ

#: Modalities that have an encoder, in the order of the modality classifier's outputs.
MODALITIES = ("imu", "audio", "video", "image", "text", "telemetry")

VIDEO_POOL = (6, 8)  # grayscale frames are area-pooled to this many rows x columns
AUDIO_BANDS_HZ = (0.0, 100.0, 250.0, 500.0, 900.0, 1500.0, 2500.0, 4000.0, np.inf)
TEXT_BUCKETS = 16
CLIP = 8.0  # every feature is clipped to +-CLIP

#: Normalization described in every ONNX file's metadata (runner checks it matches this module).
NORMALIZATION = "v1: median-centred, log1p(|x|/noise) for levels, log-energy minus median, clip 8, valid channel last"


@dataclass
class Features:
    x: np.ndarray  # float32 (C, T)
    frame_times_ns: np.ndarray  # int64 (T,) frame centres on the stream's own clock
    valid: np.ndarray  # float32 (T,) fraction of the frame backed by samples (0 = masked)
    problems: dict[str, int] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return self.x.shape[1]


def channels(modality: str, sample_shape: tuple[int, ...] = ()) -> int:
    """Number of feature channels for ``modality`` (telemetry depends on its column count)."""
    if modality == "imu":
        return 13
    if modality == "audio":
        return len(AUDIO_BANDS_HZ) - 1 + 2
    if modality in ("video", "image"):
        return VIDEO_POOL[0] * VIDEO_POOL[1] + 5
    if modality == "text":
        return TEXT_BUCKETS + 3
    if modality == "telemetry":
        n = int(sample_shape[0]) if sample_shape else 5
        return 2 * n + 2
    raise KeyError(modality)


def grid_for(times_ns: np.ndarray) -> tuple[int, int]:
    """(first frame index, number of frames) covering ``times_ns``."""
    t = np.asarray(times_ns, dtype=np.int64)
    if len(t) == 0:
        return 0, 0
    k0 = int(t.min() // FRAME_NS)
    k1 = int(t.max() // FRAME_NS)
    return k0, k1 - k0 + 1


def marker_text(sample) -> str:
    """A marker sample as the line it logs: text as it is, bytes decoded, a numeric code as written (``1``, not
    ``1.0`` or ``[1.]``: an LSL marker stream of int or float codes, a table's code column read as markers), several
    channels joined by spaces, None as an empty line."""
    if sample is None:
        return ""
    if isinstance(sample, bytes):
        return sample.decode("utf-8", "replace")
    if isinstance(sample, str):
        return sample
    if isinstance(sample, (list, tuple, np.ndarray)):
        return " ".join(marker_text(v) for v in np.asarray(sample, dtype=object).reshape(-1))
    if isinstance(sample, (float, np.floating)) and np.isfinite(sample) and float(sample).is_integer():
        return str(int(sample))
    if isinstance(sample, (float, np.floating)):
        return f"{float(sample):g}"
    return str(sample)


def featurize(modality: str, samples, times_ns, k0: int | None = None, n_frames: int | None = None) -> Features:
    """Features of one stream span.  ``k0``/``n_frames`` fix the grid (training); by default it covers the span."""
    problems: dict[str, int] = {}
    if modality == "text":
        lines = [marker_text(s) for s in samples]
        t = np.asarray(times_ns, dtype=np.int64).reshape(-1)
        if len(lines) != len(t):
            raise ValueError(f"text: {len(lines)} lines but {len(t)} times")
        data = lines
    else:
        data = np.asarray(samples, dtype=np.float64)
        t = np.asarray(times_ns, dtype=np.int64).reshape(-1)
        if data.shape[0] != len(t):
            raise ValueError(f"{modality}: {data.shape[0]} samples but {len(t)} times")
    if len(t) and np.any(np.diff(t) < 0):
        problems["unsorted_times"] = int(np.sum(np.diff(t) < 0))
        order = np.argsort(t, kind="stable")
        t = t[order]
        data = [data[i] for i in order] if modality == "text" else data[order]
    if modality != "text" and len(t):
        flat = data.reshape(len(t), -1)
        good = np.all(np.isfinite(flat), axis=1)
        if not np.all(good):
            problems["nan_samples"] = int(np.sum(~good))
            data, t = data[good], t[good]
    if k0 is None or n_frames is None:
        k0, n_frames = grid_for(t)
    if len(t) == 0:
        problems["empty"] = 1
    centres = (np.arange(k0, k0 + n_frames, dtype=np.int64) * FRAME_NS) + FRAME_NS // 2
    fn = {"imu": _imu, "audio": _audio, "video": _video, "image": _video, "text": _text, "telemetry": _telemetry}
    if modality not in fn:
        raise KeyError(f"no features for modality {modality!r}")
    if modality == "telemetry":
        nch = int(np.prod(data.shape[1:])) if data.ndim > 1 else 1
        n_out = 2 * nch + 2
    else:
        n_out = channels(modality)
    if n_frames == 0:
        return Features(np.zeros((n_out, 0), np.float32), centres, np.zeros(0, np.float32), problems)
    inside = (t >= k0 * FRAME_NS) & (t < (k0 + n_frames) * FRAME_NS)  # only samples on the grid
    if not np.all(inside):
        data = [d for d, keep in zip(data, inside, strict=True) if keep] if modality == "text" else data[inside]
        t = t[inside]
    x, valid = fn[modality](data, t, k0, n_frames, problems)
    x = np.clip(np.nan_to_num(x, nan=0.0, posinf=CLIP, neginf=-CLIP), -CLIP, CLIP)
    x = x * (valid > 0)  # masked frames are all zero
    x = np.concatenate([x, valid[None, :]], axis=0).astype(np.float32)
    return Features(x, centres, valid.astype(np.float32), problems)


# ---------------------------------------------------------------- helpers
def _frame_index(t: np.ndarray, k0: int) -> np.ndarray:
    return (t // FRAME_NS - k0).astype(np.int64)


def _binned_mean(idx: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame mean of ``values`` (m, c) -> (c, n) and counts (n,)."""
    counts = np.bincount(idx, minlength=n)[:n].astype(np.float64)
    sums = np.stack([np.bincount(idx, weights=values[:, c], minlength=n)[:n] for c in range(values.shape[1])])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    return mean, counts


def _median(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-row median of (c, n) over ``mask`` columns (0 when none)."""
    if not np.any(mask):
        return np.zeros(x.shape[0])
    return np.median(x[:, mask], axis=1)


def _slog(dev: np.ndarray, noise) -> np.ndarray:
    return np.sign(dev) * np.log1p(np.abs(dev) / noise)


def _level(x: np.ndarray, mask: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Median-centred, noise-relative log-compressed levels of (c, n)."""
    return _slog(x - _median(x, mask)[:, None], np.asarray(noise).reshape(-1, 1))


def _typical(v: np.ndarray) -> float:
    """The median of ``v`` (>= 0), or of its values above zero where over half of it is zero (0 where none is)."""
    m = float(np.median(v)) if len(v) else 0.0
    return m if m > 0 or not np.any(v > 0) else float(np.median(v[v > 0]))


def _log_energy(e: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """log(e + eps) minus its median over ``mask``, (c, n); ``eps`` a thousandth of the row's ``_typical`` (digital
    silence, a still IMU's quantized jerk: an absolute 1e-3 hid the sounds of a recording 40 dB quieter)."""
    ref = _median(e, mask)
    for c in np.nonzero(~(ref > 0))[0] if np.any(mask) else ():  # digital silence: the typical value above zero
        ref[c] = _typical(e[c, mask])
    eps = 1e-3 * np.where(ref > 0, ref, 1.0)[:, None] + 1e-20
    le = np.log(e + eps)
    return le - _median(le, mask)[:, None]


def _noise(x: np.ndarray, axis=-1) -> np.ndarray:
    """Robust sample-to-sample noise level (median |diff|) with a floor, per row."""
    if x.shape[axis] < 2:
        return np.ones(x.shape[0]) * 1e-6
    d = np.median(np.abs(np.diff(x, axis=axis)), axis=axis)
    return np.maximum(d, 1e-6 * (np.median(np.abs(x), axis=axis) + 1e-9)) + 1e-12


def _flat(problems: dict, x: np.ndarray) -> None:
    if x.shape[0] > 1:
        n = int(np.sum(np.ptp(x, axis=0) == 0))
        if n:
            problems["flat_channels"] = problems.get("flat_channels", 0) + n


def _period(t: np.ndarray) -> float:
    if len(t) < 2:
        return float(FRAME_NS)
    d = np.diff(t)
    d = d[d > 0]
    return float(np.median(d)) if len(d) else float(FRAME_NS)


def _coverage(t: np.ndarray, k0: int, n: int, hold_ns: float) -> np.ndarray:
    """Fraction of each frame within ``hold_ns`` after some sample (0..1)."""
    if len(t) == 0:
        return np.zeros(n)
    edges = (np.arange(k0, k0 + n + 1, dtype=np.int64) * FRAME_NS).astype(np.float64)
    sub = np.linspace(0, 1, 5)[:-1] + 0.125  # 4 probes per frame
    probes = edges[:-1, None] + sub[None, :] * FRAME_NS
    j = np.searchsorted(t, probes.ravel(), side="right") - 1
    ok = j >= 0
    last = np.where(ok, t[np.maximum(j, 0)], -np.inf)
    covered = (probes.ravel() - last) <= hold_ns
    return covered.reshape(n, 4).mean(axis=1)


# ---------------------------------------------------------------- modalities
def _imu(data: np.ndarray, t: np.ndarray, k0: int, n: int, problems: dict):
    data = data.reshape(len(t), -1)
    if data.shape[1] != 6:
        raise ValueError(f"imu: expected 6 channels (accel xyz, gyro xyz), got {data.shape[1]}")
    if len(t) == 0:
        return np.zeros((12, n)), np.zeros(n)
    _flat(problems, data)
    idx = _frame_index(t, k0)
    period = _period(t)
    mean, counts = _binned_mean(idx, data, n)
    jerk_raw = np.zeros_like(data)
    if len(t) > 1:
        d = np.abs(np.diff(data, axis=0))
        d[np.diff(t) > 3 * period] = 0.0  # no diffs across gaps
        jerk_raw[1:] = d
    jerk, _ = _binned_mean(idx, jerk_raw, n)
    mask = counts > 0
    # typical jerk (a still, quantized IMU's is zero in most frames); one per sensor keeps the direction ratios
    noise = np.array([_typical(jerk[c, mask]) if mask.any() else 1.0 for c in range(6)])
    noise = np.repeat([noise[:3].mean(), noise[3:].mean()], 3) + 1e-9
    levels = _level(mean, mask, noise)
    energy = _log_energy(jerk, mask)
    expected = FRAME_NS / period
    valid = np.minimum(counts / max(expected, 1.0), 1.0) * _coverage(t, k0, n, 3 * period)
    return np.concatenate([levels, energy]), valid


def _audio(data: np.ndarray, t: np.ndarray, k0: int, n: int, problems: dict):
    data = data.reshape(len(t), -1)
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    nb = len(AUDIO_BANDS_HZ) - 1
    if len(t) == 0:
        return np.zeros((nb + 1, n)), np.zeros(n)
    _flat(problems, data)
    period = _period(t)
    sr = 1e9 / period
    x = without_steady_lines(x, sr, t)[0]  # mains hum held the lowest bands still, a voice's onsets late in them
    L = int(np.clip(round(FRAME_NS / period), 4, 2048))
    # a sample's place in its frame rounded (at 44.1, 48, 22.05 kHz the floor moved 26-47 % of them to a neighbour's)
    fi = (rel := t - k0 * FRAME_NS) // FRAME_NS
    pos = np.minimum(((rel - fi * FRAME_NS) * L + FRAME_NS // 2) // FRAME_NS, L - 1)
    ok = (fi >= 0) & (fi < n)
    buf = np.zeros((n, L))
    filled = np.zeros((n, L), dtype=bool)
    buf[fi[ok], pos[ok]] = x[ok]
    filled[fi[ok], pos[ok]] = True
    counts = filled.sum(axis=1)
    mean = np.where(counts > 0, buf.sum(axis=1) / np.maximum(counts, 1), 0.0)
    buf = np.where(filled, buf - mean[:, None], 0.0)
    power = np.abs(np.fft.rfft(buf * np.hanning(L)[None, :], axis=1)) ** 2
    freqs = np.fft.rfftfreq(L, d=1.0 / sr)
    slack = 0.25 * sr / L  # edges fall on bins: a quarter bin low keeps 100 Hz in its band at 44099.5 Hz (44.1 kHz)
    bands = np.zeros((nb, n))
    for b in range(nb):
        sel = (freqs >= AUDIO_BANDS_HZ[b] - slack) & (freqs < AUDIO_BANDS_HZ[b + 1] - slack)
        if sel.any():
            bands[b] = power[:, sel].mean(axis=1)
    mask = counts > 0
    total = (buf**2).sum(axis=1) / np.maximum(counts, 1)
    feats = np.concatenate([_log_energy(bands, mask), _log_energy(total[None, :], mask)])
    return feats, counts / L


def _pool(frames: np.ndarray) -> np.ndarray:
    m, h, w = frames.shape
    ry = np.zeros((VIDEO_POOL[0], h))
    ry[(np.arange(h) * VIDEO_POOL[0]) // h, np.arange(h)] = 1.0
    rx = np.zeros((w, VIDEO_POOL[1]))
    rx[np.arange(w), (np.arange(w) * VIDEO_POOL[1]) // w] = 1.0
    ry /= ry.sum(axis=1, keepdims=True)
    rx /= rx.sum(axis=0, keepdims=True)
    return np.einsum("ih,mhw,wj->mij", ry, frames, rx).reshape(m, -1)


def _video(data: np.ndarray, t: np.ndarray, k0: int, n: int, problems: dict):
    npix = VIDEO_POOL[0] * VIDEO_POOL[1]
    if len(t) == 0:
        return np.zeros((npix + 4, n)), np.zeros(n)
    if data.ndim == 4:  # (m, h, w, c) colour -> gray
        data = data.mean(axis=3)
    if data.ndim != 3:
        raise ValueError(f"video/image: expected frames (n, h, w), got shape {data.shape}")
    frames = data / 255.0
    pooled = _pool(frames)  # (m, 48)
    bright = frames.mean(axis=(1, 2))
    diff = np.zeros(len(t))
    if len(t) > 1:
        diff[1:] = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2))
    if len(t) > 1 and np.all(np.ptp(pooled, axis=0) == 0):
        problems["flat_channels"] = problems.get("flat_channels", 0) + 1
    period = _period(t)
    # sample-and-hold: each grid frame shows the latest camera frame exposed before its end
    ends = (np.arange(k0, k0 + n, dtype=np.int64) + 1) * FRAME_NS
    j = np.searchsorted(t, ends, side="left") - 1
    has = j >= 0
    jj = np.maximum(j, 0)
    valid = _coverage(t, k0, n, 2.5 * period)
    mask_cam = np.ones(len(t), bool)
    noise_pix = max(float(np.median(np.abs(np.diff(pooled, axis=0)))) if len(t) > 1 else 0.0, 1e-3 / 255)
    lv = _slog(pooled - np.median(pooled, axis=0), noise_pix).T  # (48, m)
    noise_b = max(float(np.median(np.abs(np.diff(bright)))) if len(t) > 1 else 0.0, 1e-3 / 255)
    bv = _slog(bright - np.median(bright), noise_b)[None, :]
    dv = _log_energy(diff[None, :], mask_cam)
    cam = np.concatenate([lv, bv, dv])  # (50, m)
    held = np.where(has[None, :], cam[:, jj], 0.0)
    fi = _frame_index(t, k0)
    fresh = np.zeros(n)
    phase = np.zeros(n)
    ok = (fi >= 0) & (fi < n)
    fresh[fi[ok]] = 1.0
    phase[fi[ok]] = ((t[ok] - (fi[ok] + k0) * FRAME_NS) / FRAME_NS) * 2.0 - 1.0
    return np.concatenate([held, fresh[None, :], phase[None, :]]), valid * has


_TOKEN = re.compile(r"[a-z_]+")
_DUR = re.compile(r"dur(?:ation)?\s*[=:]\s*([0-9]*\.?[0-9]+)\s*(ms|s)?", re.IGNORECASE)


def text_tokens(line: str) -> list[str]:
    """Word tokens of a log line, digits and values dropped (``amp=0.42`` -> ``amp``)."""
    return _TOKEN.findall(line.lower())


def _text(lines: list[str], t: np.ndarray, k0: int, n: int, problems: dict):
    x = np.zeros((TEXT_BUCKETS + 2, n))
    if len(t) == 0:
        return x, np.ones(n)
    fi = _frame_index(t, k0)
    for line, f, tt in zip(lines, fi, t, strict=True):
        if not 0 <= f < n:
            continue
        toks = text_tokens(line)
        if not toks:
            problems["empty_lines"] = problems.get("empty_lines", 0) + 1
        for tok in toks[:8]:
            x[zlib.crc32(tok.encode()) % TEXT_BUCKETS, f] += 1.0 / min(len(toks), 8)
        x[TEXT_BUCKETS, f] += 1.0
        m = _DUR.search(line)
        if m:
            dur = float(m.group(1)) * (1e-3 if (m.group(2) or "s").lower() == "ms" else 1.0)
            end = min(n, int((tt + dur * 1e9) // FRAME_NS - k0) + 1)
            x[TEXT_BUCKETS + 1, f:end] = 1.0
    return x, np.ones(n)


def _telemetry(data: np.ndarray, t: np.ndarray, k0: int, n: int, problems: dict):
    c = int(np.prod(data.shape[1:])) if data.ndim > 1 else 1
    data = data.reshape(len(t), c)
    if len(t) == 0:
        return np.zeros((2 * c + 1, n)), np.zeros(n)
    _flat(problems, data)
    centres = (np.arange(k0, k0 + n, dtype=np.int64) * FRAME_NS + FRAME_NS // 2).astype(np.float64)
    tf = t.astype(np.float64)
    interp = np.stack([np.interp(centres, tf, data[:, i]) for i in range(c)])  # (c, n)
    noise = _noise(data.T) if len(t) > 1 else np.ones(c)
    mask = np.ones(n, bool)
    lv = _level(interp, mask, noise)
    dv = _slog(np.gradient(interp, axis=1) if n > 1 else np.zeros_like(interp), noise[:, None] * FRAME_NS / _period(t))
    fi = _frame_index(t, k0)
    fresh = np.zeros(n)
    fresh[fi[(fi >= 0) & (fi < n)]] = 1.0
    valid = _coverage(t, k0, n, 2.5 * _period(t))
    return np.concatenate([lv, dv, fresh[None, :]]), valid
