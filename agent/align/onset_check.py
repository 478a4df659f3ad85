"""Where a microphone's average energy starts to rise around a marker log's mapped sound onsets: a check of a whole
recording's aligner mapping against the leading edge that single onsets hide, and of its drift against where that
edge is in each part of the recording.  Pure numpy, no I/O.

A sound's onset under loud background (speech in babble at 10 dB or below) is found late in every window: its first
tens of milliseconds are weaker than the background's own swings, so each window's onset detector fires on the
sound's swell, and the windows agree on a mapping that is late by the same amount (``bench align --real-files``: 21
and 59 ms on two held-out recordings, with every window's sigma smaller).  Averaged over a recording's sounds at
their mapped onsets, the background's swings shrink by the square root of their number and the sounds' leading edge
shows: ``EventAverage`` adds the power of the audio (less its DC offset), in 1 ms bins, from ``BEFORE_MS`` before
each mapped onset to ``AFTER_MS`` after (each bin with the 4 before it), and ``departure`` finds where the average
leaves the level before the onsets (its median + 3 standard errors of the average there), going back from where it
crossed halfway up to the peak nearest after the onsets (a cue before each sound rises before that crossing and falls
again: not it).  The average is of the log of the power (a background whose level swings by tens of times around one
onset moves that onset's share only, where a mean of the power follows its loudest few), and each bin leaves out its
loudest tenth of the sounds (a log's lines scatter: a mean over the sounds rises with the earliest few and marks the
earliest onset, not the typical one).  Resampling the onsets (``BOOTS``) gives the spread of that point.

Judged as a bound, not an estimate: an onset hidden under the background can only be found late, so where the rise
starts clearly before the mapped onsets (the latest of the resampled departures more than ``GATE_MS``, or 1.5 x the log
lines' own one-sigma spread, before them), the mapping is moved earlier, as far as the mapping's own uncertainty allows
(three of its windows' sigmas: a rise further back belongs to another sound; ``beyond_limit`` says so); a slow rise that
departs before them, not clearly (fewer sounds: a held-out 150 s of speech at 10 dB, 44 utterances, its windows 18.7 ms
late), moves only to where its line (below) starts clearly before them; elsewhere it stays.  How far: the departure is
where the rise first stands out of the average's noise.  A sharp rise (up halfway, of its log, within ``SHARP_MS``:
sound effects, 1-6 ms, at any SNR) starts there, within 1-3 ms.  A slow one (speech: 9-40 ms) is late there by the part
under that noise, more the louder the background (speech at true onsets: 7-27 ms late at 0-5 dB); its start (``_start``)
does not depend on that level: the average's power above the level just before the departure (``FLOOR_MS``), as an
amplitude, grows about linearly as a sound swells, and the line through it from ``START_LO`` to ``START_HI`` of its
peak, followed down to zero, is where the sounds start (speech at true onsets, 21 recordings of the validation and
calibration splits at 0-30 dB SNR: -16 .. +9 ms, mean -2.8, sd 7.2; 12 held-out: -7 .. +6 ms; a rise too steep for a
line, under ``LINE_MS``: where it passes ``START_LO``).  Where resampling the sounds moves that start by less than
``START_SPREAD_MS`` (``start_sigma_ns``) and it is before the departure, the mapping moves to it; within
``OTHER_RISE_MS`` after the departure, to the departure; further after it, the average rose before the sounds' own rise
(a cue, or a swell of what comes before each sound: a held-out recording's voices at 30 dB SNR, 2 x the level over 150
ms before the utterances, departing 128 ms before them), so the start decides, and the mapping moves only if it is
clearly before the mapped onsets.  An early mapping it sees only where the sounds rise sharply (a slow rise departs
after its start anyway): clearly after the mapped onsets (the earliest tenth of the resampled departures more than
the gate after them), the mapping moves later to that departure, as far as the limit; beyond it, not moved, the whole
distance is its uncertainty.  What it cannot do: judge fewer than ``MIN_EVENTS`` sounds; of more than
``MAX_EVENTS`` it averages an even subset.

The drift (``EventAverage.drift``): the aligner's windows tie a recording at the onsets its background lets through,
found late by what it hid, and their line through them can be tens of ppm off (its 1-sigma as large: a held-out
sound recording in babble under mains hum, 91 ppm off, 27 ms over its 5 minutes).  A sharp rise departs where its
sounds start in every part of the recording, so the departures of the parts' averages lie on the
drift the mapping missed (``Drift``); weighed against the windows' drift by their variances (``Drift.fused``), it is
taken out of the mapping (the file engine's ``Link.drift_fix``) before the whole recording's departure is found.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from synchub.agent.core.units import NS
from synchub.models.tones import without_steady_lines

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
START_LO, START_HI = 0.1, 0.4  # the rise's line: from a tenth to 0.4 of its peak's amplitude
FLOOR_MS = (60, 10)  # the level just before the rise: 60 .. 10 ms before its departure
START_SPREAD_MS = 10.0  # a start moved more than this (one sd) by resampling the sounds is not used
SHARP_MS = 8  # a rise up halfway (of its log) this soon after its departure is sharp: departure and start are one
LINE_MS = 10  # a rise from START_LO to START_HI of its peak in fewer bins: its start is where it passes START_LO
CONFIRM_SPREAD_MS = 2.0  # a sharp rise confirms a mapping only where resampling moves it by less (1 sd)
OTHER_RISE_MS = 10.0  # a departure further before the start than this is another rise (a cue, a swell before)
PART_EVENTS, MAX_PARTS = 20, 6  # the drift over the recording: a part per this many sounds, 3 .. MAX_PARTS of them
BIN_SIGMA_MS = 0.29  # a departure's error from its 1 ms bins (1 / sqrt(12)): its least, where crossed within one
START_SCATTER_MS = 7.2  # the start's scatter about true onsets (validation and calibration speech, 1 sd)
DC_SE = 6.0  # a piece's mean further from zero than this many of its standard errors is a DC offset
DC_BLOCKS, DC_PART = 16, 16  # the parts of a piece whose means say that error, of at least DC_PART samples
DC_MIN = 256  # a piece of fewer samples says that share of its channels' DC (``EventAverage._centred``)
SMOOTH_BINS = 5  # each bin's power is the mean of its own and the 4 before it (a trailing mean: a rise is never
# seen before it starts, only up to 4 ms after)


@dataclass(frozen=True)
class Departure:
    """``departure_ns``: where the average rises, from the mapped onsets (negative: before them); ``latest_ns``: the
    90th percentile of the resampled departures; ``events``: how many onsets the average holds; ``shift_ns``: what
    to add to the mapped onsets (0 where the rise is not clearly earlier, or further back than the limit);
    ``start_ns``: where the rise's line starts, where it was asked and is trusted (else None; the shift, unless the
    average rose before it: 0), and ``start_sigma_ns`` its spread over the resampled sounds; ``confirmed_sigma_ns``:
    a sharp rise within the gate of the mapped onsets whose resampled departures spread by under
    ``CONFIRM_SPREAD_MS`` (where it departs is where it starts, either way: the mapping confirmed), the departure's
    distance and that spread with one bin, in quadrature."""

    departure_ns: int
    latest_ns: int
    events: int
    shift_ns: int
    beyond_limit: bool = False  # clearly before (or sharply after) the mapped onsets, further than the limit: kept
    start_ns: int | None = None
    start_sigma_ns: float = 0.0
    confirmed_sigma_ns: float | None = None

    def uncertainty(self) -> tuple[float, bool]:
        """(the 1-sigma of what the check says of the mapping, whether it measured the bias the aligner's windows
        share, so that it takes the place of one window's sigma): a confirmed mapping's; the start of the sounds'
        rise moved to, its spread with ``START_SCATTER_MS``; one not moved to, as far as it is from where the mapping
        moved or stayed, added to that; a move to the departure, or one beyond the limit, half of it (what the
        average could not see may be as much again); a sharp rise after the mapped onsets beyond the limit, all of
        it (it is where the sounds start).  Meaningless where the check neither moved, confirmed nor found an
        earlier rise."""
        if self.confirmed_sigma_ns is not None:
            return self.confirmed_sigma_ns, True
        if self.start_ns is not None:
            start = float(np.hypot(self.start_sigma_ns, START_SCATTER_MS * 1e6))
            if self.shift_ns and self.shift_ns == self.start_ns:
                return start, True
            return float(np.hypot(self.start_ns - self.shift_ns, start)), False  # as far as it is from the mapping
        if self.beyond_limit and self.departure_ns > 0:  # a sharp rise after the mapped onsets is where they start
            return float(self.departure_ns), False
        return abs(self.departure_ns) / 2.0, False


@dataclass(frozen=True)
class Drift:
    """The departures of the sounds' rise over ``parts`` parts of the recording on a line: ``ppm`` (positive: the rise
    departs later from the mapped onsets the later they are, the mapping runs early by that), its 1-sigma, and the
    time (reference clock) about which the line is taken."""

    ppm: float
    sigma_ppm: float
    at_ns: int
    parts: int

    def fused(self, windows_sigma_ppm: float) -> tuple[float, float]:
        """(the correction to the windows' drift, ppm; the 1-sigma of the drift after it): the two weighed by their
        variances (the windows' drift is the prior, this the measurement of what it missed)."""
        w, p = windows_sigma_ppm ** 2, self.sigma_ppm ** 2
        return self.ppm * w / (w + p), float(np.sqrt(w * p / (w + p)))


def _departure(power: np.ndarray, fine: bool = False) -> tuple[float, int] | None:
    """Bins from the window's start to the first bin of the rise of the events' mean log power without each bin's
    loudest ``TRIM_TOP`` of the sounds (power: events x bins; ``fine``: to where it crossed into that bin), or None for
    no clear rise.  Not the plain mean: it jumps with the few sounds that start early (a log's latency jitter) and would
    mark the earliest onset.  The level's noise is that average's standard error over the sounds before the onsets (a
    background whose level swings slowly moves every bin of one sound alike: the spread between sounds sees it, the
    spread between bins would not).  The rise is the one of the peak nearest after the mapped onsets: a cue before each
    sound is not it."""
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
    thr = b + K_SIGMA * s
    below = np.nonzero(avg[lo : rise + 1] <= thr)[0]
    if not len(below):
        return None  # above the level all along: no departure seen
    d = lo + int(below[-1]) + 1
    if fine:  # where the average crossed the level between the bin below it and the first above (not that bin)
        return d - 1 + float(np.clip((thr - avg[d - 1]) / (avg[d] - avg[d - 1]), 0.0, 1.0)), rise
    return d, rise


def _start(power: np.ndarray, departure: int) -> float | None:
    """Bins from the window's start to where the events' rise starts (see the module docstring), or None: each
    sound's power less its level before the onsets, each bin without its loudest ``TRIM_TOP`` (a centred mean of
    ``SMOOTH_BINS``: a fitted line needs no causality), less the level just before the ``departure`` (the gap before
    a sound is often quieter than the level further back, which holds the sound before), as an amplitude; the line
    through it between ``START_LO`` and ``START_HI`` of the peak nearest after the mapped onsets, going back from
    the peak, where it is zero."""
    end, h = BEFORE_MS - BASE_END_MS, SMOOTH_BINS // 2
    c = np.cumsum(np.pad(np.pad(power, ((0, 0), (h, h)), mode="edge"), ((0, 0), (1, 0))), axis=1)
    s = (c[:, SMOOTH_BINS:] - c[:, :-SMOOTH_BINS]) / SMOOTH_BINS
    s -= np.median(s[:, :end], axis=1, keepdims=True)
    m = np.sort(s, axis=0)[: len(s) - int(TRIM_TOP * len(s))].mean(axis=0)
    a0, a1 = max(0, departure - FLOOR_MS[0]), departure - FLOOR_MS[1]
    if a1 - a0 < FLOOR_MS[1]:
        return None
    a = np.sqrt(np.maximum(m - float(np.median(m[a0:a1])), 0.0))
    peak = end + int(np.argmax(a[end : BEFORE_MS + BASE_END_MS]))
    top = float(a[peak])
    if not top > 0:
        return None
    hi = peak
    while hi > end and a[hi - 1] > START_HI * top:
        hi -= 1
    lo = hi
    while lo > end and a[lo - 1] > START_LO * top:
        lo -= 1
    if hi - lo < LINE_MS:  # too steep for a line: its start is where it passes a tenth of its peak
        return float(lo)
    slope, at0 = np.polyfit(np.arange(lo, hi + 1, dtype=np.float64), a[lo : hi + 1], 1)
    return -at0 / slope if slope > 0 else None


def _line(power: np.ndarray, departure: int, draws: list, boots: list) -> tuple[int, float, float] | None:
    """Where the line of the rise starts (``_start``), from the mapped onsets (ns), its spread over the resampled
    sounds (``draws``, with their departures: ``boots``) and their 90th percentile (ns); None where fewer than half
    the resamplings give one or they spread by more than ``START_SPREAD_MS``."""
    start = _start(power, departure)
    starts = [] if start is None else [x for x in (_start(power[draws[i]], b) for b, i in boots) if x is not None]
    if len(starts) < BOOTS // 2 or np.std(starts) > START_SPREAD_MS:
        return None
    return (int(round((start - BEFORE_MS) * BIN_NS)), float(round(float(np.std(starts)) * BIN_NS)),  # whole ns
            (float(np.percentile(starts, 90)) - BEFORE_MS) * BIN_NS)


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
        self.dc: np.ndarray | None = None  # each channel's DC offset (``_centred``)

    def add(self, t_ns, x) -> None:
        """Samples ``x`` at ``t_ns`` (reference clock, in time order); their power is the mean over the channels
        (as the aligner's onsets take it), each channel less its DC (``_centred``)."""
        t = np.asarray(t_ns, dtype=np.int64)
        if not len(t) or not len(self.onsets):
            return
        x = self._centred(np.asarray(x, dtype=np.float64).reshape(len(t), -1))
        if len(t) > 1:  # mains hum raises the level the rise must stand out of (``tones``)
            x = without_steady_lines(x, NS / float(np.median(np.diff(t))), t)[0]
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

    def _centred(self, x: np.ndarray) -> np.ndarray:
        """``x`` less each channel's DC offset, its mean over the piece (a cheap microphone's ADC; it held the
        average's level before the onsets up: held-out sound effects at 0 dB SNR, 1 ms off without it, were 5 ms
        early with 2 % of full scale, 11 and 19 ms late with 20 %, where the rise was not found; the mean, not the
        median: a quiet recording truncated to 16 bits flips between 0 and -1 where silent, half a step of offset,
        and its median is one of the two); of a piece of under ``DC_MIN`` samples, a share as large as the piece of
        it blended into the last one (a stream read in short chunks follows a wandering offset as a long piece
        does).  A mean within ``DC_SE`` standard errors of zero is no offset (a centred signal's, subtracted, would
        only add that error): the error from the means of ``DC_BLOCKS`` parts of the piece, which a sound's slow
        swings move together (babble at 0 dB SNR, taken sample by sample as independent, had its 4 s pieces read as
        offsets)."""
        xf = x[np.isfinite(x).all(axis=1)]
        n = len(xf)
        if n >= 4 * DC_PART:
            dc = np.mean(xf, axis=0)
            parts = np.array([np.mean(p, axis=0) for p in np.array_split(xf, min(DC_BLOCKS, n // DC_PART))])
            se = np.std(parts, axis=0, ddof=1) / np.sqrt(len(parts))
            dc = np.where(np.abs(dc) > DC_SE * se, dc, 0.0)
            fresh = self.dc is None or len(self.dc) != x.shape[1]
            self.dc = dc if fresh else self.dc + min(1.0, n / DC_MIN) * (dc - self.dc)
        return x if self.dc is None or len(self.dc) != x.shape[1] else x - self.dc

    def _rows(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(which onsets' windows the pieces covered whole, their mean power per bin), or None for fewer than
        ``MIN_EVENTS``."""
        whole = np.all(self.counts > 0, axis=1)
        if np.count_nonzero(whole) < MIN_EVENTS:
            return None
        return whole, self.sums[whole].astype(np.float64) / self.counts[whole]

    def drift(self, seed: int = 0) -> Drift | None:
        """The drift of the sounds' rise over the recording: its departure (``_departure``) in each of 3 to
        ``MAX_PARTS`` parts of the sounds in time order (one per ``PART_EVENTS``, each of ``MIN_EVENTS`` or more), each
        with the spread of the resampled sounds' (and its bin's), on a weighted line (its sigma widened by the parts'
        scatter about it where that is larger).  None where a part shows no rise or most parts' rises are slow: a slow
        rise departs where it stands out of the background, which swings from part to part (speech: two halves'
        departures 15 ms apart on a held-out recording whose drift was 10 ms off over them); a sharp one departs where
        it starts (sound effects at 0-30 dB SNR, 300 s, 6 held-out and 5 calibration recordings and one under mains hum:
        2-5 ppm of 1-sigma, 12-31 on three, the drift the windows missed within it on all 12; 95 ppm seen where they
        missed 92)."""
        rows = self._rows()
        if rows is None or len(rows[1]) < 3 * MIN_EVENTS:
            return None
        whole, power = rows
        on = self.onsets[whole]
        k = int(np.clip(len(power) // PART_EVENTS, 3, MAX_PARTS))
        rng = np.random.default_rng(seed)
        deps, sig, at, sharp = [], [], [], 0
        for part in np.array_split(np.arange(len(power)), k):
            p = power[part]
            found = _departure(p, fine=True)
            boots = [b[0] for b in (_departure(p[rng.integers(0, len(p), len(p))], True) for _ in range(BOOTS // 2))
                     if b is not None]
            if found is None or len(boots) < BOOTS // 4:
                return None
            deps.append(float(found[0]))
            sig.append(float(np.hypot(np.std(boots), BIN_SIGMA_MS)))
            at.append(float(np.mean(on[part] - on[0])))
            sharp += found[1] - found[0] < SHARP_MS
        if 2 * sharp <= k:
            return None
        centre = float(np.mean(at))
        a = np.column_stack([np.ones(k), (np.array(at) - centre) / NS])
        w = 1.0 / np.square(sig)
        cov = np.linalg.inv(a.T @ (a * w[:, None]))
        beta = cov @ (a.T @ (w * np.array(deps)))
        chi2 = float(np.sum(w * np.square(np.array(deps) - a @ beta))) / (k - 2) if k > 2 else 1.0
        # ms of departure per s of recording: x 1000 ppm
        return Drift(float(beta[1]) * 1e3, float(np.sqrt(cov[1, 1] * max(1.0, chi2))) * 1e3,
                     int(on[0]) + int(round(centre)), k)

    def departure(self, limit_ns: float = float("inf"), spread_ns: float = 0.0, seed: int = 0) -> Departure | None:
        """Where the average rises (see the module docstring); None with fewer than ``MIN_EVENTS`` whole windows or
        no clear rise.  No shift further than ``limit_ns`` (what the mapping's own uncertainty allows: a rise
        further back is another sound, a cue before the one logged, not this one's hidden start), nor for a rise
        less than ``GATE_MS`` or 1.5 x ``spread_ns`` (the log lines' own one-sigma scatter: the earliest tenth of the
        sounds of a log that scatters starts about that much before its typical one) before the mapped onsets
        (nor for a slow rise's start that is not: ``_line``'s 90th percentile)."""
        rows = self._rows()
        if rows is None:
            return None
        power = rows[1]
        found = _departure(power)
        if found is None:
            return None
        d, half = found
        rng = np.random.default_rng(seed)
        draws = [rng.integers(0, len(power), len(power)) for _ in range(BOOTS)]
        boots = [(b[0], i) for i, b in enumerate(_departure(power[x]) for x in draws) if b is not None]
        if len(boots) < BOOTS // 2:
            return None
        dep_ns = (d - BEFORE_MS) * BIN_NS
        deps = [b for b, _ in boots]
        latest = int(round((float(np.percentile(deps, 90)) - BEFORE_MS) * BIN_NS))
        gate = -max(GATE_MS * BIN_NS, 1.5 * spread_ns)
        sharp = half - d < SHARP_MS  # up halfway (of its log) within SHARP_MS of its departure: that is its start
        if not latest < gate:  # not clearly before the mapped onsets
            spread = float(np.std(deps)) * BIN_NS
            if sharp and abs(dep_ns) <= -gate and spread <= CONFIRM_SPREAD_MS * BIN_NS:
                # a sharp rise, found again by every resampling, where the sounds are mapped: the mapping confirmed
                return Departure(dep_ns, latest, len(power), 0,
                                 confirmed_sigma_ns=float(round(float(np.hypot(np.hypot(spread, dep_ns), BIN_NS)))))
            earliest = (float(np.percentile(deps, 10)) - BEFORE_MS) * BIN_NS
            if sharp and earliest > -gate:
                # a sharp rise clearly after the mapped onsets (nine in ten resamplings): where the sounds start,
                # so the windows' mapping is early (an 8 kHz recording's, 17 ms under a 5 ms sigma): moved
                # later to it, as far as the mapping's uncertainty allows
                early = Departure(dep_ns, latest, len(power), dep_ns)
                return early if dep_ns <= limit_ns else replace(early, shift_ns=0, beyond_limit=True)
            kept = Departure(dep_ns, latest, len(power), 0)
            # the line's resamplings only where it may decide: a slow rise departing before the mapped onsets
            line = None if sharp or not (dep_ns < 0 and np.median(deps) < BEFORE_MS) else _line(power, d, draws, boots)
            if line is None:
                return kept
            # a slow rise that departs before the mapped onsets, not clearly (fewer sounds, a noisier average): its
            # line decides, moved to only where it starts clearly before them
            st = replace(kept, start_ns=line[0], start_sigma_ns=line[1])
            return replace(st, shift_ns=st.start_ns) if line[2] < gate and dep_ns > st.start_ns >= -limit_ns else kept
        moved = Departure(dep_ns, latest, len(power), dep_ns)
        line = None if sharp else _line(power, d, draws, boots)
        if line is not None:
            st = replace(moved, start_ns=line[0], start_sigma_ns=line[1])
            if st.start_ns - dep_ns > OTHER_RISE_MS * BIN_NS:
                # the average rose well before its sounds' own rise (a cue, or a swell of what comes before each
                # sound): that rise decides, moved to only where it starts clearly before the mapped onsets
                return replace(st, shift_ns=st.start_ns if line[2] < gate and -st.start_ns <= limit_ns else 0)
            if dep_ns > st.start_ns and line[2] >= -limit_ns:  # within the limit for a tenth of the resampled
                # starts or more (a held-out 8 kHz recording of speech in babble, 68 ms late: its start
                # 70 ms back, the limit 68; it was moved to the departure, 32)
                return replace(st, shift_ns=st.start_ns)
            if dep_ns > st.start_ns:  # its start further back than the limit: the distance to it is uncertainty
                moved = st
        return moved if -dep_ns <= limit_ns else replace(moved, shift_ns=0, beyond_limit=True)
