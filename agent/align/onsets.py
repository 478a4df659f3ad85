"""Hand-made alignment features: onset signals per modality (``synchub.agent.align.correlation`` puts them on a
common grid and correlates them).

Pure numpy, no I/O.  Every modality is turned into an *onset* description on its own clock: where something
started happening, and how strongly.  Two streams that see the same world events then have onset signals that
line up when the clocks are aligned, whatever their sample rates and signal shapes.

* IMU (n, 6): norm of accel and gyro deviation from the window's median (gravity and bias removed), positive
  first difference.
* audio (n, c): energy envelope of all channels in 1 ms blocks (steady tones such as mains hum taken out first:
  ``tones``), positive first difference.  Two audio streams are also matched
  directly with GCC on the raw 16 kHz samples (``correlation.gcc_ml``).
* video / image (n, h, w): per-pixel positive frame differences above the noise, averaged (LED on, shake,
  brightness change).
* telemetry (n, c): robust-normalized positive differences of the fast channels; values that summarize the
  preceding ``window_s`` are placed at the window's centre.
* text (marker lines): an event train, one impulse per line; against a sensor, only the lines whose event that
  sensor registers, at their expected onset (``synchub.agent.align.markers``: regex rules -> audible / visible /
  motion, latency, spread).

Sampled onsets are spread uniformly over the interval between consecutive sample times (linear interpolation),
so a step that happens between two samples puts its mass centroid at their midpoint: unbiased on average, and
sub-sample precise where an integrating sensor (exposure, telemetry window) records a partial step.

Bad input (NaN samples, too few samples, a flat signal) never raises: ``Onsets.problem`` says what was wrong and
the aligner abstains with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synchub.agent.core.units import NS
from synchub.models.tones import without_steady_lines

from .markers import MarkerSemantics

#: telemetry channels (temperature, speed, light, sound level, accel rms) used for onsets, by partner modality:
#: the channels whose events the partner also sees sharply.  Values summarize the preceding TELEMETRY_WINDOW_S.
TELEMETRY_CHANNELS = (2, 3, 4)
TELEMETRY_FOR: dict[str, tuple[int, ...]] = {"text": (2, 3), "audio": (3, 4), "imu": (4,), "video": (2, 4), "image": (1, 4)}
TELEMETRY_WINDOW_S = 0.1
#: a tap (20-60 ms) is shorter than the window: its rise sits on average (window - 40 ms) / 2 before the window's
#: centre would put it, so the accel-rms channel is stamped that much later (sensor model of the sim rig's hub).
TELEMETRY_SHORT_EVENT_S = {4: 0.03}
TELEMETRY_RMS = (4,)  # channels that are an rms over the window: squared to energy first
TELEMETRY_INSTANT = (0, 1)  # channels sampled at the stamp (temperature, speed), not averaged over the window
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

    @property
    def flat(self) -> bool:
        """No onset above the signal's own noise (the problems that begin "flat signal"): nothing happened."""
        return self.problem.startswith("flat signal")


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


def first_of_runs(on: np.ndarray) -> np.ndarray:
    """Move the mass of every run of consecutive positive onsets onto the run's first interval.  For a sharp
    onset sampled at points, the first interval with a rise is the one that holds the true onset, so its midpoint
    is an unbiased estimate whatever the rise time of the signal after it (IMU pulse shape, audio cycles)."""
    pos = on > 0
    if not pos.any():
        return on
    starts = np.nonzero(pos & ~np.concatenate([[False], pos[:-1]]))[0]
    run_id = np.cumsum(pos & ~np.concatenate([[False], pos[:-1]])) - 1
    totals = np.bincount(run_id[pos], weights=on[pos], minlength=len(starts))
    out = np.zeros_like(on)
    out[starts] = totals
    return out


LEAD_BACK_S = 0.15  # how far before a detected rise its leading edge is looked for


