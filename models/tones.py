"""Steady tones in a microphone's window (mains hum, a fan's whine): found and taken out before its onsets are.
Pure numpy, no I/O.

The audio onsets' envelope is each millisecond's RMS.  A steady tone below a kilohertz swings that RMS with its own
cycle (a 50 Hz hum: from zero to its amplitude a hundred times a second), so the envelope's noise grows with the
tone, and a sound's rise must clear it: mains hum at -40 dBFS put a held-out recording's sound markers 2.8 ms off
in the median, 25 ms at p95 (0.9 / 2.4 without it), and at -10 dBFS every window was refused as a "flat signal".

``steady_lines`` finds the tones: in each of ``PARTS`` parts of the window, the power spectrum; a tone is a peak
whose power in its *weakest* part stands ``LINE_RATIO`` times above the spectrum's typical level around it
(``FLOOR_HZ`` either side) — a sound that comes and goes (a beep, a vowel) is missing from some part — and whose
amplitude in blocks of ``BLOCK_S`` never falls below ``STEADY_SHARE`` of its median (a train of beeps, one in every
part, still falls to nothing between them).  ``without_steady_lines`` takes each tone out of each channel: its
complex amplitude in each block (the channel shifted down by the tone's frequency, averaged over whole cycles), its
frequency refined by how that turns from block to block, is followed over ``FOLLOW_S`` through the blocks where
nothing else is at that frequency, and subtracted.  Not a filter: a voice whose pitch passes through the tone (a
150 Hz harmonic of 50 Hz hum) stands out of the tone's steady amplitude in its blocks and is left in them (averaged
in, half a second either side, the removal moved a held-out speech recording's mapping 5 ms late).  A window without
a tone is returned as it came.
"""

from __future__ import annotations

import numpy as np

PARTS = 8  # the window's parts whose spectra a steady tone is in every one of
MIN_PART_S = 0.25  # parts shorter than this (a window under 2 s) resolve no tone from its neighbours
LINE_RATIO = 30.0  # a tone's power in its weakest part over the spectrum's median around it (~15 dB)
FLOOR_HZ = 25.0  # the spectrum around a peak that its typical level is taken from, either side
MAX_LINES = 8
MAX_HZ = 2000.0  # a tone above this swings the 1 ms RMS by little (two or more of its cycles in each)
BLOCK_S = 0.05  # a tone's amplitude is taken in blocks this long (whole cycles of it)
STEADY_SHARE = 0.5  # a steady tone's amplitude in its weakest tenth of the blocks over its median
FOLLOW_S = 1.0  # a tone's amplitude follows its slow wander over this long either side
OUTLIER_K = 3.0  # a block further than this many robust sigmas from the tone's amplitude has something else in it


