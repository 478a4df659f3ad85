"""The aligner as a trigger-wired stream's fallback: when its trigger edges stop, aligner offsets map it.  Pure.

A stream whose device also sees a trigger line is mapped by its edges (microseconds).  Its aligner's offsets
(milliseconds, and late by the pair's latency that no window shows) must not pull that path, nor start a new clock
segment where they disagree with it; but when the wire is pulled or the trigger box stops, they are all the stream
has left.  ``TriggerFallback`` (one per wired stream's ``ClockModel``) says what each offset does:

* while the segment's trigger evidence is **fresh** (an accepted edge pair within ``stale_ns`` of the newest
  device time the stream has shown; a segment without edges yet gets ``stale_ns`` from its start), offsets never
  reach a filter, so they can neither move the model nor start a segment.  Each one the trigger path covers (its
  device time between the segment's first and last edge, the path's 1-sigma there within ``MAX_TRIGGER_UNC_NS``)
  is **measured** against it: aligner offset - trigger-path offset, the pair's latency so far this session;
* when it goes **stale**, offsets of windows after the last edge, corrected by that latency (``robust_median`` of
  the measurements; its sigma joins the error every window shares, ``OffsetEstimate.shared_ns``), go into the
  segment's **fallback bank**: a copy of the trigger path's filter bank taken then (``start``), so the aligner
  continues the trigger path's offset and drift instead of starting over (with no latency measured, its offset is
  opened by ``UNMEASURED_LATENCY_NS``: the offsets set the level, the edges' drift stays).  Its steps never start a
  segment: a run of offsets that agree with each other beyond its gate (the clock wandered further than the
  edges' drift foretold) reopens it by that much instead; the trigger bank never sees an offset;
* when edges come back, the trigger bank (which predicted across the gap, as after any pause) takes them and the
  fallback bank is dropped: the trigger path takes over again, in the same segment.

A latency an earlier session stored for the pair (``synchub.agent.pipeline.latency_io``) is the ``prior`` until this
session has measured its own.  Without either, the offsets count as ``UNMEASURED_LATENCY_NS`` off: they set the
level only where the trigger path's extrapolation is worse than that.  ``events`` says each change once (the agent logs them).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections import deque

import numpy as np

from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.units import NS

from .bank import FilterBank

#: A trigger path looser than this (1-sigma) at an offset's device time measures no latency.
MAX_TRIGGER_UNC_NS = 1_000_000
#: Measurements that must agree before a latency is stored (``synchub.agent.align.latency``), and the MAD multiple
#: beyond which one is an outlier (a window whose aligner picked a look-alike peak).
MIN_WINDOWS = 8
#: ... and before this session's measurement corrects the fallback's offsets (its sigma says how well it is known;
#: the first minute of a session gives about this many).
FALLBACK_MIN_WINDOWS = 5
OUTLIER_MADS = 4.0
MAD_SIGMA = 1.4826  # x MAD estimates a normal sigma
#: Without a measured latency the aligner's offsets may sit this far off the trigger path (a video frame, an audio
#: buffer): the fallback bank's offset is opened by it, so that they set its level (its drift stays the edges').
UNMEASURED_LATENCY_NS = 100_000_000
#: Measurements kept (the newest: 30 minutes of 4 s hops).
KEEP = 450
#: Without a configured time: a trigger line is stale after this many periods without a pair, and never sooner
#: than ``MIN_STALE_NS`` (an aperiodic line: ``APERIODIC_STALE_NS``).
STALE_PERIODS = 5
MIN_STALE_NS = 3 * NS
APERIODIC_STALE_NS = 10 * NS


def default_stale_ns(period_ns: int, configured_s: float = 0.0) -> int:
    """How long a trigger line may go without an accepted pair before its stream falls back on its aligner."""
    if configured_s > 0:
        return int(round(configured_s * NS))
    if period_ns <= 0:
        return APERIODIC_STALE_NS
    return max(STALE_PERIODS * int(period_ns), MIN_STALE_NS)


def robust_median(diffs, min_n: int) -> tuple[int, int, int] | None:
    """(median, its 1-sigma, how many kept) of the values within ``OUTLIER_MADS`` of the median, or None with fewer
    than ``min_n`` of them.  Consecutive aligner windows overlap and share events: they count as half as many
    independent ones in the sigma (the median's standard error, 1.253 sigma / sqrt(n))."""
    d = np.asarray(diffs, dtype=np.float64)
    if len(d) < min_n:
        return None
    med = float(np.median(d))
    mad = float(np.median(np.abs(d - med)))
    keep = d[np.abs(d - med) <= OUTLIER_MADS * max(MAD_SIGMA * mad, 1_000.0)]  # >= 1 us: a tie is no spread
    if len(keep) < min_n:
        return None
    med = float(np.median(keep))
    spread = max(MAD_SIGMA * float(np.median(np.abs(keep - med))), 1.0)
    sigma = 1.2533 * spread / math.sqrt(max(len(keep) / 2.0, 1.0))
    return int(round(med)), max(1, int(round(sigma))), len(keep)


class TriggerFallback:
    """See the module docstring.  ``stale_ns``: ``default_stale_ns``.  Holds no segment; the model asks it."""

    def __init__(self, stale_ns: int, min_windows: int = FALLBACK_MIN_WINDOWS, prior: tuple[int, int] | None = None):
        if stale_ns <= 0:
            raise ValueError("stale_ns must be > 0")
        self.stale_ns = int(stale_ns)
        self.prior = prior  # (latency, 1-sigma) an earlier session stored for the pair: until this one measures it
        self.min_windows = int(min_windows)
        self.diffs: deque[int] = deque(maxlen=KEEP)
        self.active = False  # offsets map the stream now
        self.fed = 0  # offsets the fallback banks took
        self.events: list[str] = []

    def fresh(self, seg, device_ns: int) -> bool:
        """Whether the segment's trigger evidence is fresh at the newest device time the stream has shown."""
        last = seg.last_edge_ns if seg.last_edge_ns is not None else seg.dev0
        return max(int(seg.dev_hi), int(device_ns)) - last <= self.stale_ns

    @staticmethod
    def covered(seg, device_ns: int) -> bool:
        """The segment's edges span this device time (its trigger path interpolates there)."""
        return seg.first_edge_ns is not None and seg.first_edge_ns <= device_ns <= seg.last_edge_ns

    def measure(self, aligner_offset_ns: int, trigger_offset_ns: int) -> None:
        self.diffs.append(int(aligner_offset_ns) - int(trigger_offset_ns))

    def latency(self) -> tuple[int, int, int] | None:
        """(latency, its 1-sigma, windows) measured so far this session, else the stored ``prior`` (0 windows), or
        None before ``min_windows`` agree and without a prior."""
        lat = robust_median(self.diffs, self.min_windows)
        if lat is None and self.prior is not None:
            return int(self.prior[0]), max(1, int(self.prior[1])), 0
        return lat

    def correct(self, est: OffsetEstimate) -> OffsetEstimate:
        """The offset less the latency, whose sigma joins the error every window shares (none known: the offsets
        count as ``UNMEASURED_LATENCY_NS`` off, so a trigger path extrapolated well still wins by variance)."""
        lat = self.latency()
        off, extra = (est.offset_ns, UNMEASURED_LATENCY_NS) if lat is None else (est.offset_ns - lat[0], lat[1])
        return dataclasses.replace(est, offset_ns=off, shared_ns=max(1, int(round(math.hypot(est.shared_ns, extra)))))

    def start(self, name: str, trig: FilterBank) -> FilterBank:
        """The fallback bank of a segment whose trigger went stale: the trigger bank as it is now (a step in it is
        never a segment: the model re-anchors the bank, ``ClockModel._fallback_offset``).  Says so once."""
        bank = copy.deepcopy(trig)
        bank.step, bank._bad = [], []
        # how steady the clock was while edges came says little of the pause: the offsets decide anew
        bank.ll[:] = 0.0
        bank._best = bank._mix = None
        lat = self.latency()
        if lat is None and bank.n:
            bank.reopen(float(UNMEASURED_LATENCY_NS) ** 2, 0.0)
        if not self.active:
            self.active = True
            how = (f"latency {lat[0] / 1e6:+.2f} +- {lat[1] / 1e6:.2f} ms, "
                   + (f"{lat[2]} windows this session" if lat[2] else "stored by an earlier session")
                   if lat is not None else
                   f"latency not measured ({len(self.diffs)} windows against the trigger path), none stored")
            self.events.append(f"trigger lost on {name}: aligner fallback ({how})")
        return bank

    def edges_back(self, name: str) -> None:
        if self.active:
            self.active = False
            self.events.append(f"trigger back on {name}: trigger path again ({self.fed} aligner windows used)")

    def take_events(self) -> list[str]:
        out, self.events = self.events, []
        return out

    def state(self) -> dict:
        lat = self.latency()
        return {"active": self.active, "stale_ns": self.stale_ns, "fed": self.fed, "measured": len(self.diffs),
                **({"latency_ns": lat[0], "latency_sigma_ns": lat[1], "latency_windows": lat[2]} if lat else {}),
                **({"stored_latency_ns": int(self.prior[0])} if self.prior is not None else {})}