def leading_edges(level: np.ndarray, on: np.ndarray, hold: int, back: int) -> np.ndarray:
    """Move each run's onset mass (``first_of_runs`` output) back to where the level left its background: the
    interval after the last sample, within ``back`` before the run, at or below the background (median of the
    ``hold`` samples before that span) + 3 of their robust sigmas.  A sound that swells (a consonant before its
    vowel, a fade-in) then marks its start, not the moment it became loud; a sharp onset stays where it is."""
    out = on.copy()
    for k in np.nonzero(on > 0)[0]:  # interval k: level[k] -> level[k + 1]
        j0 = max(0, int(k) - back)
        pre = level[max(0, j0 - hold) : j0 + 1]
        if len(pre) < 4:
            continue
        base = float(np.median(pre))
        thr = base + 3.0 * max(1.4826 * float(np.median(np.abs(pre - base))), 1e-12)
        below = np.nonzero(level[j0 : k + 1] <= thr)[0]
        j = j0 + int(below[-1]) if len(below) else int(k)
        if j < k:
            out[j] += out[k]
            out[k] = 0.0
    return out


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
    return _finish(t_ns, first_of_runs(novelty(level, _hold(t_ns))))


def audio_envelope(t_ns, samples, block_s: float = AUDIO_BLOCK_S) -> tuple[np.ndarray, np.ndarray]:
    """RMS envelope in blocks of ``block_s``, over every channel (a stereo recorder's sound on one side only is
    still a sound: the encoders' features mix the channels down too): (block end times, rms).  Stamped by the
    block's end so that the interval between two stamps is exactly the block (what ``first_of_runs`` needs)."""
    x = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    t = np.asarray(t_ns, dtype=np.int64)
    if len(t) < 2:
        return t[:0], x[:0, 0]
    period = float(np.median(np.diff(t)))
    b = max(1, int(round(block_s * NS / period)))
    m = len(x) // b
    xb = x[: m * b].reshape(m, -1)
    rms = np.sqrt(np.mean(xb * xb, axis=1))
    tb = t[: m * b].reshape(m, b)
    ends = tb[:, -1] + int(round(period))
    return ends, rms


def audio_onsets(t_ns, samples) -> Onsets:
    x, why, _ = _clean(samples, 64)
    if x is None:
        return _bad("intervals", why)
    x = x.reshape(len(x), -1)
    t = np.asarray(t_ns, dtype=np.int64)
    x, tones = without_steady_lines(x, NS / float(np.median(np.diff(t))), t)  # mains hum swings the 1 ms RMS
    tc, env = audio_envelope(t, x - np.median(x, axis=0))
    if len(env) < 4:
        return _bad("intervals", "too few audio blocks")
    hold = _hold(tc)
    back = max(1, int(round(LEAD_BACK_S * hold / HOLD_S)))
    return _finish(tc, leading_edges(env, first_of_runs(novelty(env, hold)), hold, back),
                   {"steady_tones_hz": tones} if tones else None)


def video_onsets(t_ns, frames) -> Onsets:
    """Level = mean over pixels of |frame - median frame| / that pixel's own typical deviation (clipped), so a
    small LED counts as much as a global shake; onset = novelty of the level."""
    x, why, _ = _clean(frames, 3)
    if x is None:
        return _bad("intervals", why)
    return _finish(t_ns, novelty(_video_level(x), _hold(t_ns)))


