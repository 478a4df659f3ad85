"""Where a microphone's average energy starts to rise around a marker log's mapped sound onsets: a check of a whole
recording's aligner mapping against the leading edge that single onsets hide.  Pure numpy, no I/O.

A sound's onset under loud background (speech in babble at 10 dB or below) is found late in every window: its first
tens of milliseconds are weaker than the background's own swings, so each window's onset detector fires on the
sound's swell, and the windows agree on a mapping that is late by the same amount (``bench align --real-files``:
21 and 59 ms on two held-out recordings, with every window's sigma smaller).  Averaged over a recording's sounds at
their mapped onsets, the background's swings shrink by the square root of their number and the sounds' leading edge
shows: ``EventAverage`` adds the power of the audio, in 1 ms bins, from ``BEFORE_MS`` before each mapped onset to
``AFTER_MS`` after (each bin with the 4 before it), and ``departure`` finds where the average leaves the level before
the onsets (its median + 3 standard errors of the average there), going back from where it crossed halfway up to the
peak nearest after the onsets (a cue before each sound rises before that crossing and falls again: not it).  The
average is of the log of the power (a background whose level swings by tens of times around one onset moves that
onset's share only, where a mean of the power follows its loudest few), and each bin leaves out its loudest tenth
of the sounds (a log's lines scatter: a mean over the sounds rises with the earliest few and marks the earliest onset,
not the typical one).  Resampling the onsets (``BOOTS``) gives the spread of that point.

Judged as a bound, not an estimate: an onset hidden under the background can only be found late, so where the rise
starts clearly before the mapped onsets (the latest of the resampled departures more than ``GATE_MS``, or 1.5 x the
log lines' own one-sigma spread, before them), the mapping is moved earlier by the departure
(``Departure.shift_ns``), as far as the mapping's own uncertainty allows (three of its windows' sigmas: a rise
further back belongs to another sound; ``beyond_limit`` says so); elsewhere it stays.  Sharp sounds at their true
onsets depart 1-3 ms before them (the 1 ms bins), which the gate leaves alone.  What it cannot do: find the part of
an onset that is weaker than the average's own noise (the mapping stays late by that part), see an early mapping,
or judge fewer than ``MIN_EVENTS`` sounds; of more than ``MAX_EVENTS`` it averages an even subset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BIN_NS = 1_000_000
BEFORE_MS = 400  # the level before an onset: -400 .. -150 ms
BASE_END_MS = 150
AFTER_MS = 300
GATE_MS = 5.0
BOOTS = 100
MIN_EVENTS = 12
MAX_EVENTS = 2000
TRIM_TOP = 0.1  # the share of each bin's loudest sounds left out
K_SIGMA = 3.0
SMOOTH_BINS = 5  # each bin's power is the mean of its own and the 4 before it (a trailing mean: a rise is never
# seen before it starts, only up to 4 ms after)


@dataclass(frozen=True)
class Departure:
    """``departure_ns``: where the average rises, from the mapped onsets (negative: before them); ``latest_ns``: the
    90th percentile of the resampled departures; ``events``: how many onsets the average holds; ``shift_ns``: what
    to add to the mapped onsets (0 where the rise is not clearly earlier, or further back than the limit)."""

    departure_ns: int
    latest_ns: int
    events: int
    shift_ns: int
    beyond_limit: bool = False  # clearly before the mapped onsets, but further back than the limit: not moved


def _departure(power: np.ndarray) -> int | None:
    """Bins from the window's start to the first bin of the rise of the events' mean log power without each bin's
    loudest ``TRIM_TOP`` of the sounds (power: events x bins), or None for no clear rise.  Not the plain mean: it jumps
    with the few sounds that start early (a log's latency jitter) and would mark the earliest onset.  The level's
    noise is that average's standard error over the sounds before the onsets (a background whose level swings
    slowly moves every bin of one sound alike: the spread between sounds sees it, the spread between bins would
    not).  The rise is the one of the peak nearest after the mapped onsets: a cue before each sound is not it."""
    end = BEFORE_MS - BASE_END_MS
    c = np.cumsum(np.pad(power, ((0, 0), (SMOOTH_BINS, 0))), axis=1)
    power = (c[:, SMOOTH_BINS:] - c[:, :-SMOOTH_BINS]) / SMOOTH_BINS  # each bin with the ones before it: no earlier
    floor = max(float(np.median(power[:, :end])) * 1e-3, 1e-30)
    lp = np.log(power + floor)  # log power: a background that swings by 50x in one sound is one sound's swing
    keep = len(lp) - int(TRIM_TOP * len(lp))
    core = np.sort(lp, axis=0)[:keep]  # each bin without its loudest sounds: the few that started early
    avg = core.mean(axis=0)
    b = float(np.median(avg[:end]))
    s = float(np.median(core[:, :end].std(axis=0, ddof=1))) / np.sqrt(keep)
    lo, hi = end, BEFORE_MS + BASE_END_MS
    peak = lo + int(np.argmax(avg[lo:hi]))
    top = float(avg[peak])
    if not top > b + 2 * K_SIGMA * s or not top > b:
        return None
    half = b + 0.5 * (top - b)
    rise = peak
    while rise > lo and avg[rise - 1] > half:  # back from the peak to where it crossed halfway up
        rise -= 1
    below = np.nonzero(avg[lo : rise + 1] <= b + K_SIGMA * s)[0]
    return lo + int(below[-1]) + 1 if len(below) else None  # above the level all along: no departure seen


class EventAverage:
    """Audio power in 1 ms bins around onsets ``onsets_ns`` (reference clock), fed a piece at a time (``add``)."""

    def __init__(self, onsets_ns):
        on = np.sort(np.asarray(onsets_ns, dtype=np.int64))
        if len(on) > MAX_EVENTS:  # an evenly spread subset: bounded memory and time (a click train's 100,000)
            on = on[np.linspace(0, len(on) - 1, MAX_EVENTS).round().astype(np.int64)]
        self.onsets = on
        n, w = len(self.onsets), BEFORE_MS + AFTER_MS
        self.sums = np.zeros((n, w), dtype=np.float32)
        self.counts = np.zeros((n, w), dtype=np.float32)
        self.starts = self.onsets - BEFORE_MS * BIN_NS

    def add(self, t_ns, x) -> None:
        """Samples ``x`` at ``t_ns`` (reference clock, in time order); their power is the mean over the channels
        (as the aligner's onsets take it)."""
        t = np.asarray(t_ns, dtype=np.int64)
        if not len(t) or not len(self.onsets):
            return
        x = np.asarray(x, dtype=np.float64).reshape(len(t), -1)
        v = np.sqrt(np.mean(x * x, axis=1))
        if not np.isfinite(v).all():  # a bad sample is left out of its bin, as the aligner's onsets leave it out
            keep = np.isfinite(v)
            t, v = t[keep], v[keep]
            if not len(t):
                return
        span = (BEFORE_MS + AFTER_MS) * BIN_NS
        j0 = int(np.searchsorted(self.starts, int(t[0]) - span, side="right"))
        j1 = int(np.searchsorted(self.starts, int(t[-1]), side="right"))
        for j in range(j0, j1):
            a, b = np.searchsorted(t, [self.starts[j], self.starts[j] + span])
            if b <= a:
                continue
            k = (t[a:b] - self.starts[j]) // BIN_NS
            self.sums[j] += np.bincount(k, weights=v[a:b] * v[a:b], minlength=self.sums.shape[1])
            self.counts[j] += np.bincount(k, minlength=self.counts.shape[1])

    def departure(self, limit_ns: float = float("inf"), spread_ns: float = 0.0, seed: int = 0) -> Departure | None:
        """Where the average rises (see the module docstring); None with fewer than ``MIN_EVENTS`` whole windows or
        no clear rise.  No shift further than ``limit_ns`` (what the mapping's own uncertainty allows: a rise
        further back is another sound, a cue before the one logged, not this one's hidden start), nor for a rise
        less than ``GATE_MS`` or 1.5 x ``spread_ns`` (the log lines' own one-sigma scatter: the earliest tenth of the
        sounds of a log that scatters starts about that much before its typical one) before the mapped onsets."""
        whole = np.all(self.counts > 0, axis=1)
        if np.count_nonzero(whole) < MIN_EVENTS:
            return None
        power = self.sums[whole].astype(np.float64) / self.counts[whole]
        d = _departure(power)
        if d is None:
            return None
        rng = np.random.default_rng(seed)
        boots = [_departure(power[rng.integers(0, len(power), len(power))]) for _ in range(BOOTS)]
        boots = [b for b in boots if b is not None]
        if len(boots) < BOOTS // 2:
            return None
        dep_ns = (d - BEFORE_MS) * BIN_NS
        latest = int(round((float(np.percentile(boots, 90)) - BEFORE_MS) * BIN_NS))
        clear = latest < -max(GATE_MS * BIN_NS, 1.5 * spread_ns)
        shift = dep_ns if clear and -dep_ns <= limit_ns else 0
        return Departure(dep_ns, latest, len(power), shift, clear and not shift)
