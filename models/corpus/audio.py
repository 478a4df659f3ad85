"""Audio helpers of the corpus, pure numpy: read a sound file, resample it, find where a sound starts, mix at an SNR.

* ``read_sound(path)``: mono float32 in [-1, 1] and its rate; WAV through the standard library, Ogg Vorbis
  (``.oga``/``.ogg``) through ``soundfile`` (the ``bench``/``train`` extras).
* ``sample_at(x, fs, t_s)``: the band-limited signal ``x`` (sampled at ``k / fs``) evaluated at arbitrary times:
  a Blackman-windowed sinc, so resampling a clip to 16 kHz and sampling a mixture on a drifting device clock are the
  same operation.
* ``sound_onset(x, fs)``: the truth of a clip's start: the first sample whose magnitude is above a threshold
  relative to the clip's peak and its own noise floor, and after which the sound goes on (not a lone click).
"""

from __future__ import annotations

import math
import pathlib
import wave

import numpy as np

RATE_HZ = 16_000
ONSET_REL_DB = -40.0  # onset threshold relative to the clip's peak magnitude
ONSET_FLOOR_K = 4.0  # ... and at least this many times the peak of its leading noise (see onset_threshold)
ONSET_HOLD_S = 0.005  # in the 5 ms from the onset on, at least this fraction of the samples
ONSET_HOLD_FRAC = 0.2  # must be above half the threshold (the sound goes on: not a lone click)


class SoundFileError(ValueError):
    """A sound file that cannot be read (format, codec or a missing ``soundfile``)."""


def read_sound(path) -> tuple[np.ndarray, int]:
    """(mono float32 samples in [-1, 1], rate Hz) of a WAV or Ogg file; the first channel of a multichannel one."""
    path = pathlib.Path(path)
    if path.suffix.lower() == ".wav":
        try:
            with wave.open(str(path), "rb") as w:
                n, fs, ch, sw = w.getnframes(), w.getframerate(), w.getnchannels(), w.getsampwidth()
                raw = w.readframes(n)
        except (wave.Error, EOFError) as exc:
            raise SoundFileError(f"{path}: {exc}") from None
        if sw == 1:
            x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
        elif sw == 2:
            x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
        elif sw == 4:
            x = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
        else:
            raise SoundFileError(f"{path}: {8 * sw}-bit WAV not supported")
        return np.ascontiguousarray(x.reshape(-1, ch)[:, 0]), int(fs)
    try:
        import soundfile
    except ImportError:
        raise SoundFileError(f"{path}: reading Ogg needs soundfile (pip install 'synchub[bench]')") from None
    try:
        x, fs = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile's errors have no common class
        raise SoundFileError(f"{path}: {exc}") from None
    return np.ascontiguousarray(x[:, 0]), int(fs)


def _kernel(tau_s: np.ndarray, fc: float, half_s: float) -> np.ndarray:
    """Blackman-windowed sinc (stop band ~ -74 dB), zero beyond ``half_s``."""
    u = np.clip(tau_s / half_s, -1.0, 1.0)
    win = 0.42 + 0.5 * np.cos(np.pi * u) + 0.08 * np.cos(2.0 * np.pi * u)
    return 2.0 * fc * np.sinc(2.0 * fc * tau_s) * win


def sample_at(x: np.ndarray, fs: float, t_s: np.ndarray, cutoff_hz: float | None = None, zeros: int = 12,
              block: int = 8192) -> np.ndarray:
    """``x`` (sampled at ``k / fs``, zero outside) evaluated at times ``t_s`` (seconds), low-passed at
    ``cutoff_hz`` (default 0.45 fs): a Blackman-windowed sinc over ``zeros`` zero crossings each side."""
    x = np.asarray(x, dtype=np.float64)
    t_s = np.asarray(t_s, dtype=np.float64)
    fc = 0.45 * fs if cutoff_hz is None else float(cutoff_hz)
    half_s = zeros / (2.0 * fc)
    n_taps = int(math.ceil(2.0 * half_s * fs)) + 2
    out = np.zeros(len(t_s), dtype=np.float64)
    xp = np.concatenate([np.zeros(n_taps), x, np.zeros(n_taps)])
    for a in range(0, len(t_s), block):
        t = t_s[a : a + block]
        k0 = np.floor((t - half_s) * fs).astype(np.int64)
        k = k0[:, None] + np.arange(n_taps)[None, :]
        tau = t[:, None] - k / fs
        h = _kernel(tau, fc, half_s) / fs
        idx = np.clip(k + n_taps, 0, len(xp) - 1)
        out[a : a + block] = np.sum(xp[idx] * h, axis=1)
    return out.astype(np.float32)


def resample(x: np.ndarray, fs_in: int, fs_out: int = RATE_HZ) -> np.ndarray:
    """``x`` at ``fs_out`` (same start time, band-limited to 0.45 of the lower rate)."""
    if int(fs_in) == int(fs_out):
        return np.asarray(x, dtype=np.float32)
    n_out = int(math.floor(len(x) * fs_out / fs_in))
    return sample_at(x, fs_in, np.arange(n_out) / fs_out, cutoff_hz=0.45 * min(fs_in, fs_out))


def block_rms(x: np.ndarray, n: int) -> np.ndarray:
    m = len(x) // n
    if m == 0:
        return np.zeros(0)
    b = np.asarray(x[: m * n], dtype=np.float64).reshape(m, n)
    return np.sqrt(np.mean(b * b, axis=1))


def onset_threshold(x: np.ndarray, fs: int) -> float:
    """``ONSET_REL_DB`` below the clip's peak, raised to ``ONSET_FLOOR_K`` x the peak of its leading noise (the
    samples before the first crossing of the relative threshold, when there are at least 5 ms of them: a
    recording's room noise; TTS output and clips that start at once have none)."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    peak = float(a.max()) if len(a) else 0.0
    rel = peak * 10.0 ** (ONSET_REL_DB / 20.0)
    first = int(np.argmax(a > rel)) if peak > 0 else 0
    if first < int(0.005 * fs):
        return rel
    lead = a[:first]
    floor = math.sqrt(float(np.mean(lead * lead))) * math.sqrt(2.0)  # a sine's peak for its rms
    return max(rel, ONSET_FLOOR_K * floor)


def sound_onset(x: np.ndarray, fs: int) -> int | None:
    """Index of the first sample where the sound starts (see module doc), or None for a silent clip."""
    x = np.asarray(x, dtype=np.float64)
    thr = onset_threshold(x, fs)
    if thr <= 0.0:
        return None
    hold = max(1, int(ONSET_HOLD_S * fs))
    loud = np.abs(x) > 0.5 * thr
    above = np.nonzero(np.abs(x) > thr)[0]
    if len(above) == 0:
        return None
    c = np.concatenate([[0], np.cumsum(loud)])
    for i in above[:2000]:  # the first crossings; a click followed by silence is skipped
        j = min(len(x), i + hold)
        if c[j] - c[i] >= ONSET_HOLD_FRAC * (j - i):
            return int(i)
    return int(above[0])


def active_power(x: np.ndarray, fs: int) -> float:
    """Mean power over the clip's active 10 ms blocks (those within 30 dB of the loudest): the speech level."""
    rms = block_rms(x, max(1, fs // 100))
    if len(rms) == 0 or rms.max() <= 0:
        return 0.0
    act = rms[rms > rms.max() * 10 ** (-30 / 20)]
    return float(np.mean(act * act))