def telemetry_onsets(t_ns, samples, window_s: float = TELEMETRY_WINDOW_S, channels=TELEMETRY_CHANNELS) -> Onsets:
    """Sum of the channels' normalized novelty; each channel's values are placed at the centre of the window they
    summarize (shifted for short events, ``TELEMETRY_SHORT_EVENT_S``) and resampled onto the first channel's
    intervals."""
    x, why, _ = _clean(samples, 4)
    if x is None:
        return _bad("intervals", why)
    chans = [c for c in channels if c < x.shape[1]] or list(range(x.shape[1]))
    t = np.asarray(t_ns, dtype=np.int64) - int(window_s * NS / 2)
    on = np.zeros(len(x) - 1)
    for c in chans:
        col = x[:, c] * x[:, c] if c in TELEMETRY_RMS else x[:, c]  # rms -> energy, linear in the window
        col = col - np.median(col)
        pos = novelty(col, 1)
        scale = float(np.max(pos)) if len(pos) else 0.0
        if scale <= 0:
            continue
        pos = pos / scale
        shift = TELEMETRY_SHORT_EVENT_S.get(c, 0.0) + (window_s / 2 if c in TELEMETRY_INSTANT else 0.0)
        if shift:  # move this channel's mass by +shift: interpolate its cumulative onto shifted edges
            cum = np.concatenate([[0.0], np.cumsum(pos)])
            tt = t.astype(np.float64)
            pos = np.diff(np.interp(tt - shift * NS, tt, cum))
        on += pos
    return _finish(t, on)


STILL_SHAKE_LAG_S = 0.07  # a still sees a tap's shake (80 ms decay) on average this long after the tap
_DEFAULT_SEMANTICS = MarkerSemantics()


def text_onsets(t_ns, lines, partner: str | None = None, semantics: MarkerSemantics | None = None) -> Onsets:
    """Event train of marker lines; against a sensor ``partner``, only the lines whose event it registers, at
    their expected onset (``semantics``, default ``markers.DEFAULT_RULES``).  ``notes["spread_ns"]``: the
    markers' typical spread (one sigma of one line's onset)."""
    ev = (semantics or _DEFAULT_SEMANTICS).events(t_ns, lines, partner)
    o = Onsets("impulses", ev.t_ns, np.ones(len(ev.t_ns)), problem=ev.problem, n_events=len(ev.t_ns),
               notes={"spread_ns": float(np.median(ev.spread_ns)) if len(ev.spread_ns) else 0.0})
    return o


def onsets(modality: str, t_ns, samples, partner: str | None = None,
           semantics: MarkerSemantics | None = None) -> Onsets:
    """Onsets of a stream window; ``modality`` is a StreamInfo type (``marker`` counts as text)."""
    t = np.asarray(t_ns, dtype=np.int64)
    if modality in ("text", "marker"):
        return text_onsets(t, samples, partner, semantics)
    if len(t) != len(samples):
        return _bad("intervals", f"{len(t)} times for {len(samples)} samples")
    if len(t) > 1 and np.any(np.diff(t) <= 0):
        order = np.argsort(t, kind="stable")
        keep = np.concatenate([[True], np.diff(t[order]) > 0])
        t, samples = t[order][keep], np.asarray(samples)[order][keep]
    if modality == "image" or (partner == "image" and modality == "telemetry"):
        return levels(modality, t, samples)
    if modality == "telemetry":
        return telemetry_onsets(t, samples, channels=TELEMETRY_FOR.get(partner or "", TELEMETRY_CHANNELS))
    fn = {"imu": imu_onsets, "audio": audio_onsets, "video": video_onsets}.get(modality)
    if fn is None:
        return _bad("intervals", f"no classical features for modality {modality!r}")
    return fn(t, samples)


# ------------------------------------------------------------------------------------------------ level mode
def _video_level(frames: np.ndarray) -> np.ndarray:
    f = frames.reshape(len(frames), -1)
    dev = np.abs(f - np.median(f, axis=0))
    scale = np.median(dev, axis=0) * 1.4826 + 1.0
    return np.mean(np.minimum(dev / scale, 20.0), axis=1)


