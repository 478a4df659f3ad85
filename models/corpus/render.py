"""A whole recording: the microphone mix (``scene.mix``) and the marker log, and for sound effects an IMU and a
camera that see the same physical events, each stream sampled and stamped by its own device clock
(``synchub.drivers.sim.clocks.DeviceClock``: offset, drift, stamping jitter, link latency), with the truth.

Truth (``Recording.events``, one row per target sound, reference-clock ns):

* ``onset_ns``: where the sound starts at the microphone (the first sample of the dry clip above its threshold);
* ``cause_ns``: the physical event (sound effects: ``onset_ns`` minus the acoustic delay; speech: = onset);
* ``start_ns``, ``end_ns``: the clip's first and last sample (its leading silence included), ``source``, ``text``, ``speed``, ``impact`` (a sharp attack: the camera shakes, the IMU feels it
  harder; other sounds light the camera's lamp);
* ``marker``: the row's line in the marker log (every target has one).

``Recording.markers`` (one row per log line): ``event`` (row of ``events`` or -1 for lines of things that make
no sound), ``onset_ns`` (what the line *means*: the start of its sound; -1 if none) and ``log_ns`` (when the rig
stamped it: onset + a constant logging latency + jitter; the marker clock's truth).
``Recording.segments`` / ``words``: the TTS engine's phone and word end times on the reference clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synchub.agent.core.stream import StreamInfo
from synchub.agent.core.units import NS
from synchub.drivers.sim.clocks import ClockSpec, DeviceClock

from . import sources as S
from . import texts as TX
from .audio import RATE_HZ, block_rms, sample_at
from .scene import SAMPLE_NS, RecordingSpec, mix

IMU_HZ, VIDEO_HZ = 200.0, 30.0
VIDEO_SHAPE = (24, 32)
SILENT_PER_S = 0.15  # marker lines of soundless things, per second
LINKS = {  # (jitter_us, latency_min_ms, latency_max_ms, kind) of the streams' links (markers: per recording)
    "audio": (0.0, 5.0, 20.0, "usb-buffer"),
    "imu": (20.0, 1.0, 16.0, "usb-buffer"),
    "video": (200.0, 30.0, 80.0, "uniform"),
}


@dataclass
class Track:
    """One stream as a hub receives it: per sample the reference time (truth), the device stamp, the host
    receive time, and the data (ndarray, or list of str for markers)."""

    name: str
    modality: str  # audio | text | imu | video
    rate_hz: float  # nominal (0: irregular)
    true_ns: np.ndarray
    device_ns: np.ndarray
    host_ns: np.ndarray
    data: object
    clock: DeviceClock

    @property
    def drift_ppm(self) -> float:
        return float(self.clock.spec.drift_ppm)

    def info(self) -> StreamInfo:
        if self.modality == "text":
            return StreamInfo(self.name, "marker", 0.0, 1, "string")
        shape = np.asarray(self.data).shape[1:]
        fmt = "uint8" if self.modality == "video" else "float32"
        return StreamInfo(self.name, self.modality, self.rate_hz, int(np.prod(shape)) if shape else 1, fmt,
                          shape=shape if len(shape) > 1 else ())


@dataclass
class Recording:
    spec: RecordingSpec
    tracks: dict[str, Track]
    events: dict[str, np.ndarray]
    markers: dict[str, np.ndarray]
    segments: dict[str, np.ndarray]
    words: dict[str, np.ndarray]
    distractors: dict[str, np.ndarray]
    clean: np.ndarray  # the dry target sounds alone at 16 kHz on the reference grid (sample k at k * 62.5 us)
    packages: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def on_reference(self) -> dict[str, tuple[object, np.ndarray]]:
        """``{modality: (samples, reference times ns)}``: every stream on the true clock (the positives of
        contrastive training, like ``models/simdata.py``'s streams)."""
        return {t.modality: (t.data, t.true_ns) for t in self.tracks.values()}


def _clock(offset_s: float, drift_ppm: float, link, duration_s: float, seed: int) -> DeviceClock:
    jit, lo, hi, kind = link
    spec = ClockSpec(offset_s=offset_s, drift_ppm=drift_ppm, jitter_us=jit, latency_min_ms=lo, latency_max_ms=hi,
                     latency_kind=kind)
    return DeviceClock(spec, duration_s + 2.0, seed=seed)


def _regular(name, modality, rate, clock, duration_s, render_fn) -> Track:
    true, dev, _seg = clock.regular_samples(rate, 0.0, duration_s)
    if clock.spec.jitter_us > 0:
        dev = dev + (clock.to_device(true, jitter=True) - clock.to_device(true))
        order = np.argsort(dev, kind="stable")
        true, dev = true[order], dev[order]
    return Track(name, modality, rate, true, dev, clock.arrivals(true), render_fn(true), clock)


def _audio_track(spec: RecordingSpec, mic: np.ndarray) -> Track:
    clock = _clock(spec.audio_offset_s, spec.audio_drift_ppm, LINKS["audio"], spec.duration_s, spec.seed * 10 + 1)

    def at(true):
        k = true // SAMPLE_NS
        if np.all(true == k * SAMPLE_NS) and np.all((k >= 0) & (k < len(mic))):
            return mic[k][:, None]  # the reference grid itself: no interpolation
        return sample_at(mic, RATE_HZ, true / NS)[:, None]

    return _regular("mic", "audio", float(RATE_HZ), clock, spec.duration_s - 0.01, at)


def _markers(spec: RecordingSpec, onset_ns: np.ndarray, labels: list[str], rng) -> tuple[Track, dict]:
    """The rig's log: one line per target (stamped at its onset + latency + jitter) and soundless lines."""
    lo, hi = spec.link_latency_ms
    clock = _clock(spec.marker_offset_s, spec.marker_drift_ppm, (0.0, lo, hi, "exponential"), spec.duration_s,
                   spec.seed * 10 + 2)
    n = len(onset_ns)
    lat = spec.log_latency_ms * 1e6 + rng.normal(0.0, spec.log_jitter_ms * 1e6, n)
    log_ns = onset_ns + np.rint(lat).astype(np.int64)
    lines = [TX.marker_line(spec.marker_style, i + 1, labels[i], f"s{rng.integers(100, 999)}") for i in range(n)]
    n_silent = rng.poisson(SILENT_PER_S * spec.duration_s)
    s_ns = np.sort(rng.uniform(0.2, spec.duration_s - 0.2, n_silent) * NS).astype(np.int64)
    trial = np.searchsorted(onset_ns, s_ns) + 1
    s_lines = [TX.silent_line(spec.marker_style, int(k), rng) for k in trial]
    t = np.concatenate([log_ns, s_ns])
    ev = np.concatenate([np.arange(n), np.full(n_silent, -1)])
    order = np.argsort(t, kind="stable")
    t, ev = t[order], ev[order]
    all_lines = lines + s_lines
    data = [all_lines[i] for i in order]
    dev = clock.to_device(t)
    track = Track("rig_log", "text", 0.0, t, dev, clock.arrivals(t), data, clock)
    truth = {"event": ev.astype(np.int64), "onset_ns": np.where(ev >= 0, onset_ns[np.maximum(ev, 0)], -1),
             "log_ns": t}
    return track, truth


def _envelope(clip, n_s: float = 1.0) -> np.ndarray:
    """1 ms rms envelope of a clip from its onset, peak 1 (drives the IMU's vibration)."""
    e = block_rms(clip.samples[clip.onset :], RATE_HZ // 1000)[: int(n_s * 1000)]
    return e / (e.max() or 1.0)


def _imu_fn(spec, causes, envs, impacts, rng):
    """An IMU on the table the loudspeaker stands on: every sound shakes it from its cause on with the sound's
    own envelope (impacts, a sharp attack, 3-10x harder), on a random axis, at 25-70 Hz; gravity on a random
    axis, sensor noise."""
    g = rng.normal(0, 1, 3)
    g = 9.80665 * g / np.linalg.norm(g)
    axes = rng.normal(0, 1, (len(causes), 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    amp = rng.uniform(0.3, 1.5, len(causes)) * np.where(impacts, rng.uniform(3.0, 10.0, len(causes)), 1.0)
    freq = rng.uniform(25.0, 70.0, len(causes))
    nrng = np.random.default_rng([spec.seed, 31])

    def render(true):
        x = np.zeros((len(true), 6))
        x[:, :3] = g
        for c, env, ax, a, f in zip(causes, envs, axes, amp, freq, strict=True):
            i0, i1 = np.searchsorted(true, [c, c + len(env) * 1_000_000])
            tau = (true[i0:i1] - c) / NS
            e = np.interp(tau * 1000.0, np.arange(len(env)), env)
            s = a * e * np.cos(2 * np.pi * f * tau)
            x[i0:i1, :3] += s[:, None] * ax[None, :]
            x[i0:i1, 3:] += 0.05 * s[:, None] * ax[None, ::-1]
        x[:, :3] += nrng.normal(0, 0.03, (len(true), 3))
        x[:, 3:] += nrng.normal(0, 0.003, (len(true), 3))
        return x.astype(np.float32)

    return render


def _video_fn(spec, causes, impacts, durs, rng):
    """A static textured scene; a lamp lights during each non-impact sound (integrated over the exposure);
    the picture shakes after each impact."""
    h, w = VIDEO_SHAPE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    waves = [(rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.6), rng.uniform(0, 6.3), rng.uniform(10, 30)) for _ in range(4)]
    ly, lx = rng.uniform(4, h - 4), rng.uniform(4, w - 4)
    lamp = np.exp(-((yy - ly) ** 2 + (xx - lx) ** 2) / (2 * 3.0**2))
    exposure = rng.uniform(0.008, 0.03) * NS
    nrng = np.random.default_rng([spec.seed, 37])

    def render(true):
        out = np.empty((len(true), h, w), np.uint8)
        for k0 in range(0, len(true), 512):
            t = true[k0 : k0 + 512]
            dy = np.zeros(len(t))
            light = np.zeros(len(t))
            for c, imp, d in zip(causes, impacts, durs, strict=True):
                if imp:
                    tau = (t - c) / NS
                    m = (tau >= 0) & (tau < 0.5)
                    dy[m] += 1.5 * np.exp(-tau[m] / 0.08) * np.sin(2 * np.pi * 12 * tau[m] + np.pi / 2)
                else:  # the exposure [t - e/2, t + e/2) overlapping [c, c + d)
                    ov = np.minimum(t + exposure / 2, c + d) - np.maximum(t - exposure / 2, c)
                    light += np.clip(ov / exposure, 0.0, 1.0)
            img = np.full((len(t), h, w), 100.0)
            for fy, fx, ph, a in waves:
                img += a * np.sin(fy * (yy[None] + dy[:, None, None]) + fx * xx[None] + ph)
            img += 120.0 * light[:, None, None] * lamp[None]
            img += nrng.normal(0, 1.5, img.shape)
            out[k0 : k0 + 512] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        return out

    return render


def render(spec: RecordingSpec, cache=None) -> Recording:
    """The recording ``spec`` describes (deterministic; TTS clips come from ``cache`` when there)."""
    m = mix(spec, cache)
    rng = np.random.default_rng([spec.seed, 13])
    starts = np.array([a for a, _c, _d in m.targets], dtype=np.int64)
    clips = [c for _a, c, _d in m.targets]
    onset = (starts + np.array([c.onset for c in clips], dtype=np.int64)) * SAMPLE_NS
    cause = onset - np.array([d for _a, _c, d in m.targets], dtype=np.int64)
    labels = [c.text if c.text else TX.sound_name(c.source) for c in clips]
    envs = [_envelope(c) for c in clips]
    # sharp attack (envelope peak within 15 ms of the onset): an impact the IMU feels
    impact = np.array([spec.kind == "events" and int(np.argmax(e[:200])) <= 15 for e in envs], dtype=bool)
    tracks = {"audio": _audio_track(spec, m.audio)}
    tracks["text"], markers = _markers(spec, onset, labels, rng)
    if spec.kind == "events":
        durs = [min(0.5, c.duration_s - c.onset / RATE_HZ) * NS for c in clips]
        imu_clock = _clock(spec.imu_offset_s, spec.imu_drift_ppm, LINKS["imu"], spec.duration_s, spec.seed * 10 + 3)
        tracks["imu"] = _regular("imu", "imu", IMU_HZ, imu_clock, spec.duration_s - 0.01,
                                 _imu_fn(spec, cause, envs, impact, rng))
        vid_clock = _clock(spec.video_offset_s, spec.video_drift_ppm, LINKS["video"], spec.duration_s,
                           spec.seed * 10 + 4)
        tracks["video"] = _regular("cam", "video", VIDEO_HZ, vid_clock, spec.duration_s - 0.01,
                                   _video_fn(spec, cause, impact, durs, rng))
    ev_marker = np.full(len(clips), -1, dtype=np.int64)
    rows = np.nonzero(markers["event"] >= 0)[0]
    ev_marker[markers["event"][rows]] = rows
    events = {
        "start_ns": starts * SAMPLE_NS, "onset_ns": onset, "cause_ns": cause,
        "end_ns": (starts + np.array([len(c.samples) for c in clips], dtype=np.int64)) * SAMPLE_NS,
        "source": np.array([c.source for c in clips], dtype=str), "text": np.array(labels, dtype=str),
        "speed": np.array([c.speed for c in clips], dtype=np.float64), "impact": impact, "marker": ev_marker,
    }
    seg = {"event": [], "name": [], "end_ns": []}
    wrd = {"event": [], "name": [], "end_ns": []}
    for i, (a, c) in enumerate(zip(starts, clips, strict=True)):
        for d, names, ends in ((seg, c.seg_names, c.seg_ends_s), (wrd, c.word_names, c.word_ends_s)):
            d["event"] += [i] * len(names)
            d["name"] += list(names)
            d["end_ns"] += [int(a) * SAMPLE_NS + int(round(e * NS)) for e in ends]
    as_arrays = {"event": lambda v: np.array(v, dtype=np.int64), "name": lambda v: np.array(v, dtype=str),
                 "end_ns": lambda v: np.array(v, dtype=np.int64)}
    distract = {"onset_ns": np.array([a for a, _ in m.distractors], dtype=np.int64) * SAMPLE_NS,
                "source": np.array([s for _, s in m.distractors], dtype=str)}
    used = set(spec.voices) | set(spec.babble_voices) | set(spec.sounds)
    return Recording(spec, tracks, events, markers, {k: as_arrays[k](v) for k, v in seg.items()},
                     {k: as_arrays[k](v) for k, v in wrd.items()}, distract, m.clean, S.versions(sorted(used)))
