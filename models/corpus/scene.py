"""One recording's plan (``RecordingSpec``, drawn by ``plan`` from a split and a seed) and its sound at the
microphone (``mix``): the target clips (utterances, or sound effects) placed on the reference timeline with their
truth, a little room reverb, and a background of babble, music-like tones and noise scaled to the SNR.

The truth of a target is where its *dry* clip starts (``audio.sound_onset``), on the 16 kHz grid of the
reference timeline (sample ``k`` is at ``k * 62_500`` ns).  The reverb's direct path is the clip itself and its
reflections start >= 2 ms later, so the wet sound starts where the dry one does.  A sound effect also has a
*cause* time: the physical event (an object hitting the table), heard ``distance / 343 m/s`` later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synchub.agent.core.units import NS

from . import clips as C
from . import split as SP
from . import texts as TX
from .audio import RATE_HZ, active_power

SAMPLE_NS = NS // RATE_HZ
SNRS_DB = (30.0, 20.0, 10.0, 5.0, 0.0)
BACKGROUNDS = (("babble",), ("music",), ("noise",), ("babble", "noise"), ("music", "noise"), ())
BABBLE_POOL = 10  # utterances per babble voice, looped
SPEED_OF_SOUND = 343.0


@dataclass(frozen=True)
class RecordingSpec:
    """Everything a recording is made of; ``plan`` draws it, ``render`` makes it (deterministic)."""

    split: str
    index: int
    seed: int
    kind: str  # "speech" | "events"
    duration_s: float
    voices: tuple[str, ...]  # target voices (speech)
    speeds: tuple[float, ...]
    babble_voices: tuple[str, ...]
    sounds: tuple[str, ...]  # event sounds (events) and music distractors
    background: tuple[str, ...]  # subset of babble, music, noise
    snr_db: float
    rt60_s: float
    marker_style: int
    marker_offset_s: float  # marker device clock: offset (device - reference at t=0) and drift
    marker_drift_ppm: float
    log_latency_ms: float  # constant delay between a sound's start and its log stamp
    log_jitter_ms: float  # 1-sigma of the per-line logging jitter
    link_latency_ms: tuple[float, float]  # marker link latency (min, max), exponential
    audio_offset_s: float = 0.0  # microphone clock (0, 0: the mic is the reference)
    audio_drift_ppm: float = 0.0
    imu_offset_s: float = 0.0
    imu_drift_ppm: float = 0.0
    video_offset_s: float = 0.0
    video_drift_ppm: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.split}-{self.kind}-{self.index:04d}"


def _clock(rng, offset_max_s: float, drift_max_ppm: float) -> tuple[float, float]:
    return float(rng.uniform(-offset_max_s, offset_max_s)), float(rng.uniform(-drift_max_ppm, drift_max_ppm))


def plan(split: str, n: int, kind: str = "speech", duration_s: float = 300.0, start: int = 0,
         offset_max_s: float = 1.5, drift_max_ppm: float = 150.0, device_clocks: bool = False) -> list[RecordingSpec]:
    """``n`` recordings of ``split`` (indices ``start..start+n-1``), each drawn from its own seed.  The marker
    clock always drifts; ``device_clocks`` also gives the microphone, IMU and camera their own drifting clocks
    (else the microphone is the reference and the IMU/camera drift)."""
    if kind not in ("speech", "events"):
        raise ValueError(f"unknown recording kind {kind!r}; one of: speech, events")
    voices, sounds = SP.voices(split), SP.sounds(split)
    out = []
    for i in range(start, start + n):
        seed = SP.seed_of(split, i)
        rng = np.random.default_rng([seed, 1 if kind == "speech" else 2])

        tv = tuple(str(v) for v in rng.permutation(voices)[: int(rng.integers(1, 3))]) if voices else ()
        rest = [v for v in voices if v not in tv and not v.startswith("recorded:")] or list(tv)
        babble = tuple(str(v) for v in rng.permutation(rest)[: int(rng.integers(1, 4))]) if rest else ()
        sp = tuple(float(s) for s in rng.permutation(SP.speeds(split))[:2])
        snd = tuple(str(s) for s in rng.permutation(sounds)[: min(len(sounds), 12)]) if sounds else ()
        bg = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
        m_off, m_drift = _clock(rng, offset_max_s, drift_max_ppm)
        a_off, a_drift = _clock(rng, offset_max_s, drift_max_ppm) if device_clocks else (0.0, 0.0)
        i_off, i_drift = _clock(rng, offset_max_s, drift_max_ppm)
        v_off, v_drift = _clock(rng, offset_max_s, drift_max_ppm)
        lat_min = float(rng.uniform(0.5, 5.0))
        out.append(RecordingSpec(
            split=split, index=i, seed=seed, kind=kind, duration_s=float(duration_s), voices=tv, speeds=sp,
            babble_voices=babble, sounds=snd, background=bg, snr_db=float(rng.choice(SNRS_DB)),
            rt60_s=float(rng.uniform(0.1, 0.5)), marker_style=int(rng.integers(len(TX.SOUND_STYLES))),
            marker_offset_s=m_off, marker_drift_ppm=m_drift, log_latency_ms=float(rng.uniform(0.0, 2.0)),
            log_jitter_ms=float(rng.uniform(0.2, 1.0)),
            link_latency_ms=(lat_min, lat_min + float(rng.uniform(5.0, 45.0))),
            audio_offset_s=a_off, audio_drift_ppm=a_drift, imu_offset_s=i_off, imu_drift_ppm=i_drift,
            video_offset_s=v_off, video_drift_ppm=v_drift))
    return out


# ------------------------------------------------------------------------------------------------ clips
def _speech_clips(spec: RecordingSpec, rng, n: int, cache) -> list[C.Clip]:
    """``n`` target utterances in placement order (TTS batched per voice and speed)."""
    picks = []
    for _ in range(n):
        v = spec.voices[int(rng.integers(len(spec.voices)))]
        s = 1.0 if v.startswith("recorded:") else spec.speeds[int(rng.integers(len(spec.speeds)))]
        picks.append((v, s, TX.utterance(rng)))
    out: list[C.Clip | None] = [None] * n
    for v, s in sorted({(v, s) for v, s, _ in picks}):
        idx = [i for i, p in enumerate(picks) if p[:2] == (v, s)]
        if v.startswith("recorded:"):
            pool = C.recorded(v, cache)
            for i in idx:
                out[i] = pool[int(rng.integers(len(pool)))]
            continue
        for i, c in zip(idx, C.speech(v, [picks[i][2] for i in idx], s, cache), strict=True):
            out[i] = c
    return [c for c in out if c is not None]


def _reverb(x: np.ndarray, rt60_s: float, rng) -> np.ndarray:
    """``x`` through a room: the direct path, then exponentially decaying reflections from 2-8 ms on."""
    pre = int(rng.uniform(0.002, 0.008) * RATE_HZ)
    n = int(min(rt60_s, 0.5) * RATE_HZ)
    tail = rng.normal(0.0, 1.0, n) * np.exp(-6.9 * np.arange(n) / max(n, 1))
    ir = np.concatenate([[1.0], np.zeros(pre), tail * 10 ** (rng.uniform(-24, -14) / 20)])
    m = len(x) + len(ir) - 1
    nfft = 1 << (m - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(ir, nfft), nfft)[:m]
    return y.astype(np.float32)


def _add(buf: np.ndarray, at: int, x: np.ndarray) -> None:
    a, b = max(at, 0), min(len(buf), at + len(x))
    if b > a:
        buf[a:b] += x[a - at : b - at]


# ------------------------------------------------------------------------------------------------ background
def _babble(spec, rng, n_total: int, cache) -> tuple[np.ndarray, list]:
    out = np.zeros(n_total, np.float32)
    onsets = []
    for v in spec.babble_voices:
        pool = C.speech(v, [TX.utterance(rng) for _ in range(BABBLE_POOL)], float(rng.choice(spec.speeds)), cache)
        at = int(rng.uniform(0, 1.0) * RATE_HZ)
        while at < n_total:
            c = pool[int(rng.integers(len(pool)))]
            _add(out, at, c.samples * float(10 ** (rng.uniform(-4, 4) / 20)))
            onsets.append((at + c.onset, c.source))
            at += len(c.samples) + int(rng.uniform(0.05, 0.6) * RATE_HZ)
    return out, onsets


def _music(spec, rng, n_total: int, cache) -> tuple[np.ndarray, list]:
    """A melody of harmonic notes with attack/decay envelopes, plus the split's recorded sounds now and then."""
    out = np.zeros(n_total, np.float32)
    onsets = []
    at = 0
    base = float(rng.uniform(110, 330))
    while at < n_total:
        dur = int(rng.uniform(0.12, 0.7) * RATE_HZ)
        f0 = base * 2 ** (int(rng.integers(0, 15)) / 12)
        t = np.arange(dur) / RATE_HZ
        att = rng.uniform(0.005, 0.06)
        env = np.minimum(t / att, 1.0) * np.exp(-t / rng.uniform(0.1, 0.5))
        note = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, int(rng.integers(2, 7))))
        _add(out, at, (0.3 * env * note).astype(np.float32))
        onsets.append((at, "tone"))
        at += int(dur * rng.uniform(0.6, 1.2))
    if spec.sounds:
        at = int(rng.uniform(0, 5) * RATE_HZ)
        while at < n_total:
            c = C.sound(spec.sounds[int(rng.integers(len(spec.sounds)))], cache)
            _add(out, at, 0.5 * c.samples)
            onsets.append((at + c.onset, c.source))
            at += len(c.samples) + int(rng.uniform(2.0, 8.0) * RATE_HZ)
    return out, onsets


