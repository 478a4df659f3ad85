"""``bench align --real-files --mic SPEC``: the corpus's microphone as real microphones and recorders deliver it.

The corpus renders clean 16 kHz float WAVs; a user's recorder adds what none of them has: an ADC's DC offset, mains
hum, a gain set too low and 16-bit samples (written by libsndfile, which truncates), another sample rate.  ``SPEC``
is ``+``-joined parts, applied left to right to the microphone's samples before the WAV is written:

* ``dc=A``: a DC offset of A (full scale 1);
* ``hum=A``: 50 Hz mains hum of amplitude A, with its third harmonic at A / 3;
* ``gain=DB``: a gain in dB (``gain=-40``: a microphone's gain set 40 dB too low);
* ``rate=HZ``: resampled to HZ (band-limited, by the FFT of the whole recording);
* ``pcm16``: written as 16-bit PCM (libsndfile's float -> PCM_16: truncated), not as float.

Pure numpy apart from the WAV written by ``write``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synchub.errors import UserError
from synchub.extras import require


@dataclass(frozen=True)
class Mic:
    """What a microphone does to the corpus's samples: ``parts`` of ``(name, value)`` in order; ``subtype``: the
    WAV's sample format."""

    parts: tuple[tuple[str, float], ...] = ()
    subtype: str = "FLOAT"

    def apply(self, x: np.ndarray, rate_hz: float) -> tuple[np.ndarray, float]:
        """``x`` (n, c) at ``rate_hz`` as this microphone delivers it: (samples, their rate)."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        for name, v in self.parts:
            if name == "dc":
                x = x + v
            elif name == "hum":
                t = np.arange(len(x)) / rate_hz
                x = x + (v * np.sin(2 * np.pi * 50.0 * t) + v / 3 * np.sin(2 * np.pi * 150.0 * t + 0.7))[:, None]
            elif name == "gain":
                x = x * 10 ** (v / 20)
            elif name == "rate":
                x, rate_hz = resample(x, rate_hz, v), v
        return x, rate_hz

    def write(self, path, x: np.ndarray, rate_hz: float) -> None:
        """The corpus's samples ``x`` at ``rate_hz`` through this microphone, as a WAV at ``path``."""
        sf = require("soundfile", "writing the corpus's WAV files")
        y, rate = self.apply(x, rate_hz)
        sf.write(path, np.asarray(y, np.float32), int(round(rate)), subtype=self.subtype)


AS_RENDERED = Mic()


def resample(x: np.ndarray, rate_hz: float, to_hz: float) -> np.ndarray:
    """``x`` (n, c) band-limited from ``rate_hz`` to ``to_hz``: its spectrum cut or padded (the recording taken as
    one period: its ends touch, which for minutes of sound is a millisecond of its edges)."""
    n = len(x)
    m = int(round(n * to_hz / rate_hz))
    spec = np.fft.rfft(x, axis=0)
    return np.fft.irfft(spec[: m // 2 + 1], m, axis=0) * (m / n)


def parse(spec: str) -> Mic:
    """``--mic``'s SPEC (see the module docstring); a part it does not know is a one-line error."""
    parts, subtype = [], "FLOAT"
    for part in filter(None, (p.strip() for p in spec.split("+"))):
        name, _, value = part.partition("=")
        if name == "pcm16" and not value:
            subtype = "PCM_16"
            continue
        try:
            v = float(value)
        except ValueError:
            v = float("nan")
        if name not in ("dc", "hum", "gain", "rate") or not np.isfinite(v) or (name == "rate" and not v >= 1000):
            raise UserError(f"--mic: {part!r} is not dc=A, hum=A, gain=DB, rate=HZ (>= 1000) or pcm16")
        parts.append((name, v))
    return Mic(tuple(parts), subtype)
