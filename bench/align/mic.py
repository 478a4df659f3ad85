"""``bench align --real-files --mic SPEC``: the corpus's microphone as real microphones and recorders deliver it.

The corpus renders clean 16 kHz float WAVs; a user's recorder adds what none of them has: an ADC's DC offset, mains
hum, a gain set too low or too high, 16-bit samples (written by libsndfile, which truncates), another sample rate, a
room's reverberation, a lossy file.  ``SPEC`` is ``+``-joined parts, applied left to right to the microphone's samples
before the file is written:

* ``dc=A``: a DC offset of A (full scale 1);
* ``hum=A``: 50 Hz mains hum of amplitude A, with its third harmonic at A / 3;
* ``gain=DB``: a gain in dB (``gain=-40``: a microphone's gain set 40 dB too low);
* ``rate=HZ``: resampled to HZ (band-limited, by the FFT of the whole recording);
* ``clip=DB``: a gain of DB set too high, clipped at full scale (a recorder's ADC: ``clip=20``);
* ``reverb=S``: a room whose reverberation dies away by 60 dB in S seconds (``reverb=0.6``: a lab): after the direct
  sound, from 5 ms on, an exponentially decaying noise tail (seeded) carrying as much energy as the direct sound (a
  microphone a metre or two from the source);
* ``pcm16``: written as 16-bit PCM (libsndfile's float -> PCM_16: truncated), not as float;
* ``ogg``: written as Ogg Vorbis (``mic.ogg``, lossy), not as a WAV.

Pure numpy apart from the WAV written by ``write``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synchub.errors import UserError
from synchub.extras import require

OGG_BLOCK = 1 << 14  # frames per write of an Ogg Vorbis file


@dataclass(frozen=True)
class Mic:
    """What a microphone does to the corpus's samples: ``parts`` of ``(name, value)`` in order; ``subtype``: the
    WAV's sample format."""

    parts: tuple[tuple[str, float], ...] = ()
    subtype: str = "FLOAT"
    suffix: str = ".wav"  # ".ogg": Ogg Vorbis

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
            elif name == "clip":
                x = np.clip(x * 10 ** (v / 20), -1.0, 1.0)
            elif name == "reverb":
                x = reverberated(x, rate_hz, v)
        return x, rate_hz

    def write(self, path, x: np.ndarray, rate_hz: float) -> None:
        """The corpus's samples ``x`` at ``rate_hz`` through this microphone, as a WAV at ``path``."""
        sf = require("soundfile", "writing the corpus's WAV files")
        y, rate = self.apply(x, rate_hz)
        if self.suffix == ".ogg":  # in blocks: libvorbis overflows its stack on one long write (a 300 s one
            # crashed the process: libsndfile issue 1095, python-soundfile 396 / 426)
            y = np.asarray(y, np.float32)
            with sf.SoundFile(path, "w", int(round(rate)), y.shape[1], format="OGG", subtype="VORBIS") as f:
                for i in range(0, len(y), OGG_BLOCK):
                    f.write(y[i : i + OGG_BLOCK])
        else:
            sf.write(path, np.asarray(y, np.float32), int(round(rate)), subtype=self.subtype)


AS_RENDERED = Mic()


def resample(x: np.ndarray, rate_hz: float, to_hz: float) -> np.ndarray:
    """``x`` (n, c) band-limited from ``rate_hz`` to ``to_hz``: its spectrum cut or padded (the recording taken as
    one period: its ends touch, which for minutes of sound is a millisecond of its edges)."""
    n = len(x)
    m = int(round(n * to_hz / rate_hz))
    spec = np.fft.rfft(x, axis=0)
    return np.fft.irfft(spec[: m // 2 + 1], m, axis=0) * (m / n)


REVERB_DELAY_S = 0.005  # the first reflection after the direct sound


def reverberated(x: np.ndarray, rate_hz: float, rt60_s: float) -> np.ndarray:
    """``x`` (n, c) in a room whose reverberation dies away by 60 dB in ``rt60_s``: convolved (FFT) with the direct
    sound and, from ``REVERB_DELAY_S``, seeded noise decaying as exp(-6.9 t / rt60) with the direct sound's energy;
    the length of ``x`` kept (the tail past its end dropped)."""
    n = max(int(round(rt60_s * rate_hz)), 1)
    t = np.arange(n) / rate_hz
    tail = np.random.default_rng(0).standard_normal(n) * np.exp(-6.9 * t / max(rt60_s, 1e-3))
    tail[t < REVERB_DELAY_S] = 0.0
    h = np.zeros(n)
    h[0] = 1.0
    h += tail / max(float(np.sqrt(np.sum(tail * tail))), 1e-12)
    m = 1 << int(np.ceil(np.log2(len(x) + n)))
    y = np.fft.irfft(np.fft.rfft(x, m, axis=0) * np.fft.rfft(h, m)[:, None], m, axis=0)
    return y[: len(x)]


def parse(spec: str) -> Mic:
    """``--mic``'s SPEC (see the module docstring); a part it does not know is a one-line error."""
    parts, subtype, suffix = [], "FLOAT", ".wav"
    for part in filter(None, (p.strip() for p in spec.split("+"))):
        name, _, value = part.partition("=")
        if name == "pcm16" and not value:
            subtype = "PCM_16"
            continue
        if name == "ogg" and not value:
            suffix = ".ogg"
            continue
        try:
            v = float(value)
        except ValueError:
            v = float("nan")
        if name not in ("dc", "hum", "gain", "rate", "clip", "reverb") or not np.isfinite(v) or (
                name == "rate" and not v >= 1000) or (name == "reverb" and not 0 < v <= 10):
            raise UserError(f"--mic: {part!r} is not dc=A, hum=A, gain=DB, rate=HZ (>= 1000), clip=DB, reverb=S "
                            "(0 < S <= 10), pcm16 or ogg")
        parts.append((name, v))
    if suffix == ".ogg" and subtype != "FLOAT":
        raise UserError("--mic: ogg and pcm16 are two file formats: one of them")
    return Mic(tuple(parts), subtype, suffix)