def _noise(rng, n_total: int) -> np.ndarray:
    """White, pink or brown noise (colour drawn) plus a little mains hum."""
    w = rng.normal(0, 1, n_total)
    colour = int(rng.integers(3))
    if colour:
        spec = np.fft.rfft(w)
        f = np.maximum(np.fft.rfftfreq(n_total, 1 / RATE_HZ), 20.0)
        w = np.fft.irfft(spec / (f ** (0.5 * colour)), n_total)
    w /= np.std(w) + 1e-12
    t = np.arange(n_total) / RATE_HZ
    hum = float(rng.choice([50.0, 60.0]))
    w += 0.1 * (np.sin(2 * np.pi * hum * t) + 0.5 * np.sin(2 * np.pi * 3 * hum * t))
    return w.astype(np.float32)


# ------------------------------------------------------------------------------------------------ mix
@dataclass
class Mix:
    audio: np.ndarray  # float32 at the microphone, reference grid (sample k at k * SAMPLE_NS)
    clean: np.ndarray  # the dry targets alone
    targets: list  # (start sample, clip, cause sample offset (ns, events: acoustic delay)) in time order
    distractors: list  # (onset sample, source)


def mix(spec: RecordingSpec, cache=None) -> Mix:
    rng = np.random.default_rng([spec.seed, 7])
    n_total = int(spec.duration_s * RATE_HZ)
    clean = np.zeros(n_total, np.float32)
    wet = np.zeros(n_total, np.float32)
    targets = []
    if spec.kind == "speech":
        clips = _speech_clips(spec, rng, int(spec.duration_s / 2.2) + 2, cache) if spec.voices else []
    else:
        clips = [C.sound(spec.sounds[int(rng.integers(len(spec.sounds)))], cache)
                 for _ in range(int(spec.duration_s / 2.0) + 2)] if spec.sounds else []
    at = int(rng.uniform(0.5, 1.5) * RATE_HZ)
    for c in clips:
        if at + len(c.samples) > n_total - RATE_HZ // 2:
            break
        gain = float(10 ** (rng.uniform(-4, 4) / 20))
        delay_ns = int(rng.uniform(0.3, 3.0) / SPEED_OF_SOUND * NS) if spec.kind == "events" else 0
        _add(clean, at, c.samples * gain)
        _add(wet, at, _reverb(c.samples * gain, spec.rt60_s, rng))
        targets.append((at, c, delay_ns))
        gap = rng.uniform(0.6, 3.0) if spec.kind == "speech" else rng.uniform(0.4, 3.5)
        at += len(c.samples) + int(gap * RATE_HZ)
    bg = np.zeros(n_total, np.float32)
    distractors: list = []
    parts = []
    if "babble" in spec.background and spec.babble_voices:
        b, on = _babble(spec, rng, n_total, cache)
        parts.append(b)
        distractors += on
    if "music" in spec.background:
        m, on = _music(spec, rng, n_total, cache)
        parts.append(m)
        distractors += on
    if "noise" in spec.background:
        parts.append(_noise(rng, n_total))
    p_s = active_power(clean, RATE_HZ)
    for p in parts:  # each part at an equal share of the background power
        pw = float(np.mean(p.astype(np.float64) ** 2))
        if pw > 0 and p_s > 0:
            bg += p * np.float32(np.sqrt(p_s / 10 ** (spec.snr_db / 10) / len(parts) / pw))
    mic = wet + bg + rng.normal(0, 10 ** (-70 / 20), n_total).astype(np.float32)  # mic self-noise
    peak = float(np.max(np.abs(mic))) or 1.0
    mic = np.clip(np.round(mic * (0.7 / peak) * 32767.0), -32768, 32767) / 32768.0  # a 16-bit ADC
    distractors.sort(key=lambda d: d[0])
    return Mix(mic.astype(np.float32), clean, targets, distractors)
