"""TriggerMatcher: pairs the edges a device saw on its own clock with the same edges on the reference clock.

Pure (no I/O).  Each side's edges first pass an ``EdgeFilter`` (``edge_filter``):

* out-of-order and duplicated edges (same time, or the same source sequence number) are rejected;
* pulse-width filter: with ``min_width_ns`` set, an edge whose pulse is narrower (width 0 included) or wider than
  ``max_width_ns`` is rejected (a glitch, a missed falling edge);
* periodic pulses: an edge arriving sooner than ``(1 - period_tol)`` of a period after the last good one, or off
  the period grid by more than ``period_tol`` of a period, is rejected as spurious (pulses 10x too fast are all
  rejected; missed edges are fine: the next good edge lands on the grid k periods later).  Three rejected edges
  that agree with each other on the grid re-anchor it (the first good edge was the spurious one).

Good edges wait in a small queue for their partner.  A device edge's reference time is predicted from the pairs
matched so far (a running line, rate refined as pairs arrive) and the partner is the single reference edge in a
window around the prediction.  Before the first pair, the prediction comes from a prior (``prior(device_ns) ->
(ref_ns, sigma_ns)``, e.g. the stream's clock model from arrival times or probes) where it tells a periodic line's
edges apart (4 sigma under half a period), else from the host receive times of the device's reports: with
``max_latency_ns`` given, the reference edge lies within it before each report; without it, the **causal lock**.
An aperiodic line's (events closer than the prior's window: a lick sensor, frames on demand) is the one offset
(device -> reference) at which its irregular intervals match: the most pending edges with a partner, more than chance
gives any (``APERIODIC_FALSE``); it wins over the prior.  A periodic line's is the latest offset that puts no pending
device edge after its own report, nor after the latest reference time its device time can have (``bound(device_ns)``,
e.g. the stream's arrival envelope: no sample is received before it is taken; not where it lies a second or more
before the report, the caller's model on another timeline; waited for up to ``BOUND_WAIT_NS``), and finds partners
for ``CAUSAL_EDGES`` of them; after a reset, the offset whose reports' least latency is the last lock's (the link's)
(``causal_lock``).
It is right where the least latency of the reports or of the stream's samples is under one period (a 100 Hz camera
strobe whose samples come 8-16 ms late); where both exceed it (a 1 kHz line, 1-2 ms late) the lock is whole periods
late, which no host time can tell: such a line wants barcodes.  ``state()`` says how the pairs began (``lock``) and
what a causal lock assumed (``lock_least_latency_ms``).  A window that holds two candidates is ambiguous and the edge
waits or expires; unmatched edges expire after ``max_wait_periods`` and are counted.  Barcodes
(``add_device_code``/``add_ref_code``) pair by value, with no ambiguity.

The device's clock may start a new timeline (a reset, a saved clock restored at reboot, a step): ``restart()``
forgets the pairs, the device side's grid and the device edges reported before the new timeline began, keeping the
reference edges, so that matching starts over from the prior (``StreamClocks`` calls it whenever the stream's clock
model starts a segment).  The matcher also restarts by itself when ``LOCK_LOST_EDGES`` device edges in a row (or
``LOCK_LOST_OF_WINDOW`` of the last ``LOCK_WINDOW``) find no partner where the pairs predict one while the reference
side goes on (the device's clock moved under it); the edges that found none are matched again from the prior, and an
aperiodic line's pattern from the reports alone (the stream's bound may still be the old timeline's).

Counts (``stats``) name every rejection; a rejected or unmatched edge never reaches the clock model.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable

from synchub.agent.core.evidence import TriggerEdge
from synchub.agent.core.units import NS

from .causal_lock import APERIODIC_TOL_NS, CAUSAL_EDGES, CausalLock, causal_lock
from .edge_filter import EdgeFilter

__all__ = ["EdgeFilter", "TriggerMatcher", "LOCK_LOST_EDGES"]

Prior = Callable[[int], "tuple[int, int] | None"]
Bound = Callable[[int], "int | None"]

#: Device edges in a row that expire unmatched (while pairs predict them) before the matcher starts over ...
LOCK_LOST_EDGES = 3
#: ... or this many of the last ``LOCK_WINDOW`` (a lock whose window now and then holds one wrong partner: after a
#: step of a few ms on an aperiodic line, edges 3-12 ms apart, every few edges found one and reset the count).
LOCK_LOST_OF_WINDOW = 6
LOCK_WINDOW = 8
#: A bound this far before its edge's report is of another timeline (a clock gone back, ``EdgeFilter``: 1 s): unused;
#: and how long (of reports) a periodic line's causal lock waits for a usable bound before it locks on reports alone.
BOUND_REACH_NS = BOUND_WAIT_NS = NS


class TriggerMatcher:
    """Pairs device-clock edges with reference-clock edges of one trigger line.

    ``add_device``/``add_ref`` take ``TriggerEdge`` items (or ``(t_ns, width_ns, seq, host_ns)`` tuples) and return
    the ``(device_ns, ref_ns)`` pairs completed so far.
    """

    def __init__(self, period_ns: int = 0, *, period_tol: float = 0.1, min_width_ns: int = 0, max_width_ns: int = 0,
                 polarity: int = 1, max_latency_ns: int = 0, max_wait_periods: float = 3.0,
                 prior: Prior | None = None, bound: Bound | None = None):
        self.period = int(period_ns)
        self.stats: dict[str, int] = {}
        kw = dict(period_ns=period_ns, period_tol=period_tol, min_width_ns=min_width_ns, max_width_ns=max_width_ns,
                  polarity=polarity, counts=self.stats)
        self.dev_filter = EdgeFilter(side="device", **kw)
        self.ref_filter = EdgeFilter(side="ref", **kw)
        self.max_latency = int(max_latency_ns) if max_latency_ns else (self.period // 2 if self.period else 0)
        self.max_wait = int(max_wait_periods * self.period) if self.period else 5_000_000_000
        self.prior = prior
        self.bound = bound
        self._causal = not max_latency_ns  # see the module docstring
        self._attempt: CausalLock | None = None  # the causal lock sought last; the first pair commits it
        self._bounds: dict[int, int | None] = {}  # ``bound`` of the pending device edges
        self._tried: tuple[int, int] | None = None  # the newest device edge a causal lock was sought with
        self._unbound_since: int | None = None  # report time since which the causal lock had no usable bound
        self._link_least = 0  # the reports' least latency at the last causal lock that paired, kept (ns)
        self._how = ""
        self.lock = ""  # how the current run of pairs began: "prior", "causal", "reports", "codes" ("": none yet)
        self.lock_least_latency_ns: int | None = None  # with "causal": what the lock assumes under one period
        self._dev: list[tuple[int, int]] = []  # (device_ns, host_ns)
        self._ref: list[int] = []
        self._pairs: list[tuple[int, int]] = []  # matched, for the running line (last few kept)
        self._first: tuple[int, int] | None = None
        self._codes_dev: dict[int, int] = {}
        self._codes_ref: dict[int, int] = {}
        self.matched = 0
        self.restarts = 0
        self._resid = 0.0  # running mean square of pair residuals against the prediction (ns^2)
        self._lost = 0  # device edges in a row that expired unmatched while the pairs predicted them
        self._outcomes: deque[bool] = deque(maxlen=LOCK_WINDOW)  # the last device edges while locked: expired?
        self._lost_lock = False  # started over because the pairs stopped predicting the device's edges (until a pair)
        self._recent: list[tuple[int, int, int]] = []  # the last pairs made (device, ref, device edge's host time)
        self._expired: list[tuple[int, int]] = []  # the last device edges given up on while locked (device, host)
        self._dropped: list[int] = []  # the last reference edges given up on while locked

    def restart(self, since_host_ns: int | None = None) -> None:
        """The device clock started a new timeline: pairs, the device side's grid and the device edges reported
        before ``since_host_ns`` (all, when None) are forgotten; reference edges are kept (their clock did not
        change), so matching starts over from the prior."""
        self.restarts += 1
        self._count("restart")
        self._unlock()
        self.dev_filter.restart()
        self._codes_dev.clear()  # codes stamped on the old timeline
        keep = [] if since_host_ns is None else [(d, h) for d, h in self._dev if h and h >= since_host_ns]
        if since_host_ns is not None:
            # pairs made from device edges reported since the new timeline began were predicted from the old one
            # (a jump by whole periods pairs every edge with a neighbour's partner): matched again from the prior,
            # and so are the edges of both sides given up on since then
            undo = [p for p in self._recent if p[2] and p[2] >= since_host_ns]
            if undo:
                self._count("unpaired", len(undo))
            keep += [(d, h) for d, _, h in undo] + [(d, h) for d, h in self._expired if h >= since_host_ns]
            keep = sorted(set(keep))
            back = since_host_ns - max(self.period, self.max_latency)
            self._ref = sorted(set(self._ref) | {r for _, r, _ in undo} | {r for r in self._dropped if r >= back})
        self._recent.clear()
        self._expired.clear()
        self._dropped.clear()
        self._refilter(keep)

    def _unlock(self) -> None:
        """Forget the running line and how it began (the link's least latency, ``_link_least``, stays)."""
        self._pairs.clear()
        self._first = None
        self._attempt, self._tried, self._unbound_since = None, None, None
        self._bounds.clear()
        self.lock, self.lock_least_latency_ns = "", None
        self._resid = 0.0
        self._lost = 0
        self._outcomes.clear()

    def _refilter(self, keep: list[tuple[int, int]]) -> None:
        self._dev = []
        for d, h in keep:  # already validated; they anchor the device side's new grid
            if self.dev_filter.last_t is None or d > self.dev_filter.last_t:
                self.dev_filter.anchor(d)
                self._dev.append((d, h))

    def _count(self, reason: str, n: int = 1) -> None:
        self.stats[reason] = self.stats.get(reason, 0) + n

    @staticmethod
    def _unpack(e):
        if isinstance(e, TriggerEdge):
            return e.t_ns, e.width_ns, e.seq, e.host_ns, e.polarity
        t, *rest = e if isinstance(e, (tuple, list)) else (e,)
        rest = list(rest) + [0, -1, 0, 1][len(rest):]
        return int(t), int(rest[0]), int(rest[1]), int(rest[2]), int(rest[3])

    # ---- inputs
    def add_device(self, edges) -> list[tuple[int, int]]:
        for e in edges:
            t, w, seq, host, pol = self._unpack(e)
            if self.dev_filter.accept(t, w, seq, pol):
                if self.dev_filter.reset_seen:  # device clock reset: pairs so far say nothing about the new timeline
                    self.dev_filter.reset_seen = False
                    self._unlock()
                    self._dev.clear()
                self._dev.append((t, host))
        return self._match()

    def add_ref(self, edges) -> list[tuple[int, int]]:
        for e in edges:
            t, w, seq, _, pol = self._unpack(e)
            if self.ref_filter.accept(t, w, seq, pol):
                self._ref.append(t)
        return self._match()

    def add_device_code(self, t_ns: int, value: int) -> list[tuple[int, int]]:
        """A barcode (or Harp second) the device decoded at ``t_ns`` of its clock."""
        return self._code(self._codes_dev, self._codes_ref, int(value), int(t_ns), device=True)

    def add_ref_code(self, t_ns: int, value: int) -> list[tuple[int, int]]:
        """The same code seen on the reference clock."""
        return self._code(self._codes_ref, self._codes_dev, int(value), int(t_ns), device=False)

    def _code(self, mine: dict, other: dict, value: int, t: int, device: bool) -> list[tuple[int, int]]:
        if value in mine:
            self._count("code_duplicate")
            return []
        mine[value] = t
        if len(mine) > 4096:  # bounded memory: forget the oldest codes
            for k in list(mine)[:1024]:
                del mine[k]
        if value in other:
            t_other = other.pop(value)
            mine.pop(value)
            pair = (t, t_other) if device else (t_other, t)
            self.lock = self.lock or "codes"
            self._note_pair(pair)
            self._count("code_matched")
            return [pair]
        return []

    # ---- matching
    def _note_pair(self, pair: tuple[int, int]) -> None:
        if len(self._pairs) >= 3:
            pred = self._predict(pair[0], 0)
            if pred is not None:
                self._resid += 0.1 * (float(pair[1] - pred[0]) ** 2 - self._resid)
        if self._first is None:
            self._first = pair
        self._pairs.append(pair)
        if len(self._pairs) > 16:
            del self._pairs[0]
        self.matched += 1

    def _predict(self, d: int, host: int) -> tuple[int, int, int] | None:
        """(predicted ref time, half-window low, half-window high) for device time ``d``."""
        half_p = self.period // 2 if self.period else 0
        if self._pairs:
            d1, r1 = self._pairs[-1]
            if self._first is not None and self._first[0] != d1:
                d0, r0 = self._first
                rate = (r1 - r0) / (d1 - d0)
            else:
                rate = 1.0
            pred = r1 + round((d - d1) * rate)
            if len(self._pairs) >= 2 and self._first is not None and self._first[0] != d1:
                base = max(200_000.0, 10.0 * self._resid**0.5)
                win = base + abs(d - d1) * 50e-6 if len(self._pairs) >= 3 else 0.3 * self.period
            else:
                win = 0.3 * self.period + abs(d - d1) * 1e-3
            if half_p:
                win = min(win, 0.3 * self.period)
            else:
                win = max(win, 200_000)
            return pred, int(win), int(win)
        if self._attempt is not None and not self.period:  # an aperiodic line's pattern beats any prior
            self._how = "causal"
            return d + self._attempt.offset, APERIODIC_TOL_NS, APERIODIC_TOL_NS
        if self.prior is not None:
            p = self.prior(d)
            if p is not None:
                ref, sigma = p
                win = int(4 * sigma)
                if not (half_p and win >= half_p):  # else it cannot tell the edges apart: the reports' times may
                    self._how = "prior"
                    return int(ref), win, win
        if self._causal and self.period:
            if self._attempt is None:
                return None
            self._how = "causal"
            win = int(0.3 * self.period)
            return d + self._attempt.offset, win, win
        if host and self.max_latency:
            self._how = "reports"
            return host, self.max_latency, 0  # the reference edge came before the report, within the latency
        return None

    def _match(self) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        keep_dev: list[tuple[int, int]] = []
        expired: list[tuple[int, int]] = []
        newest_ref = self._ref[-1] if self._ref else None
        if self._causal and not self._pairs and self._dev and self._dev[-1] != self._tried:
            self._tried = self._dev[-1]  # again when a device edge comes (its report ends a reference edge's wait)
            self._attempt = self._causal_lock()
        for d, host in self._dev:
            pred = self._predict(d, host)
            if pred is None:
                keep_dev.append((d, host))
                continue
            centre, lo, hi = pred
            i0, i1 = bisect_left(self._ref, centre - lo), bisect_right(self._ref, centre + hi)
            if i1 - i0 == 1:
                r = self._ref.pop(i0)
                pair = (d, r)
                if not self._pairs:
                    self.lock, causal = self._how, self._attempt if self._how == "causal" else None
                    self.lock_least_latency_ns = causal.least if causal else None
                    self._link_least = causal.report_least if causal else self._link_least
                self._note_pair(pair)
                self._recent = [*self._recent[-7:], (d, r, host)]
                out.append(pair)
                self._lost = 0
                self._lost_lock = False
                self._outcomes.append(False)
                continue
            if i1 - i0 > 1:
                self._count("ambiguous")
            if self._pairs and newest_ref is not None and newest_ref > centre + hi + self.max_wait:
                self._count("device_unmatched")  # the reference side has moved on: its partner never came
                self._lost += 1
                self._outcomes.append(True)
                expired.append((d, host))
                self._expired = [*self._expired[-7:], (d, host)]
                continue
            keep_dev.append((d, host))
        # unlocked (no pairs yet, or started over), a device edge waits for a better prior (the model may not have
        # seen the new timeline yet): the last few are kept
        cap = 64 if self._pairs else 8 if self.period else 32  # (an aperiodic line's lock wants its pattern)
        self._dev = keep_dev[-cap:]
        if len(keep_dev) > cap:
            gone = keep_dev[:-cap]
            self._count("device_unmatched", len(gone))
            if self._pairs:  # locked, yet this many waited in vain (windows that hold two partners): lost too
                self._lost += len(gone)
                self._outcomes.extend([True] * len(gone))
                self._expired = [*self._expired, *gone][-8:]
        # reference edges older than the wait with no device edge pending before them are unmatched
        if self._ref and self._pairs:
            horizon = self._ref[-1] - self.max_wait
            old = [r for r in self._ref if r < horizon and r < self._pairs[-1][1]]
            if old:
                self._count("ref_unmatched", len(old))
                self._ref = [r for r in self._ref if r not in old]
                self._dropped = (self._dropped + old)[-8:]
        if len(self._ref) > 256:
            self._count("ref_unmatched", len(self._ref) - 256)
            self._ref = self._ref[-256:]
        if out:
            self._count("matched", len(out))
        lost = max(self._lost, sum(self._outcomes))
        if self._lost >= LOCK_LOST_EDGES or lost >= LOCK_LOST_OF_WINDOW:  # the pairs no longer predict the device's
            self._count("lock_lost")                                     # edges: start over
            # the device edges since the step: the run that lost the lock (their reference partners are still
            # pending: none is dropped after the last pair) and those waiting behind it; all may still find their
            # partners from the prior, and the first of them tells the clock model where the step was
            recent = sorted(set(self._expired[-lost:] + keep_dev))
            self.restart(since_host_ns=None)
            self._lost_lock = True
            self._refilter(recent)
            out += self._match()
        return out

    def _causal_lock(self) -> CausalLock | None:
        """The causal lock (``causal_lock``) of the pending device edges, each before its report and, where the
        stream's bound is usable, before that; None until one holds (a periodic line waits up to ``BOUND_WAIT_NS``
        of reports for a usable bound)."""
        dev = raw = [(d, h) for d, h in self._dev if h]
        if len(dev) < CAUSAL_EDGES or not self._ref:
            return None
        if self.bound is not None and not (self._lost_lock and not self.period):
            # asked once per pending edge (a later answer is tighter; this one holds).  Not for an aperiodic line
            # whose lock was lost: the stream's model may not have seen its clock step yet, and a bound on the old
            # timeline leaves the new offset out (its pattern needs only the reports)
            self._bounds = {d: self._bounds[d] if d in self._bounds else self.bound(d) for d, _ in dev}
            usable = {d for d, h in dev if (b := self._bounds[d]) is not None and b >= h - BOUND_REACH_NS}
            if self.period and not usable:  # none yet (a segment just begun) or of another timeline: wait a while
                self._unbound_since = dev[-1][1] if self._unbound_since is None else self._unbound_since
                if dev[-1][1] - self._unbound_since < BOUND_WAIT_NS:
                    return None
            dev = [(d, min(h, self._bounds[d]) if d in usable else h) for d, h in dev]
        return causal_lock(raw, dev, self._ref, self.period, self.max_wait, self._link_least)

    def state(self) -> dict:
        out = {"matched": self.matched, "pending_device": len(self._dev), "pending_ref": len(self._ref),
               "restarts": self.restarts, **self.stats}
        if self.lock:
            out["lock"] = self.lock
        if self.lock_least_latency_ns is not None:
            out["lock_least_latency_ms"] = round(self.lock_least_latency_ns / 1e6, 3)
        return out
