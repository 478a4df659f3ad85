"""How an aligner link of ``synchub align`` judges its windows' offsets once the input is read, and feeds its clock
model with them (``links.aligner_link``'s last part).  Pure.

All together (``clock.robust.robust_weighed``: windows off the robust line left out, the rest weighed by their
scatter beyond their sigmas; ``onto_robust_slope``: the drift of their unweighted robust line), refused where they
do not agree on one recording's offset (``incoherent``).  Where the windows left out as off the drift line lie on a
line of their own after a step (``align.steps``: samples lost in one recording, a clock that jumped), each side is
judged on its own and the model starts a new segment at the step; times between the two windows around it carry
the step in their uncertainty (``Link.steps``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from synchub.agent.clock.model import ClockModel
from synchub.agent.clock.robust import onto_robust_slope, robust_weighed, theil_sen, weighted_line
from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.units import NS

from ..steps import MIN_SIDE, Step, split_at_steps

STEP_NOTE = "the offset steps by"  # how a link's note of a step starts (the engine warns of it) ...
DISPUTE_NOTE = "its line is disputed"  # ... and of a span its windows dispute (``disputed``)


def judge_windows(link, model: ClockModel, found: list[OffsetEstimate], offline: list[OffsetEstimate],
                  overlap: float, rate: float = 0.0, window_ns: int = 0) -> None:
    """``link`` (a ``links.Link``) from the accepted windows ``found`` (of ``window_ns`` each) and those the drift
    tracker left out ``offline`` (see the module docstring); ``link.models`` emptied, with the reason first in its
    notes, where the windows are refused."""
    pieces, steps = split_at_steps(found + offline) if offline else ([found], [])
    if not steps:
        pieces = [found]
    kept_all: list[OffsetEstimate] = []
    judged_all: list[OffsetEstimate] = []
    tau_max, dropped_all, longest = 0.0, 0, []
    for i, piece in enumerate(pieces):
        judged, tau, dropped = robust_weighed(piece, overlap)
        why = incoherent(judged, rate)
        if why:
            link.notes.insert(0, why)
            link.models = {}
            return
        kept = onto_robust_slope(judged)  # the drift of their robust line (a sigma-weighted one follows confident few)
        if i:
            model.reset_detected((steps[i - 1].lo_ns + steps[i - 1].hi_ns) // 2)  # the far side: a segment of its own
        for ev in kept:
            model.add_offset(ev)
        kept_all += kept
        judged_all += judged
        tau_max, dropped_all = max(tau_max, tau), dropped_all + dropped
        longest = kept if len(kept) > len(longest) else longest
    link.scatter_ns = tau_max
    hop = float(np.median(np.diff([e.device_ns for e in pieces[0]]))) if len(pieces[0]) > 1 else 0.0
    # the windows' own events decide which side a window spanning the step takes: about its centre, give or take
    # a hop of them
    link.steps = [dataclasses.replace(s, lo_ns=int(s.lo_ns - hop), hi_ns=int(s.hi_ns + hop)) for s in steps]
    for s in link.steps:
        link.notes.append(f"{STEP_NOTE} {s.size_ns / 1e6:+.0f} ms between {s.lo_ns / NS:.1f} and "
                          f"{s.hi_ns / NS:.1f} s of its clock (samples lost in one of the recordings, or a clock that "
                          "jumped): each side tied on its own, the times in between uncertain by the step")
    if kept_all:
        link.window_sigma_ns = float(np.median([f.sigma_ns for f in kept_all])) / max(1.0, overlap) ** 0.5
        at = [f.device_ns for f in kept_all]
        link.span_ns = max(at) - min(at) + window_ns
        minutes = f" over a minute, {link.shared_ns / 1e6:.1f} ms over the {link.span_ns / NS / 60:.1f} minutes " \
                  "they span" if link.shared_ns < link.window_sigma_ns else ""
        link.notes.append(f"uncertainty at least one window's sigma ({link.window_sigma_ns / 1e6:.1f} ms: a bias the "
                          f"windows of a minute share does not average out){minutes}, calibrated "
                          f"x{link.calibration[0]:.2f}")
    if dropped_all:
        link.notes.append(f"{dropped_all} window{'s' if dropped_all > 1 else ''}: off the robust line through all of "
                          "them")
    if tau_max > 0:
        link.notes.append(f"the windows scatter {tau_max / 1e6:.1f} ms beyond their sigmas: weighed so")
    link.drift_sigma_ppm = drift_sigma(longest, overlap)
    every = sorted(found + offline, key=lambda e: e.device_ns)  # the judged ones among them
    d = np.array([e.device_ns for e in every], dtype=np.int64)
    line = model.map(d, smooth=True)[0] - d  # the line's offset at each window (a function of its time alone)
    at = dict(zip(d.tolist(), line.tolist(), strict=True))
    link.residuals = [(f.device_ns, f.offset_ns - at[f.device_ns]) for f in judged_all]
    off = np.array([e.offset_ns for e in every], dtype=np.float64) - line
    link.disputed = disputed(every, off, {e.device_ns for e in kept_all}, hop)
    for s in link.disputed:
        link.notes.append(f"{DISPUTE_NOTE} between {max(s.lo_ns, d[0]) / NS:.1f} and {min(s.hi_ns, d[-1]) / NS:.1f} "
                          f"s of its clock: its windows there, left out, agree on an offset {s.size_ns / 1e6:+.1f} ms "
                          "from it (a loss or jump too small to tie on its own, or a second match); the times there "
                          "uncertain by it")


#: A run of at least ``MIN_SIDE`` windows in a row left out of the line, each over this many of its sigmas off it on
#: one side, agreeing with one another (within half their median distance), disputes the line where they are.
#: A 180 s WAV of tone bursts that lost 10 ms at 36 s: the 6 windows before it, 3 sigmas off, too few to cut there
#: (``align.steps``), were left out, and the lines before the loss mapped 10 ms off under 1.5 ms.
DISPUTE_X = 2.0


def disputed(every: list[OffsetEstimate], off: np.ndarray, kept_at: set[int], hop: float) -> list:
    """Where the windows ``every`` (time order; ``off``: each one's offset from the link's line) left out of the line
    (their device times not in ``kept_at``) dispute it (``DISPUTE_X``): ``Step``s whose size is the run's median
    distance, from the line's last window before the run to its first after (a ``hop`` either side, as a step's), to
    the recording's end where the line has none beyond the run."""
    sig = np.array([e.sigma_ns for e in every], dtype=np.float64)
    left = np.array([e.device_ns not in kept_at for e in every], dtype=bool)
    far = left & (np.abs(off) > DISPUTE_X * sig)
    out, k = [], 0
    while k < len(every):
        m = k
        while m < len(every) and far[m] and np.sign(off[m]) == np.sign(off[k]):
            m += 1
        run = off[k:m]
        if m - k >= MIN_SIDE and np.max(np.abs(run - np.median(run))) <= 0.5 * abs(float(np.median(run))):
            before, after = np.nonzero(~left[:k])[0], m + np.nonzero(~left[m:])[0]
            lo = every[before[-1]].device_ns - hop if len(before) else -(2 ** 62)
            hi = every[after[0]].device_ns + hop if len(after) else 2 ** 62
            out.append(Step(int(lo), int(hi), int(round(float(np.median(run))))))
        k = max(m, k + 1)
    return out


