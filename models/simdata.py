"""Training and evaluation recordings from the simulated rig (numpy only).

A recording is one seeded ``World`` rendered into every modality by ``synchub.drivers.sim.render`` with wide
augmentation: random event rates, sensor parameters (gains, noise, placement, LED position, exposure), sample
phase, timestamp jitter, missing samples (bursts) and the odd NaN.  Streams are stamped on the reference clock
(offset 0), so frame ``k`` of every modality shows the same moment: the positives of contrastive training.

Seeds: training uses ``TRAIN_SEED_BASE + i``; held-out evaluation uses ``HELDOUT_SEED_BASE + i``.  The two ranges
never overlap (``i < 10**6``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synchub.agent.core.units import NS
from synchub.drivers.sim import render as R
from synchub.drivers.sim.world import World, WorldSpec

from .features import FRAME_NS, MODALITIES, featurize

TRAIN_SEED_BASE = 1_000_000
HELDOUT_SEED_BASE = 9_000_000

RATES_HZ = {"imu": 200.0, "audio": 16000.0, "video": 30.0, "image": 1.0, "telemetry": 10.0}
JITTER_MAX_NS = {"imu": 1_000_000, "audio": 0, "video": 3_000_000, "image": 3_000_000, "telemetry": 5_000_000,
                 "text": 5_000_000}


@dataclass
class Stream:
    samples: object  # np.ndarray or list[str]
    times_ns: np.ndarray  # int64 reported times (reference clock, relative to world start)


def _logu(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def random_world(seed: int, duration_s: float) -> World:
    rng = np.random.default_rng([seed, 11])
    spec = WorldSpec(
        tap_rate=_logu(rng, 0.1, 1.2),
        motion_rate=_logu(rng, 0.03, 0.3),
        flash_rate=_logu(rng, 0.08, 1.0),
        sound_rate=_logu(rng, 0.08, 1.0),
        marker_rate=_logu(rng, 0.01, 0.3),
        log_prob=float(rng.uniform(0.6, 1.0)),
    )
    return World(duration_s, seed=seed, spec=spec)


def _times(rng, rate_hz: float, duration_s: float, drop_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """(true render times, kept mask) of a regular stream with random phase and burst drops."""
    period = NS / rate_hz
    n = int(duration_s * rate_hz)
    t = np.rint(rng.uniform(0, period) + np.arange(n) * period).astype(np.int64)
    keep = np.ones(n, bool)
    if drop_frac > 0 and n > 10:
        burst = max(1, int(rate_hz * _logu(rng, 0.002, 0.2)))
        n_bursts = int(drop_frac * n / burst)
        for s in rng.integers(0, n, n_bursts):
            keep[s : s + burst] = False
    return t, keep


def make_recording(seed: int, duration_s: float = 10.0, augment: bool = True) -> dict[str, Stream]:
    """All modalities of one seeded recording, times on the reference clock."""
    world = random_world(seed, duration_s)
    rng = np.random.default_rng([seed, 22])
    out: dict[str, Stream] = {}
    cam = R.VideoParams.random(rng) if augment else R.VideoParams()
    for m in ("imu", "audio", "video", "image", "telemetry"):
        drop = float(rng.uniform(0, 0.08)) if augment and rng.random() < 0.5 else 0.0
        t, keep = _times(rng, RATES_HZ[m], duration_s, drop)
        if m == "image":
            params = cam
            x = R.render_video(world, t, params, rng)
        else:
            params = R.PARAMS[m].random(rng) if augment else R.PARAMS[m]()
            x = R.render(world, m, t, params, rng)
        if m == "audio" and augment and rng.random() < 0.3:  # some microphones deliver int16
            x = R.audio_to_int16(x).astype(np.float32)
        if m == "video":
            cam = params
        t, x = t[keep], x[keep]
        jit = JITTER_MAX_NS[m] * rng.random() if augment else 0.0
        rep = t + np.rint(rng.normal(0, jit, len(t))).astype(np.int64) if jit else t.copy()
        if m in ("imu", "telemetry") and augment and rng.random() < 0.1 and len(x):
            x = x.astype(np.float32)
            x[rng.integers(0, len(x), 3)] = np.nan
        out[m] = Stream(x, np.sort(rep))
    log = R.render_log(world, 0, int(duration_s * NS))
    jit = JITTER_MAX_NS["text"] * rng.random() if augment else 0.0
    lt = np.array([t for t, _ in log], dtype=np.int64)
    if jit and len(lt):
        lt = lt + np.rint(rng.normal(0, jit, len(lt))).astype(np.int64)
    order = np.argsort(lt, kind="stable")
    out["text"] = Stream([log[i][1] for i in order], lt[order])
    out["_world"] = world  # type: ignore[assignment]
    return out


def activity(world: World, n_frames: int) -> np.ndarray:
    """(n_frames,) 1 near an event onset or end (-100 ms .. +300 ms), else 0."""
    act = np.zeros(n_frames, np.float32)
    ev = world.events
    for t in np.concatenate([ev["t_ns"], ev["t_ns"] + ev["dur_ns"]]):
        a = max(0, int((t - 100_000_000) // FRAME_NS))
        b = min(n_frames, int((t + 300_000_000) // FRAME_NS) + 1)
        act[a:b] = 1.0
    return act


def recording_features(seed: int, duration_s: float = 10.0, augment: bool = True):
    """{modality: (C, T) float32} on the grid [0, duration) plus the activity mask."""
    rec = make_recording(seed, duration_s, augment)
    n = int(round(duration_s * 1e9 / FRAME_NS))
    feats = {m: featurize(m, rec[m].samples, rec[m].times_ns, 0, n).x for m in MODALITIES}
    return feats, activity(rec["_world"], n)
