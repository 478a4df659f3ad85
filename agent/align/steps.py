"""Steps in a link's window offsets: where one recording lost a stretch of its samples (a USB microphone's dropout,
a logger that skipped), or its clock jumped, the offsets after it lie on a line of their own.  Pure.

A WAV's time is its sample index: 200 ms of samples lost at 150 s puts everything after 150 s 200 ms early on its
own clock, and a marker log tied to it by one line through all windows was mapped 200 ms off after the loss with a
2 ms uncertainty (the windows after it were left out as "off the drift line", the line fitted to those before).
``split_at_steps`` finds such steps in the windows' offsets (accepted and left out alike, in time order): the split
that leaves the fewest windows off the two sides' robust lines (Theil-Sen; ``_best_split``), kept where each side holds
``MIN_SIDE`` windows, the two lines part by more than ``MIN_STEP_NS``, ``STEP_X`` times that residual and
``SIGMA_X`` times the windows' median sigma at the split, and the cut puts at least ``MIN_SIDE`` windows off one line
on lines; then each side again (at most ``MAX_STEPS``).  A window that spans the step takes the side most of its
events are on: the step lies about between the centres of the last window before it and the first after
(``Step.lo_ns``..``hi_ns``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synchub.agent.clock.robust import theil_sen
from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.units import NS

MIN_SIDE = 4  # windows on each side of a step
#: A step is over 5 ms, four times the windows' scatter about the two lines and one window's stated sigma.  Over
#: 10 ms and four sigmas before (2026-11-29): a 10 ms loss in a WAV of tone bursts (windows stating 3.7 ms, scattering
#: 0.1) was not found and every line after it mapped 10.7 ms late.  Now 7-10 ms losses there are found wherever they
#: are; 3-6 ms ones are not (the windows it puts back on lines count in stated sigmas, and are searched only where the
#: drift tracker left some out), and leave up to 29 lines 3-7 ms off under 1.4-2.2 ms.  Counting them in the windows'
#: scatter found those, and a false 110 ms step in a 0 dB recording whose ambiguous windows (47 ms) lock onto two
#: lines: not kept.  Window offsets that wander 1 ms per window as a random walk (not seen in the corpus's recordings:
#: no step found in any) give a 6-9 ms step in 15 of 200 simulated; at 0.6 ms, 1 of 200.
MIN_STEP_NS = 5_000_000
STEP_X = 4.0
SIGMA_X = 1.0
MAX_STEPS = 4
CAP = 10.0  # a window's share of a cut's cost: its residual in sigmas, at most this
GRID = 60  # cuts tried first along a piece


@dataclass(frozen=True)
class Step:
    """The offset (reference - device) changes by ``size_ns`` between device times ``lo_ns`` and ``hi_ns`` (the
    centres of the last window before it and the first after)."""

    lo_ns: int
    hi_ns: int
    size_ns: int


def _side(evs: list[OffsetEstimate]) -> tuple[np.ndarray, float, float]:
    """(residuals about a Theil-Sen line through the windows, its intercept at device time 0, its slope per ns)."""
    d = np.array([e.device_ns for e in evs], dtype=np.float64)
    o = np.array([e.offset_ns for e in evs], dtype=np.float64)
    a, b = theil_sen((d - d[0]) / NS, o)
    return o - a - b * (d - d[0]) / NS, a - b * d[0] / NS, b / NS


def _best_split(evs: list[OffsetEstimate], force: bool = False) -> tuple[int, Step] | None:
    """Where to cut the windows: each side's windows off its own line count by their residual in their sigmas, up
    to ``CAP`` (a window on the wrong side of the cut counts fully: a median would not see a few).  None where the
    cut is no step (``force``: the best cut all the same)."""
    n = len(evs)
    if n < 2 * MIN_SIDE:
        return None
    sig = np.maximum(np.array([e.sigma_ns for e in evs], dtype=np.float64), 1.0)

    def cut(k: int) -> tuple[float, int, float, float]:
        (r1, a1, b1), (r2, a2, b2) = _side(evs[:k]), _side(evs[k:])
        at = 0.5 * (evs[k - 1].device_ns + evs[k].device_ns)
        return (float(np.sum(np.minimum(np.abs(np.r_[r1, r2]) / sig, CAP))), k, (a2 + b2 * at) - (a1 + b1 * at),
                float(np.median(np.abs(np.r_[r1, r2]))))

    stride = max(1, n // GRID)  # every stride-th cut, then every cut around the best of those (a long recording's
    best = min(cut(k) for k in range(MIN_SIDE, n - MIN_SIDE + 1, stride))  # thousands of windows)
    best = min(cut(k) for k in range(max(MIN_SIDE, best[1] - stride), min(n - MIN_SIDE, best[1] + stride) + 1))
    cost, k, size, spread = best
    whole = float(np.sum(np.minimum(np.abs(_side(evs)[0]) / sig, CAP)))  # one line through all of them
    sigma = float(np.median(sig[max(0, k - MIN_SIDE): k + MIN_SIDE]))
    step = Step(int(evs[k - 1].device_ns), int(evs[k].device_ns), int(round(size)))
    big = abs(size) > max(MIN_STEP_NS, STEP_X * spread, SIGMA_X * sigma)
    if force or (big and whole - cost >= MIN_SIDE * CAP / 2):
        return k, step
    return None


def split_at_steps(evs: list[OffsetEstimate]) -> tuple[list[list[OffsetEstimate]], list[Step]]:
    """The windows (any order) in time order, cut at the steps found (see the module docstring): (pieces, steps
    between them).  One piece and no step where there is none."""
    pieces = [sorted(evs, key=lambda e: e.device_ns)]
    steps: list[Step] = []
    changed = True
    while changed and len(steps) < MAX_STEPS:
        changed = False
        for i, piece in enumerate(pieces):
            found = _best_split(piece)
            if found is not None:
                k, step = found
                pieces[i:i + 1] = [piece[:k], piece[k:]]
                steps.append(step)
                changed = True
                break
    for i in range(len(pieces) - 1):  # each cut again between its two neighbours: a cut made before the next was
        both = pieces[i] + pieces[i + 1]  # found may sit a few windows off
        k, steps[i] = _best_split(both, force=True)
        pieces[i], pieces[i + 1] = both[:k], both[k:]
    return pieces, steps