def levels(modality: str, t_ns, samples) -> Onsets:
    """Level mode, for still images (1 fps) and their partners.  A still only sees what happens during or just
    before its exposure (LED on, shake within ~0.2 s of a tap, a movement in progress), so its evidence sits at its
    own stamp: impulses at the sample times, weighted by how far the level is above its baseline.  Telemetry
    partners use the same (levels of speed, light, accel energy, at the centre of what each value summarizes)."""
    t = np.asarray(t_ns, dtype=np.int64)
    x, why, _ = _clean(samples, 4)
    if x is None:
        return _bad("impulses", why)
    if modality == "telemetry":  # one impulse train per channel, each placed where a still would see it
        ts, ms = [], []
        for c, lag_s in ((1, 0.0), (2, -TELEMETRY_WINDOW_S / 2), (4, -TELEMETRY_WINDOW_S / 2 + STILL_SHAKE_LAG_S)):
            if c >= x.shape[1]:
                continue
            col = x[:, c] * x[:, c] if c in TELEMETRY_RMS else x[:, c]
            col = col - np.median(col)
            mad = float(np.median(np.abs(col))) * 1.4826
            top = float(np.max(col))
            if top > 0:
                ts.append(t + int(lag_s * NS))
                ms.append(np.maximum(col - 3.0 * mad, 0.0) / top)
        if not ts:
            return _bad("impulses", "flat signal (no level above baseline)")
        t = np.concatenate(ts)
        mass = np.concatenate(ms)
        order = np.argsort(t, kind="stable")
        t, mass = t[order], mass[order]
        o = Onsets("impulses", t, mass, n_events=int(np.count_nonzero(mass > 0.1 * mass.max())) if mass.max() > 0
                   else 0)
        if not mass.max() > 0:
            o.problem = "flat signal (no level above baseline)"
        return o
    level = _video_level(x)
    base = float(np.median(level))
    mad = float(np.median(np.abs(level - base))) * 1.4826
    mass = np.maximum(level - base - 3.0 * mad, 0.0)
    o = Onsets("impulses", t, mass, n_events=int(np.count_nonzero(mass > 0.1 * mass.max())) if mass.max() > 0 else 0)
    if not mass.max() > 0:
        o.problem = "flat signal (no level above baseline)"
    return o


def event_times(o: Onsets, rel: float = 0.1) -> np.ndarray:
    """Times (float ns) of distinct events: mass-weighted centres of runs of onset mass above ``rel`` of the
    strongest (intervals), or impulses above it."""
    if not o.ok or len(o.mass) == 0 or not o.mass.max() > 0:
        return np.zeros(0)
    strong = o.mass > rel * o.mass.max()
    if o.kind == "impulses":
        return o.t_ns[strong].astype(np.float64)
    mid = 0.5 * (o.t_ns[:-1] + o.t_ns[1:]).astype(np.float64)
    pos = o.mass > 0
    starts = pos & ~np.concatenate([[False], pos[:-1]])
    run = np.cumsum(starts) - 1
    keep = np.zeros(int(starts.sum()), dtype=bool)
    np.logical_or.at(keep, run[strong], True)
    w = np.bincount(run[pos], weights=o.mass[pos], minlength=len(keep))
    c = np.bincount(run[pos], weights=(o.mass * mid)[pos], minlength=len(keep))
    with np.errstate(invalid="ignore", divide="ignore"):
        centres = c / w
    return centres[keep & (w > 0)]


def matched_events(ref: Onsets, tgt: Onsets, offset_ns: float, tol_ns: float, span) -> tuple[int, float, int]:
    """(target events with a reference event within ``tol_ns`` at ``offset_ns``, the number expected by chance,
    target events in the span)."""
    te = event_times(tgt)
    te = te[(te >= span[0]) & (te < span[1])] + offset_ns
    re = np.sort(event_times(ref))
    if len(te) == 0 or len(re) == 0:
        return 0, 0.0, len(te)
    j = np.clip(np.searchsorted(re, te), 1, len(re) - 1) if len(re) > 1 else np.zeros(len(te), dtype=np.int64)
    d = np.minimum(np.abs(re[j] - te), np.abs(re[np.maximum(j - 1, 0)] - te))
    matched = int(np.sum(d <= tol_ns))
    lo, hi = te.min() - 2 * tol_ns, te.max() + 2 * tol_ns
    density = np.sum((re >= lo) & (re <= hi)) / max(hi - lo, 1.0)
    chance = len(te) * min(1.0, density * 2 * tol_ns)
    return matched, float(chance), len(te)
