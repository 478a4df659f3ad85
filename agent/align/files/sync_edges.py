"""Sync pulses found in a data channel: a TTL line, a photodiode's level, an audio click or tone burst.

Pure and streaming: ``PulseFinder.feed(seq, x)`` takes consecutive samples of one channel (``seq`` is the index of
the first) and returns the pulses completed so far; ``finish()`` the last.  A pulse is its rising edge as a
fractional sample index (the crossing of the middle level, interpolated between the two samples around it) and its
width in samples; the caller turns indices into times (raw or dejittered stamps).  Kinds:

* ``ttl``/``photodiode``: a two-level signal.  The levels come from the channel's own histogram (Otsu's threshold
  on the first samples that show both levels, then the median of each side); an edge is a move past the middle
  with hysteresis (``HYSTERESIS`` of the level distance), timed where the signal crosses the middle.
* ``click``/``tone``: a sound.  The threshold sits above the noise (``NOISE_SIGMAS`` robust sigmas of the signal)
  and at ``CLICK_LEVEL`` of the loudest sample seen while learning; a pulse starts where ``|x|`` first crosses it
  and ends after ``merge`` samples below (a click rings, a tone crosses zero twice a period).

Pulse-width rules: pulses narrower than ``min_width`` or wider than ``max_width`` (samples; 0 = no limit) are
rejected and counted (``stats``).  A fixed ``threshold`` replaces the automatic levels.  Until the levels are known
the samples wait in a bounded buffer (``LEARN_MAX`` samples); a channel that never shows two levels gives no pulse
and says why (``stats["no_levels"]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HYSTERESIS = 0.2
NOISE_SIGMAS = 8.0
CLICK_LEVEL = 0.2
LEARN_MIN = 64
LEARN_MAX = 2_000_000
KINDS = ("ttl", "photodiode", "click", "tone")


@dataclass(frozen=True)
class Pulse:
    """A pulse: rising edge at fractional sample index ``index``; ``width`` in samples (falling - rising);
    ``t_ns``/``host_ns``: the edge's time interpolated between the stamps given with the samples (0 without)."""

    index: float
    width: float
    t_ns: int = 0
    host_ns: int = 0


def otsu(x: np.ndarray, bins: int = 256) -> float | None:
    """Otsu's threshold of ``x`` (the split of its histogram with the largest between-class variance)."""
    lo, hi = float(np.min(x)), float(np.max(x))
    if not hi > lo:
        return None
    h, edges = np.histogram(x, bins=bins, range=(lo, hi))
    p = h.astype(np.float64) / h.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m = np.cumsum(p * centres)
    mt = m[-1]
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 - m) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1
    k = int(np.argmax(between[:-1]))
    return float(edges[k + 1])


def two_levels(x: np.ndarray) -> tuple[float, float] | None:
    """The low and high level of a two-level signal, or None when ``x`` does not show two clear levels."""
    thr = otsu(x)
    if thr is None:
        return None
    lo_s, hi_s = x[x < thr], x[x >= thr]
    if len(lo_s) < 2 or len(hi_s) < 2:
        return None
    lo, hi = float(np.median(lo_s)), float(np.median(hi_s))
    spread = max(float(np.median(np.abs(lo_s - lo))), float(np.median(np.abs(hi_s - hi))))
    if not hi - lo > 8.0 * spread:
        return None
    return lo, hi