#: Windows whose offsets scatter further than this about their robust line (the median |residual|, ns), or lie on
#: a line steeper than this (ppm: no crystal drifts so) that moves twice that over them, are chance peaks, not a
#: recording's offset: a log of sounds the microphone did not hear had 4 of 28 windows accepted, 1.5-3 s apart, too
#: few for the robust judge (``MIN_JUDGED``) to leave any out.
INCOHERENT_NS = 100_000_000
INCOHERENT_PPM = 2000.0


def incoherent(evs: list[OffsetEstimate], rate: float = 0.0) -> str:
    """Why the windows' offsets are not one recording's offset (see ``INCOHERENT_NS``), or "".  ``rate``: the drift
    the whole recording's events showed (``coarse.coarse_fit``): the steepness is judged against it."""
    if len(evs) < 2:
        return ""
    d = np.array([e.device_ns for e in evs], dtype=np.int64)
    x = (d - d[0]).astype(np.float64) / NS
    y = np.array([e.offset_ns - evs[0].offset_ns for e in evs], dtype=np.float64)
    a, b = theil_sen(x, y)
    spread = float(np.median(np.abs(y - a - b * x)))
    off = abs(b - rate * 1e9)  # ns/s off the whole recording's rate
    steep = off / 1e3 > INCOHERENT_PPM and off * float(x[-1]) > 2 * INCOHERENT_NS  # and far along it
    if spread <= INCOHERENT_NS and not steep:
        return ""
    return (f"the {len(evs)} windows that found an offset do not agree on one ({spread / 1e6:.0f} ms off their "
            f"line, drift {b / 1e3:.0f} ppm): chance peaks, not this recording's offset")


def drift_sigma(evs: list[OffsetEstimate], overlap: float = 1.0) -> float | None:
    """1-sigma (ppm) of the drift of window offsets: the weighted least-squares slope's (each window by its sigma),
    scaled by the residuals' reduced chi-square (what they scatter, not what their sigmas say: those carry the
    table's floor for a bias the windows share, which moves no slope), times ``overlap`` (window / hop: overlapping
    windows share events, and their scatter about the line shows one window's part of it).  Old behaviour: scaled
    only up, the 1-sigma covered 92-100 % of the drift errors on the corpus's 300 s recordings (now 77-92 %).  None
    with fewer than three windows or no spread in time."""
    if len(evs) < 3:
        return None
    d = np.array([e.device_ns for e in evs], dtype=np.int64)
    o = np.array([e.offset_ns for e in evs], dtype=np.int64)
    x, y = (d - d[0]).astype(np.float64) / NS, (o - o[0]).astype(np.float64)  # epoch-sized times stay exact
    w = 1.0 / np.maximum(np.array([e.sigma_ns for e in evs], dtype=np.float64), 1.0) ** 2
    line = weighted_line(x, y, w)
    if line is None:
        return None
    a, b, var_b = line
    chi2 = float(np.sum(w * (y - a - b * x) ** 2)) / (len(evs) - 2)
    return math.sqrt(chi2 * var_b * max(1.0, overlap)) / 1e3  # ns per s of device time -> ppm