def _blocks(x: np.ndarray, pos: np.ndarray, rate_hz: float, f_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """The complex amplitude ``a`` of the tone at ``f_hz`` in ``x`` (n,), taken at ``pos`` (samples since the first),
    in each block of whole cycles (x ~ 2 Re(a e^(i 2 pi f t)) there: x shifted down by the tone, its image at -2f
    averaged out), and each block's centre (samples)."""
    per = max(2, int(round(max(1, round(BLOCK_S * f_hz)) * rate_hz / f_hz)))
    nb = len(x) // per
    down = x[: nb * per] * np.exp(-2j * np.pi * f_hz / rate_hz * pos[: nb * per])
    return down.reshape(nb, per).mean(axis=1), pos[: nb * per].reshape(nb, per).mean(axis=1)


def _running_mean(v: np.ndarray, w: np.ndarray, half: int) -> np.ndarray:
    """Weighted mean of ``v`` over ``half`` blocks either side (weights ``w``; fewer at the ends)."""
    i = np.arange(len(v))
    lo, hi = np.maximum(i - half, 0), np.minimum(i + half + 1, len(v))
    cv, cw = np.concatenate([[0.0], np.cumsum(v * w)]), np.concatenate([[0.0], np.cumsum(w)])
    return (cv[hi] - cv[lo]) / np.maximum(cw[hi] - cw[lo], 1e-12)


def _tone(x: np.ndarray, pos: np.ndarray, rate_hz: float, f_hz: float) -> np.ndarray:
    """The steady tone at about ``f_hz`` in ``x`` (n,) taken at ``pos``, sample by sample (the module docstring)."""
    a, centres = _blocks(x, pos, rate_hz, f_hz)
    if len(a) < 4:
        return np.zeros(len(x))
    turn = float(np.median(np.angle(a[1:] * np.conj(a[:-1]))))  # a frequency slightly off turns it block by block
    d = turn / float(np.median(np.diff(centres)))  # that correction, radians a sample
    a = a * np.exp(-1j * d * (centres - centres[0]))
    typical = np.median(a.real) + 1j * np.median(a.imag)
    dev = np.abs(a - typical)
    good = (dev <= OUTLIER_K * 1.4826 * float(np.median(dev)) + 1e-15).astype(np.float64)
    half = max(1, int(round(FOLLOW_S * f_hz / max(1, round(BLOCK_S * f_hz)))))
    smooth = _running_mean(a.real, good, half) + 1j * _running_mean(a.imag, good, half)
    amp = np.interp(pos, centres, smooth.real) + 1j * np.interp(pos, centres, smooth.imag)
    return 2.0 * np.real(amp * np.exp(1j * (2 * np.pi * f_hz / rate_hz * pos + d * (pos - centres[0]))))


def steady_lines(x: np.ndarray, rate_hz: float) -> list[float]:
    """The frequencies (Hz) of the steady tones in ``x`` (n,) at ``rate_hz``."""
    m = np.asarray(x, dtype=np.float64).reshape(-1)
    pos = np.arange(len(m), dtype=np.float64)
    part = len(m) // PARTS
    if part < MIN_PART_S * rate_hz or not np.all(np.isfinite(m)):
        return []
    seg = m[: part * PARTS].reshape(PARTS, part)
    p = np.abs(np.fft.rfft((seg - seg.mean(axis=1, keepdims=True)) * np.hanning(part), axis=1)) ** 2
    top = min(p.shape[1], int(MAX_HZ * part / rate_hz) + 2)
    weakest, typical = p[:, :top].min(axis=0), np.median(p[:, :top], axis=0)
    w = max(3, int(round(FLOOR_HZ * part / rate_hz)))
    if top < 2 * w + 3:
        return []
    k = np.arange(1, top - 1)
    k = k[(weakest[k] >= weakest[k - 1]) & (weakest[k] > weakest[k + 1])]  # the weakest part's peaks
    around = np.lib.stride_tricks.sliding_window_view(np.pad(typical, w, mode="edge"), 2 * w + 1)[k]
    ratio = weakest[k] / np.maximum(np.median(around, axis=1), 1e-300)
    peaks, ratio = k[ratio > LINE_RATIO], ratio[ratio > LINE_RATIO]
    found: list[float] = []
    for j in peaks[np.argsort(-ratio)][:MAX_LINES]:
        a, b, c = np.log(typical[j - 1 : j + 2] + 1e-300)
        d = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c < 0 else 0.0
        f = (j + float(np.clip(d, -0.5, 0.5))) * rate_hz / part
        amp = np.abs(_blocks(m, pos, rate_hz, f)[0]) if f > 0 else np.zeros(0)
        if len(amp) and np.percentile(amp, 10) >= STEADY_SHARE * np.median(amp):
            found.append(float(f))
    return sorted(found)


def without_steady_lines(x: np.ndarray, rate_hz: float, t_ns=None) -> tuple[np.ndarray, list[float]]:
    """``x`` (n,) or (n, c) with each channel's steady tones taken out, and their frequencies (Hz, of every
    channel); ``x`` itself where it has none.  ``t_ns``: the samples' times, where some may be missing (the tone
    goes on through a gap; without them, samples are taken as ``1 / rate_hz`` apart)."""
    pos = (np.arange(len(x), dtype=np.float64) if t_ns is None or len(t_ns) != len(x) else
           (np.asarray(t_ns, dtype=np.int64) - int(t_ns[0])) * (rate_hz / 1e9))
    cols = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = None
    found: set[float] = set()
    for c in range(cols.shape[1]):
        lines = steady_lines(cols[:, c], rate_hz)
        if not lines:
            continue
        if y is None:
            y = cols.copy()
        for f in lines:
            y[:, c] -= _tone(y[:, c], pos, rate_hz, f)
        found.update(round(f, 1) for f in lines)
    return (x, []) if y is None else (y.reshape(np.shape(x)), sorted(found))
