"""Renderers: the world's latent events as sensor samples.  Pure, vectorized and stateless in time.

Every renderer takes a ``World``, sample times ``t_ns`` (int64 ns, *reference* time relative to the world's start,
sorted ascending), a frozen parameter dataclass and an ``np.random.Generator`` for sensor noise.  A sample is a
function of its time only (plus i.i.d. noise), so rendering ``[a, b)`` then ``[b, c)`` equals rendering
``[a, c)`` up to noise, and rendering 10+ minutes at once is a handful of numpy passes.  With ``rng=None`` the
renderers add no noise at all (exact, handy for tests).

=========  ==================  =========================================================================
modality   output              events
=========  ==================  =========================================================================
imu        float32 (n, 6)      accel x,y,z (m/s^2, gravity rotated by the placement) + gyro x,y,z (rad/s);
                               TAP = sharp accel spike + small gyro kick, MOTION = smooth gyro/accel wobble
audio      float32 (n, 1)      TAP = decaying low thump, SOUND = tone burst, background noise + mains hum
video      uint8 (n, 24, 32)   LED blob (on during FLASH, integrated over the exposure), scene brightness
                               bump during MOTION, image shake after TAP, sensor noise
telemetry  float32 (n, 5)      temperature (slow), speed (MOTION), light (FLASH, 100 ms mean), sound level
                               (SOUND, 100 ms mean), accel rms (TAP/MOTION, 100 ms)
text       list[(t_ns, str)]   ``World.log_messages()`` in a time range
trigger    rises, widths       periodic pulse train on the reference clock
=========  ==================  =========================================================================

A video frame's time is the *middle* of its exposure: the frame integrates light over ``[t - e/2, t + e/2)``.
Telemetry values at ``t`` summarize the window ``[t - 100 ms, t)``.

Each modality has a frozen ``*Params`` dataclass with defaults (the standard rig) and ``random(rng)`` for wide
augmentation (gains, noise levels, placement/rotation, LED position) when training encoders.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from synchub.agent.core.units import NS

from .events import events_in, hann_env, log_uniform, rotation_matrix, span, uniform, window_overlap
from .world import FLASH, MOTION, SOUND, TAP, World

TWO_PI = 2.0 * np.pi
GRAVITY = 9.80665

IMU_LABELS = ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z")
IMU_UNITS = ("m/s^2", "m/s^2", "m/s^2", "rad/s", "rad/s", "rad/s")
TLM_LABELS = ("temperature", "speed", "light", "sound_level", "accel_rms")
TLM_UNITS = ("degC", "m/s", "lux", "1", "m/s^2")
VIDEO_SHAPE = (24, 32)


def _rel(t_ns) -> np.ndarray:
    return np.ascontiguousarray(t_ns, dtype=np.int64)


# ---------------------------------------------------------------------------------------------- IMU
@dataclass(frozen=True)
class ImuParams:
    """IMU placement and sensor quality.  ``rotation`` (rad, x-y-z Euler) maps world axes to sensor axes."""

    rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tap_gain: float = 1.0  # spike peak = amp * tap_gain * 25 m/s^2
    motion_gain: float = 1.0  # wobble peak = amp * motion_gain * (2.5 rad/s, 3 m/s^2)
    accel_noise: float = 0.04  # m/s^2 1-sigma
    gyro_noise: float = 0.004  # rad/s 1-sigma
    accel_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gyro_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def random(cls, rng: np.random.Generator) -> ImuParams:
        return cls(
            rotation=tuple(float(v) for v in rng.uniform(-np.pi, np.pi, 3)),
            tap_gain=log_uniform(rng, 0.3, 3.0),
            motion_gain=log_uniform(rng, 0.3, 3.0),
            accel_noise=log_uniform(rng, 0.005, 0.4),
            gyro_noise=log_uniform(rng, 0.0005, 0.05),
            accel_bias=tuple(float(v) for v in rng.normal(0, 0.2, 3)),
            gyro_bias=tuple(float(v) for v in rng.normal(0, 0.02, 3)),
        )


TAP_TAIL_NS = 150_000_000


def render_imu(world: World, t_ns, params: ImuParams = ImuParams(), rng: np.random.Generator | None = None):
    """float32 (n, 6): accel (m/s^2) and gyro (rad/s) in the sensor frame at reference times ``t_ns``."""
    t = _rel(t_ns)
    n = len(t)
    acc = np.zeros((n, 3))
    gyr = np.zeros((n, 3))
    acc[:, 2] = GRAVITY
    if n:
        lo, hi = int(t[0]), int(t[-1]) + 1
        for e in events_in(world, TAP, lo, hi, TAP_TAIL_NS):
            t0 = int(e["t_ns"])
            s = span(t, t0, t0 + int(e["dur_ns"]) + TAP_TAIL_NS)
            dt = (t[s] - t0) / NS
            tau = max(e["dur_ns"] / NS / 4.0, 0.003)
            x = dt / tau
            spike = x * np.exp(1.0 - x)  # alpha pulse, peak 1 at dt = tau
            ring = 0.35 * np.exp(-dt / 0.03) * np.sin(TWO_PI * 22.0 * dt)
            a = float(e["amp"]) * params.tap_gain * 25.0
            ax = int(e["axis"])
            acc[s, ax] += a * (spike + ring)
            gyr[s, (ax + 1) % 3] += 0.02 * a * ring
        for e in events_in(world, MOTION, lo, hi, 0):
            t0, d = int(e["t_ns"]), int(e["dur_ns"])
            s = span(t, t0, t0 + d)
            dt = (t[s] - t0) / NS
            env = hann_env(dt, d / NS)
            ph = TWO_PI * float(e["freq_hz"]) * dt
            g = float(e["amp"]) * params.motion_gain
            ax = int(e["axis"])
            gyr[s, ax] += g * 2.5 * env * np.sin(ph)
            gyr[s, (ax + 2) % 3] += g * 0.8 * env * np.sin(0.5 * ph + 1.0)
            acc[s, (ax + 1) % 3] += g * 3.0 * env * np.cos(ph)
    r = rotation_matrix(*params.rotation).T  # world -> sensor
    out = np.empty((n, 6), dtype=np.float32)
    out[:, :3] = acc @ r.T + np.asarray(params.accel_bias)
    out[:, 3:] = gyr @ r.T + np.asarray(params.gyro_bias)
    if rng is not None and n:
        out[:, :3] += rng.normal(0.0, params.accel_noise, (n, 3))
        out[:, 3:] += rng.normal(0.0, params.gyro_noise, (n, 3))
    return out


# ---------------------------------------------------------------------------------------------- audio
@dataclass(frozen=True)
class AudioParams:
    gain: float = 1.0
    thump_gain: float = 1.0  # thump peak = amp * 0.5
    tone_gain: float = 1.0  # tone peak = amp * 0.3
    noise: float = 0.01  # background noise 1-sigma (full scale 1.0)
    hum: float = 0.003  # mains hum amplitude
    hum_hz: float = 50.0
    thump_hz: float = 70.0

    @classmethod
    def random(cls, rng: np.random.Generator) -> AudioParams:
        return cls(
            gain=log_uniform(rng, 0.3, 2.0),
            thump_gain=log_uniform(rng, 0.3, 2.0),
            tone_gain=log_uniform(rng, 0.3, 2.0),
            noise=log_uniform(rng, 0.001, 0.08),
            hum=log_uniform(rng, 0.0001, 0.02),
            hum_hz=float(rng.choice([50.0, 60.0])),
            thump_hz=uniform(rng, 40.0, 140.0),
        )


THUMP_TAIL_NS = 250_000_000
TONE_RAMP_S = 0.005


def render_audio(world: World, t_ns, params: AudioParams = AudioParams(), rng: np.random.Generator | None = None):
    """float32 (n, 1) in [-1, 1] at reference times ``t_ns`` (16 kHz in the standard rig)."""
    t = _rel(t_ns)
    n = len(t)
    ts = t / NS
    y = params.hum * np.sin(TWO_PI * params.hum_hz * ts)
    if n:
        lo, hi = int(t[0]), int(t[-1]) + 1
        for e in events_in(world, TAP, lo, hi, THUMP_TAIL_NS):
            t0 = int(e["t_ns"])
            s = span(t, t0, t0 + int(e["dur_ns"]) + THUMP_TAIL_NS)
            dt = (t[s] - t0) / NS
            f = params.thump_hz * (1.0 + 0.5 * np.exp(-dt / 0.02))  # pitch drops as it decays
            y[s] += float(e["amp"]) * params.thump_gain * 0.5 * np.exp(-dt / 0.04) * np.sin(TWO_PI * f * dt)
        for e in events_in(world, SOUND, lo, hi, 0):
            t0, d = int(e["t_ns"]), int(e["dur_ns"])
            s = span(t, t0, t0 + d)
            dt = (t[s] - t0) / NS
            ramp = np.clip(np.minimum(dt, d / NS - dt) / TONE_RAMP_S, 0.0, 1.0)
            ph = TWO_PI * float(e["freq_hz"]) * dt
            y[s] += float(e["amp"]) * params.tone_gain * 0.3 * ramp * (np.sin(ph) + 0.25 * np.sin(2 * ph))
    if rng is not None and n:
        y = y + rng.normal(0.0, params.noise, n)
    y = np.clip(y * params.gain, -1.0, 1.0)
    return y.astype(np.float32).reshape(n, 1)


def audio_to_int16(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


# ---------------------------------------------------------------------------------------------- video
@dataclass(frozen=True)
class VideoParams:
    exposure_s: float = 0.010
    led_xy: tuple[float, float] = (24.0, 6.0)  # pixel (x, y) of the LED's centre
    led_sigma: float = 1.3  # blob radius, pixels
    led_gain: float = 1.0  # LED adds up to led_gain * 170 grey levels
    brightness: float = 1.0  # scene gain
    motion_brightness: float = 0.35  # relative brightness bump during MOTION, times amp
    shake_px: float = 2.0  # shake amplitude after a tap, times amp
    noise: float = 2.0  # sensor noise, grey levels 1-sigma
    scene_phase: tuple[float, float, float] = (0.3, 1.7, 4.1)  # background texture

    @classmethod
    def random(cls, rng: np.random.Generator) -> VideoParams:
        h, w = VIDEO_SHAPE
        return cls(
            exposure_s=log_uniform(rng, 0.001, 0.03),
            led_xy=(uniform(rng, 2.0, w - 3.0), uniform(rng, 2.0, h - 3.0)),
            led_sigma=uniform(rng, 0.7, 3.0),
            led_gain=log_uniform(rng, 0.3, 1.5),
            brightness=log_uniform(rng, 0.4, 1.6),
            motion_brightness=uniform(rng, 0.05, 0.6),
            shake_px=uniform(rng, 0.0, 4.0),
            noise=log_uniform(rng, 0.3, 10.0),
            scene_phase=tuple(float(v) for v in rng.uniform(0, TWO_PI, 3)),
        )


SHAKE_TAIL_NS = 400_000_000


def render_video(world: World, t_ns, params: VideoParams = VideoParams(), rng: np.random.Generator | None = None):
    """uint8 (n, 24, 32) frames whose exposures are centred on reference times ``t_ns``."""
    t = _rel(t_ns)
    n = len(t)
    h, w = VIDEO_SHAPE
    half = int(params.exposure_s * NS / 2)
    e_ns = max(2 * half, 1)
    led = np.zeros(n)
    bright = np.ones(n)
    dx = np.zeros(n)
    dy = np.zeros(n)
    if n:
        lo, hi = int(t[0]) - half, int(t[-1]) + half + 1
        for e in events_in(world, FLASH, lo, hi, 0):
            t0, t1 = int(e["t_ns"]), int(e["t_ns"] + e["dur_ns"])
            ov = np.minimum(t + half, t1) - np.maximum(t - half, t0)
            led += float(e["amp"]) * np.clip(ov, 0, None) / e_ns
        for e in events_in(world, MOTION, lo, hi, 0):
            t0, d = int(e["t_ns"]), int(e["dur_ns"])
            s = span(t, t0, t0 + d)
            bright[s] += float(e["amp"]) * params.motion_brightness * hann_env((t[s] - t0) / NS, d / NS)
        for e in events_in(world, TAP, lo, hi, SHAKE_TAIL_NS):
            t0 = int(e["t_ns"])
            s = span(t, t0, t0 + SHAKE_TAIL_NS)
            dt = (t[s] - t0) / NS
            a = float(e["amp"]) * params.shake_px * np.exp(-dt / 0.08)
            dx[s] += a * np.sin(TWO_PI * 12.0 * dt)
            dy[s] += 0.6 * a * np.sin(TWO_PI * 9.0 * dt + 0.7)
    ys = np.arange(h, dtype=np.float64)[None, :, None] + dy[:, None, None]
    xs = np.arange(w, dtype=np.float64)[None, None, :] + dx[:, None, None]
    p1, p2, p3 = params.scene_phase
    scene = (
        0.35
        + 0.12 * np.sin(TWO_PI * xs / 13.0 + p1)
        + 0.09 * np.cos(TWO_PI * ys / 9.0 + p2)
        + 0.07 * np.sin(TWO_PI * (xs + 2.0 * ys) / 17.0 + p3)
    )
    img = scene * (params.brightness * 255.0) * bright[:, None, None]
    lx, ly = params.led_xy
    blob = np.exp(-((xs - lx) ** 2 + (ys - ly) ** 2) / (2.0 * params.led_sigma**2))
    img = img + (params.led_gain * 170.0) * led[:, None, None] * blob
    if rng is not None and n:
        img = img + rng.normal(0.0, params.noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- telemetry
@dataclass(frozen=True)
class TelemetryParams:
    window_s: float = 0.1
    temp_base: float = 24.0
    temp_swing: float = 1.5  # degC, period temp_period_s
    temp_period_s: float = 900.0
    speed_gain: float = 1.5  # m/s per unit motion amp
    ambient_lux: float = 200.0
    led_lux: float = 800.0
    sound_gain: float = 1.0
    accel_gain: float = 1.0
    noise: float = 0.01  # relative noise on every channel

    @classmethod
    def random(cls, rng: np.random.Generator) -> TelemetryParams:
        return cls(
            temp_base=uniform(rng, 5.0, 40.0),
            temp_swing=uniform(rng, 0.1, 4.0),
            temp_period_s=uniform(rng, 120.0, 3600.0),
            speed_gain=log_uniform(rng, 0.3, 5.0),
            ambient_lux=log_uniform(rng, 5.0, 2000.0),
            led_lux=log_uniform(rng, 50.0, 3000.0),
            sound_gain=log_uniform(rng, 0.3, 3.0),
            accel_gain=log_uniform(rng, 0.3, 3.0),
            noise=log_uniform(rng, 0.001, 0.05),
        )


def render_telemetry(
    world: World, t_ns, params: TelemetryParams = TelemetryParams(), rng: np.random.Generator | None = None
):
    """float32 (n, 5): temperature, speed, light, sound level, accel rms at reference times ``t_ns``."""
    t = _rel(t_ns)
    n = len(t)
    win = int(params.window_s * NS)
    ts = t / NS
    temp = params.temp_base + params.temp_swing * np.sin(TWO_PI * ts / params.temp_period_s + 0.4)
    speed = np.zeros(n)
    tap_energy = np.zeros(n)
    light = np.zeros(n)
    sound = np.zeros(n)
    if n:
        lo, hi = int(t[0]) - win, int(t[-1]) + 1
        for e in events_in(world, MOTION, lo, hi, 0):
            t0, d = int(e["t_ns"]), int(e["dur_ns"])
            s = span(t, t0, t0 + d)
            speed[s] += float(e["amp"]) * params.speed_gain * hann_env((t[s] - t0) / NS, d / NS)
        light = window_overlap(events_in(world, FLASH, lo, hi, 0), t - win, t)
        sound = window_overlap(events_in(world, SOUND, lo, hi, 0), t - win, t)
        taps = events_in(world, TAP, lo, hi, 0)
        tap_energy = window_overlap(taps, t - win, t)
    accel_rms = params.accel_gain * np.sqrt(0.04**2 + 40.0 * tap_energy + (3.0 * speed / params.speed_gain) ** 2 / 2)
    out = np.stack(
        [
            temp,
            speed,
            params.ambient_lux + params.led_lux * light,
            params.sound_gain * 0.3 * sound,
            accel_rms,
        ],
        axis=1,
    )
    if rng is not None and n:
        scale = np.array([0.02, 0.01, params.ambient_lux * 0.01, 0.002, 0.01]) * (params.noise / 0.01)
        out = out + rng.normal(0.0, 1.0, out.shape) * scale
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------- text
_LOG_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def render_log(world: World, lo_ns: int, hi_ns: int) -> list[tuple[int, str]]:
    """``(t_ns, text)`` of the event log lines with reference time in ``[lo_ns, hi_ns)`` (relative ns)."""
    cached = _LOG_CACHE.get(world)
    if cached is None:
        msgs = world.log_messages()
        cached = (np.array([m[0] for m in msgs], dtype=np.int64), [m[1] for m in msgs])
        _LOG_CACHE[world] = cached
    times, texts = cached
    i0, i1 = np.searchsorted(times, lo_ns, side="left"), np.searchsorted(times, hi_ns, side="left")
    return [(int(times[i]), texts[i]) for i in range(int(i0), int(i1))]


# ---------------------------------------------------------------------------------------------- trigger
@dataclass(frozen=True)
class TriggerParams:
    """A periodic pulse train on the reference clock: rising edges at ``phase_s + k * period_s``."""

    period_s: float = 1.0
    width_s: float = 0.010
    phase_s: float = 0.5

    @classmethod
    def random(cls, rng: np.random.Generator) -> TriggerParams:
        period = float(rng.choice([0.1, 0.5, 1.0, 2.0]))
        return cls(period_s=period, width_s=uniform(rng, 0.001, 0.2 * period), phase_s=uniform(rng, 0.0, period))


def render_trigger(lo_ns: int, hi_ns: int, params: TriggerParams = TriggerParams()):
    """``(rise_ns, width_ns)`` int64 arrays of the pulses whose rising edge lies in ``[lo_ns, hi_ns)``."""
    period = int(round(params.period_s * NS))
    phase = int(round(params.phase_s * NS))
    k0 = -((phase - int(lo_ns)) // period)  # ceil((lo - phase) / period)
    k1 = -((phase - int(hi_ns)) // period)
    rises = phase + np.arange(k0, k1, dtype=np.int64) * period
    return rises, np.full(len(rises), int(round(params.width_s * NS)), dtype=np.int64)


# ---------------------------------------------------------------------------------------------- dispatch
PARAMS = {"imu": ImuParams, "audio": AudioParams, "video": VideoParams, "telemetry": TelemetryParams}
RENDERERS = {"imu": render_imu, "audio": render_audio, "video": render_video, "telemetry": render_telemetry}


def render(world: World, modality: str, t_ns, params=None, rng: np.random.Generator | None = None):
    """Render a regular-sample modality (imu, audio, video, telemetry) with default or given params."""
    params = PARAMS[modality]() if params is None else params
    return RENDERERS[modality](world, t_ns, params, rng)
