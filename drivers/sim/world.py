"""The simulated world: shared latent events on the reference timeline, seeded.

Every simulated device renders the same events into its own modality (see ``render.py``), so streams can be aligned
against each other and against truth.  Event kinds and what they cause:

=========  =======================================================================================
TAP        an impact: IMU accel spike (+ small gyro kick), audio thump, camera shake, log line
MOTION     a movement lasting 0.3-3 s: IMU gyro + accel, telemetry speed, camera brightness drift, log line
FLASH      the LED in the camera's view turns on for 30-300 ms: video pixels, telemetry light, log line
SOUND      a tone burst of 50-400 ms: audio, telemetry sound level, log line
MARKER     an operator/software event that only the event log sees
=========  =======================================================================================

``World.events`` is a structured array sorted by time; ``t_ns`` is relative to the world's start (t=0), so a
device adds its own ``origin_ns``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synchub.agent.core.settings import setting
from synchub.agent.core.units import NS

TAP, MOTION, FLASH, SOUND, MARKER = range(5)
KIND_NAMES = ("tap", "motion", "flash", "sound", "marker")

EVENT_DTYPE = np.dtype(
    [
        ("t_ns", np.int64),  # onset, reference time relative to world start
        ("kind", np.int8),
        ("dur_ns", np.int64),
        ("amp", np.float32),  # 0.2 .. 1.0
        ("axis", np.int8),  # 0..2 (IMU axis / motion direction)
        ("freq_hz", np.float32),  # SOUND: tone frequency; MOTION: wobble frequency
        ("logged", np.bool_),  # whether the event log writes a line for it
    ]
)


@dataclass(frozen=True)
class WorldSpec:
    """Rates of latent events (per second) and how often each is logged.  ``[world]`` table of a scenario."""

    tap_rate: float = setting(0.4, min=0.0, doc="impacts per second")
    motion_rate: float = setting(0.12, min=0.0, doc="movements per second")
    flash_rate: float = setting(0.3, min=0.0, doc="LED flashes per second")
    sound_rate: float = setting(0.3, min=0.0, doc="tone bursts per second")
    marker_rate: float = setting(0.05, min=0.0, doc="log-only markers per second")
    log_prob: float = setting(0.85, min=0.0, max=1.0, doc="probability that a physical event is logged")
    min_gap_ms: float = setting(120.0, min=0.0, doc="minimum spacing between onsets of the same kind")


class World:
    """Seeded latent events over ``duration_s`` seconds."""

    def __init__(self, duration_s: float, seed: int = 0, spec: WorldSpec | None = None):
        self.duration_s = float(duration_s)
        self.seed = int(seed)
        self.spec = spec or WorldSpec()
        rng = np.random.default_rng([self.seed, 0x5EED])
        parts = [
            self._poisson(rng, TAP, self.spec.tap_rate, (0.02, 0.06), (0, 0)),
            self._poisson(rng, MOTION, self.spec.motion_rate, (0.3, 3.0), (0.5, 3.0)),
            self._poisson(rng, FLASH, self.spec.flash_rate, (0.03, 0.3), (0, 0)),
            self._poisson(rng, SOUND, self.spec.sound_rate, (0.05, 0.4), (300.0, 2500.0)),
            self._poisson(rng, MARKER, self.spec.marker_rate, (0.0, 0.0), (0, 0)),
        ]
        ev = np.concatenate(parts)
        ev = ev[np.argsort(ev["t_ns"], kind="stable")]
        logged = rng.random(len(ev)) < self.spec.log_prob
        logged[ev["kind"] == MARKER] = True
        ev["logged"] = logged
        self.events = ev

    def _poisson(self, rng, kind, rate, dur_range_s, freq_range):
        if rate <= 0:
            return np.zeros(0, dtype=EVENT_DTYPE)
        n = rng.poisson(rate * self.duration_s)
        t = np.sort(rng.uniform(0.2, max(0.2, self.duration_s - 0.2), n))
        if len(t) > 1 and self.spec.min_gap_ms > 0:  # thin out onsets closer than min_gap
            keep = np.ones(len(t), dtype=bool)
            last = -np.inf
            for i, ti in enumerate(t):
                if ti - last < self.spec.min_gap_ms / 1e3:
                    keep[i] = False
                else:
                    last = ti
            t = t[keep]
        out = np.zeros(len(t), dtype=EVENT_DTYPE)
        out["t_ns"] = np.rint(t * NS).astype(np.int64)
        out["kind"] = kind
        out["dur_ns"] = np.rint(rng.uniform(*dur_range_s, len(t)) * NS).astype(np.int64)
        out["amp"] = rng.uniform(0.2, 1.0, len(t))
        out["axis"] = rng.integers(0, 3, len(t))
        out["freq_hz"] = rng.uniform(*freq_range, len(t)) if freq_range[1] > 0 else 0.0
        return out

    def of_kind(self, *kinds: int) -> np.ndarray:
        return self.events[np.isin(self.events["kind"], kinds)]

    def active(self, kind: int, t_ns: np.ndarray) -> np.ndarray:
        """Per time in ``t_ns`` (relative), the amplitude of an active ``kind`` event (0 where none)."""
        ev = self.of_kind(kind)
        out = np.zeros(len(t_ns), dtype=np.float32)
        if len(ev) == 0:
            return out
        idx = np.searchsorted(ev["t_ns"], t_ns, side="right") - 1
        valid = idx >= 0
        i = idx[valid]
        inside = t_ns[valid] < ev["t_ns"][i] + ev["dur_ns"][i]
        vals = np.where(inside, ev["amp"][i], 0.0)
        out[valid] = vals
        return out

    def log_messages(self) -> list[tuple[int, str]]:
        """(t_ns, text) of every logged event, the text a device's event log would print."""
        words = {
            TAP: "impact detected amp={amp:.2f}",
            MOTION: "motion start axis={axis} dur={dur:.2f}s",
            FLASH: "led on dur={dur:.3f}s",
            SOUND: "beep {freq:.0f}Hz dur={dur:.3f}s",
            MARKER: "marker {i}",
        }
        out = []
        for i, e in enumerate(self.events[self.events["logged"]]):
            text = words[int(e["kind"])].format(
                amp=float(e["amp"]), axis="xyz"[int(e["axis"])], dur=e["dur_ns"] / NS, freq=float(e["freq_hz"]), i=i
            )
            out.append((int(e["t_ns"]), text))
        return out


#: what the simulated rig's log lines mean, as ``[[stream]] markers`` rules (``synchub.agent.align.markers``): a
#: tap is felt, heard and shaken into the camera (not into the hub's 100 ms telemetry, too short); a beep is heard
#: (also in the telemetry's sound level); the LED is seen (a still sees it mid-flash); a slow movement only in a
#: still image's level, mid-movement.  "marker <i>" lines mean nothing a sensor sees.  The simulator logs each
#: event at its true time: no spread.
MARKER_RULES: tuple[dict, ...] = (
    {"pattern": r"^impact\b", "senses": ["audible", "motion", "visible"], "spread_ms": 0.0,
     "streams": ["imu", "audio", "video", "image"], "still_lag_ms": 70.0},
    {"pattern": r"^beep\b", "senses": ["audible"], "spread_ms": 0.0},
    {"pattern": r"^led\b", "senses": ["visible"], "spread_ms": 0.0, "still_fraction": 0.5},
    {"pattern": r"^motion\b", "senses": ["visible", "motion"], "spread_ms": 0.0, "smooth": True,
     "still_fraction": 0.5},
)
