"""Where two recordings' clocks started far apart: the offset from their whole event trains.  Pure.

The aligner searches +-``search_s`` (2 s) around a prior; ``synchub align`` takes the prior from the files (the
clocks agree where their times overlap, or the files started together).  A marker log whose times count from its
experiment's start while the microphone was started 37 s earlier is outside that range: every window abstained and
the log was refused, with no hint of why.  Over the whole recording the offset shows anyway: the differences between
every event of one stream and every event of the other pile up at the offset (``coarse_offset``: a histogram of
them, summed over a width that allows the clocks' drift), and spread evenly elsewhere.

``EventTrain`` gathers a stream's events a piece at a time (the classical onsets of ``WINDOW_S`` windows, each
with ``LEAD_S`` before it so an event at a window's start is seen rising).  ``coarse_offset`` answers only where
the pile is far above chance (``MIN_SHARE`` of the smaller train's events and ``CHANCE_X`` times the pile expected
by chance) and the next highest pile, ``AWAY_S`` or more from it, is under ``MAX_SECOND`` of it (a periodic train
piles up at every period: no answer).  ``coarse_fit`` tries the target's times stretched by rates up to
``MAX_RATE_PPM`` where no offset piles up at the clocks' own rates (a clock off by 0.1 % and more).

``support`` asks the trains about one offset instead (a single guess needs far less to stand out than the best of
every offset): how many of the target's events, mapped by a link, land on a reference event, against as many
shifted by ``SHIFTS_S``; what chance lines up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synchub.agent.core.units import NS

from .markers import MarkerSemantics
from .onsets import event_times, onsets

WINDOW_S = 16.0
LEAD_S = 1.0
MAX_EVENTS = 3000  # per train: an evenly spread subset beyond (bounded time and memory)
BIN_NS = 10_000_000
MIN_WIDTH_NS = 30_000_000
DRIFT_PPM = 300.0  # the widest drift the pile allows for
MAX_RATE_PPM = 5000.0  # ``coarse_fit`` tries rates this far off (a ceramic resonator's clock: an Arduino Uno's millis)
MIN_MATCHED = 6
MIN_SHARE = 0.3
CHANCE_X = 4.0
MAX_SECOND = 0.67
AWAY_S = 1.0


class EventTrain:
    """The event times of one stream (on the clock its pieces are stamped with), fed a piece at a time."""

    def __init__(self, modality: str, partner: str, semantics: MarkerSemantics | None = None):
        self.modality, self.partner, self.semantics = modality, partner, semantics
        self._t: list[np.ndarray] = []
        self._x: list = []
        self._start: int | None = None  # where the next window starts
        self.events: list[np.ndarray] = []

    def add(self, t_ns, x) -> None:
        t = np.asarray(t_ns, dtype=np.int64)
        if not len(t):
            return
        self._t.append(t)
        self._x.append(x)
        if self._start is None:
            self._start = int(t[0])
        while int(t[-1]) >= self._start + int(WINDOW_S * NS):
            self._window(self._start + int(WINDOW_S * NS))

    def since(self, t_ns: int) -> np.ndarray:
        """The events from ``t_ns`` on of the samples so far (live: those since the last window too, found now)."""
        if self._t and self._start is not None and int(self._t[-1][-1]) >= self._start:
            self._window(int(self._t[-1][-1]) + 1)
        ev = np.concatenate(self.events) if self.events else np.zeros(0, dtype=np.int64)
        return ev[ev >= t_ns]

    def forget(self, t_ns: int) -> None:
        """Lets the events before ``t_ns`` go (a live train's memory bounded)."""
        while self.events and (not len(self.events[0]) or int(self.events[0][-1]) < t_ns):
            self.events.pop(0)

    def finish(self) -> np.ndarray:
        if self._t and self._start is not None:
            self._window(int(self._t[-1][-1]) + 1)
        ev = np.concatenate(self.events) if self.events else np.zeros(0)
        return np.unique(ev)

    def _window(self, end: int) -> None:
        t = np.concatenate(self._t)
        x = np.concatenate([np.asarray(v, dtype=object) if self.modality in ("text", "marker") else np.asarray(v)
                            for v in self._x])
        a = int(np.searchsorted(t, self._start - int(LEAD_S * NS)))
        b = int(np.searchsorted(t, end))
        if b - a > 1:
            o = onsets(self.modality, t[a:b], x[a:b], self.partner, self.semantics)
            e = event_times(o)
            self.events.append(e[(e >= self._start) & (e < end)])
        keep = int(np.searchsorted(t, end - int(LEAD_S * NS)))
        self._t, self._x = [t[keep:]], [x[keep:]]
        self._start = end


@dataclass(frozen=True)
class CoarseOffset:
    """``offset_ns``: reference - file time where the events pile up; ``matched``: events in the pile;
    ``chance``: the pile expected by chance; ``second``: the next highest pile."""

    offset_ns: int
    matched: int
    chance: float
    second: int
    rate: float = 0.0  # ``coarse_fit``: how much faster the reference's clock runs (0.001: 1000 ppm) ...
    centre_ns: int = 0  # ... about this file time: ref = centre + (t - centre) * (1 + rate) + offset


def _thin(e: np.ndarray) -> np.ndarray:
    e = np.sort(np.asarray(e, dtype=np.float64))
    return e[np.linspace(0, len(e) - 1, MAX_EVENTS).round().astype(np.int64)] if len(e) > MAX_EVENTS else e


def coarse_offset(ref_events, tgt_events, lo_ns: float, hi_ns: float) -> CoarseOffset | None:
    """The offset ref - tgt in [lo_ns, hi_ns] where the two trains' events pile up (see the module docstring), or
    None where no pile stands clearly above chance and above every other."""
    r, t = _thin(ref_events), _thin(tgt_events)
    if min(len(r), len(t)) < MIN_MATCHED or not hi_ns > lo_ns:
        return None
    span = float(t[-1] - t[0])
    width = max(MIN_WIDTH_NS, DRIFT_PPM * 1e-6 * span)
    a = np.searchsorted(r, t + lo_ns)
    b = np.searchsorted(r, t + hi_ns, side="right")
    d = np.concatenate([r[i:j] - x for x, i, j in zip(t, a, b, strict=True)]) if len(t) else np.zeros(0)
    nb = int(np.ceil((hi_ns - lo_ns) / BIN_NS)) + 1
    hist = np.bincount(((d - lo_ns) // BIN_NS).astype(np.int64), minlength=nb)[:nb]
    k = max(1, int(round(width / BIN_NS)))
    pile = np.convolve(hist, np.ones(k, dtype=np.int64), mode="same")
    top = int(np.argmax(pile))
    matched = int(pile[top])
    chance = len(d) * width / (hi_ns - lo_ns)
    away = max(int(AWAY_S * NS / BIN_NS), 2 * k)
    rest = np.concatenate([pile[: max(0, top - away)], pile[top + away + 1:]])
    second = int(rest.max()) if len(rest) else 0
    if matched < max(MIN_MATCHED, MIN_SHARE * min(len(r), len(t))) or matched < CHANCE_X * chance + 3 \
            or second > MAX_SECOND * matched:
        return None
    centre = lo_ns + (top + 0.5) * BIN_NS
    near = d[np.abs(d - centre) <= width / 2 + BIN_NS]
    return CoarseOffset(int(round(float(np.median(near)))), matched, float(chance), second)


def coarse_fit(ref_events, tgt_events) -> CoarseOffset | None:
    """``coarse_offset`` over the whole overlap of the two trains, and where no pile stands out, with the target's
    times stretched by rates ``DRIFT_PPM`` apart up to +-``MAX_RATE_PPM`` (a clock off by 0.1 % smears a 10-minute
    recording's events over 0.6 s: no pile; stretched by a rate within the pile's allowance of it, they pile up):
    the rate whose pile holds the most events, with its offset."""
    r, t = _thin(ref_events), _thin(tgt_events)
    if not len(r) or not len(t):
        return None
    found = coarse_offset(r, t, float(r[0] - t[-1]), float(r[-1] - t[0]))
    if found is not None:
        return found
    best = None
    steps = int(MAX_RATE_PPM // DRIFT_PPM)
    for k in [k for k in range(-steps, steps + 1) if k]:
        rate = k * DRIFT_PPM * 1e-6
        w = t[0] + (t - t[0]) * (1.0 + rate)
        f = coarse_offset(r, w, float(r[0] - w[-1]), float(r[-1] - w[0]))
        if f is not None and (best is None or f.matched > best.matched):
            best = CoarseOffset(f.offset_ns, f.matched, f.chance, f.second, rate, int(t[0]))
    return best


#: ``support``: the mapped events are shifted this far (s, either way) to count what chance lines up ...
SHIFTS_S = tuple(float(s) for s in np.r_[-np.arange(1.0, 10.0, 0.25), np.arange(1.0, 10.0, 0.25)])
#: ... within this of a reference event (a speech onset in 0 dB babble is found ~30 ms late; a drift of 150 ppm
#: moves a constant offset 18 ms over two minutes)
SUPPORT_WIDTH_NS = 100_000_000
SUPPORT_Z = 4.0  # ... and a link's own count stands out when this many spreads above their mean, and above them all
MIN_SUPPORT = 3


@dataclass(frozen=True)
class Support:
    """``matched``: the mapped events within the width of a reference event; ``chance``, ``spread``, ``most``:
    the mean, standard deviation and highest of those counts at the shifts."""

    matched: int
    chance: float
    spread: float
    most: int

    @property
    def beyond_chance(self) -> bool:
        """Above every shift's count, by ``SUPPORT_Z`` spreads (at least a Poisson count's) above their mean, and
        at least ``MIN_SUPPORT`` events."""
        spread = max(self.spread, self.chance ** 0.5, 0.5)
        return self.matched > self.most and self.matched >= max(MIN_SUPPORT, self.chance + SUPPORT_Z * spread)


def support(ref_events, mapped_events, width_ns: float = SUPPORT_WIDTH_NS) -> Support:
    """How far a link's mapping lines the two trains up beyond chance (see the module docstring): windows that
    found an offset by chance (a few of many, in loud babble, the clocks 30 s apart) line up no more events than
    the mapping shifted by seconds; a recording's true offset lines up several times as many."""
    r = np.sort(np.asarray(ref_events, dtype=np.float64))
    m = np.asarray(mapped_events, dtype=np.float64)
    if len(r) < 2 or not len(m):
        return Support(0, 0.0, 0.0, 0)

    def hits(shift_ns: float) -> int:
        x = m + shift_ns
        i = np.clip(np.searchsorted(r, x), 1, len(r) - 1)
        return int(np.sum(np.minimum(np.abs(r[i] - x), np.abs(r[i - 1] - x)) <= width_ns))

    null = np.array([hits(s * NS) for s in SHIFTS_S], dtype=np.float64)
    return Support(hits(0.0), float(null.mean()), float(null.std()), int(null.max()))