class PulseFinder:
    """See the module docstring.  ``kind`` in ``KINDS``; widths in samples."""

    def __init__(self, kind: str = "ttl", *, threshold: float | None = None, min_width: float = 0.0,
                 max_width: float = 0.0, merge: int = 0, invert: bool = False):
        if kind not in KINDS:
            raise ValueError(f"unknown pulse kind {kind!r}; allowed: {', '.join(KINDS)}")
        self.kind = kind
        self.sound = kind in ("click", "tone")
        self.min_width, self.max_width = float(min_width), float(max_width)
        self.merge = int(merge)
        self.invert = invert
        self.fixed = threshold
        self.mid: float | None = None
        self.on_level = self.off_level = 0.0
        self.levels: tuple[float, float] | None = None
        self._learn: list[tuple[int, np.ndarray]] = []
        self._learn_n = 0
        self.state = 0  # 0 low, 1 high
        self._tail: tuple[int, float, int, int] | None = None  # last sample (index, value, t, host) so far
        self._rise: tuple[float, int, int] | None = None  # the open pulse's rising edge (index, t, host)
        self._pending: Pulse | None = None  # a sound pulse that may still merge with the next
        self._fall_at: tuple[float, int, int] = (0.0, 0, 0)
        self.stats: dict[str, int] = {}
        self.pulses = 0

    def _count(self, why: str, n: int = 1) -> None:
        self.stats[why] = self.stats.get(why, 0) + n

    # ---- levels
    def _signal(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.sound:
            return np.abs(x)
        return -x if self.invert else x

    def _set_levels(self, x: np.ndarray) -> bool:
        if self.fixed is not None:
            self.mid = float(self.fixed) if not self.invert or self.sound else -float(self.fixed)
            self.on_level = self.off_level = self.mid
            return True
        if self.sound:
            noise = 1.4826 * float(np.median(np.abs(x - np.median(x))))
            peak = float(np.max(x))
            if not peak > 3.0 * NOISE_SIGMAS * max(noise, 1e-12):
                return False
            self.mid = max(NOISE_SIGMAS * noise, CLICK_LEVEL * peak)
            self.on_level = self.off_level = self.mid
            self.levels = (noise, peak)
            return True
        lv = two_levels(x)
        if lv is None:
            return False
        lo, hi = lv
        self.levels = lv
        self.mid = (lo + hi) / 2
        self.on_level = self.mid + HYSTERESIS * (hi - lo) / 2
        self.off_level = self.mid - HYSTERESIS * (hi - lo) / 2
        return True

    # ---- pulses
    def feed(self, seq: int, x, t_ns=None, host_ns=None) -> list[Pulse]:
        """Samples ``seq, seq+1, ...`` of the channel, optionally with their stamps (for the pulses' times)."""
        v = self._signal(x)
        if len(v) == 0:
            return []
        t = np.zeros(len(v), np.int64) if t_ns is None else np.asarray(t_ns, dtype=np.int64)
        h = np.zeros(len(v), np.int64) if host_ns is None else np.asarray(host_ns, dtype=np.int64)
        if self.mid is None:
            self._learn.append((seq, v, t, h))
            self._learn_n += len(v)
            if self._learn_n < LEARN_MIN:
                return []
            allv = np.concatenate([b[1] for b in self._learn])
            if not self._set_levels(allv):
                if self._learn_n > LEARN_MAX:  # keep learning from the latest samples only
                    self._learn = self._learn[len(self._learn) // 2:]
                    self._learn_n = sum(len(b[1]) for b in self._learn)
                return []
            learnt, self._learn = self._learn, []
            self.state = 1 if learnt[0][1][0] > self.mid else 0
            out: list[Pulse] = []
            for b in learnt:
                out += self._scan(*b)
            return out
        return self._scan(seq, v, t, h)

    def _scan(self, seq: int, v: np.ndarray, t: np.ndarray, h: np.ndarray) -> list[Pulse]:
        n = len(v)
        # hysteresis state per sample: 1 at or above on_level, 0 at or below off_level, else the previous state
        defined = (v >= self.on_level) | (v <= self.off_level) if not self.sound else np.ones(n, dtype=bool)
        val = (v >= self.on_level) if not self.sound else (v > self.mid)
        idx = np.where(defined, np.arange(n), -1)
        np.maximum.accumulate(idx, out=idx)
        st = np.where(idx >= 0, val[np.maximum(idx, 0)], bool(self.state)).astype(np.int8)
        prev = np.concatenate([[self.state], st[:-1]]).astype(np.int8)
        change = np.flatnonzero(st != prev)
        below = np.where(v < self.mid, np.arange(n), -1)
        np.maximum.accumulate(below, out=below)
        above = np.where(v >= self.mid, np.arange(n), -1)
        np.maximum.accumulate(above, out=above)
        out: list[Pulse] = []
        for k in change.tolist():
            rising = st[k] == 1
            last = below[k] if rising else above[k]  # the last sample on the other side of the middle
            edge = self._cross(seq, v, t, h, int(last), k)
            if rising:
                out += self._open(edge)
            else:
                out += self._close(edge)
        self.state = int(st[-1])
        self._tail = (seq + n - 1, float(v[-1]), int(t[-1]), int(h[-1]))
        if self.sound and self._pending is not None and self.state == 0:
            # a pending sound pulse is final once ``merge`` samples passed without a new one
            if seq + n - 1 - self._fall_at[0] > self.merge:
                out += self._emit(self._pending)
                self._pending = None
        return out

    def _cross(self, seq: int, v: np.ndarray, t: np.ndarray, h: np.ndarray, last: int,
               k: int) -> tuple[float, int, int]:
        """Where the signal crosses the middle between sample ``last`` and the next one: (fractional index, time,
        host time of the sample after it)."""
        if last < 0:  # the crossing sits between the previous piece's last sample and this one's first
            if self._tail is None:
                return float(seq + k), int(t[k]), int(h[k])
            i0, x0, t0, _ = self._tail
            x1, t1, h1 = float(v[0]), int(t[0]), int(h[0])
        else:
            i0, x0, t0 = seq + last, float(v[last]), int(t[last])
            if last + 1 >= len(v):
                return float(i0), t0, int(h[last])
            x1, t1, h1 = float(v[last + 1]), int(t[last + 1]), int(h[last + 1])
        f = 1.0 if x1 == x0 else min(max((self.mid - x0) / (x1 - x0), 0.0), 1.0)
        return i0 + f, t0 + int(round(f * (t1 - t0))), h1

    def _open(self, edge: tuple[float, int, int]) -> list[Pulse]:
        self._rise = edge
        return []

    def _close(self, edge: tuple[float, int, int]) -> list[Pulse]:
        if self._rise is None:
            return []
        r = self._rise
        p = Pulse(r[0], edge[0] - r[0], r[1], r[2])
        self._rise = None
        if not self.sound or self.merge <= 0:
            return self._emit(p)
        out: list[Pulse] = []
        if self._pending is not None and p.index - self._fall_at[0] <= self.merge:
            q = self._pending  # the same ringing click or tone
            p = Pulse(q.index, edge[0] - q.index, q.t_ns, q.host_ns)
        elif self._pending is not None:
            out = self._emit(self._pending)
        self._pending = p
        self._fall_at = edge
        return out

    def _emit(self, p: Pulse) -> list[Pulse]:
        if (self.min_width and p.width < self.min_width) or (self.max_width and p.width > self.max_width):
            self._count("width")
            return []
        self.pulses += 1
        return [p]

    def finish(self) -> list[Pulse]:
        """Pulses still open at the end (a sound pulse waiting to merge; a level pulse with no falling edge is
        counted as unfinished)."""
        out: list[Pulse] = []
        if self.mid is None and self._learn:
            self._count("no_levels")
            self._learn = []
        if self._pending is not None:
            out += self._emit(self._pending)
            self._pending = None
        if self._rise is not None:
            self._count("unfinished")
            self._rise = None
        return out
