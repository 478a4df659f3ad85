"""Where a device's clock starts a new timeline: the segments of one stream's clock.  Pure.

A device clock reset starts a new segment with its own estimators (``Segment``): never a mapping across one.  The
stream's samples define the timelines (``add_arrivals``): device time going back by ``reset_back_ns``, jumping ahead
by ``reset_forward_ns`` more than the host's clock, a sample that would map to after it arrived (a clock restored
forward: ``early_margin_ns`` beyond the trigger/probe estimate), or an arrival floor that rose and stayed up (a clock
that stood still during a reboot: ``LATE_MARGIN_NS``); the segment starts at the first sample of the new timeline.
On an irregular stream (markers, events: no nominal period), a step back that a late sample could explain (within
the segment, at most ``LATE_SAMPLE_MAX_NS`` before it arrived) is a reset only once ``RESET_CONFIRM`` samples after it
go on from it; else those samples were out of time order (a marker logged late, rows of merged logs): they keep
their timeline, give no arrival evidence, and are counted.  A regular stream's samples are stamped in order.
``reset_detected`` lets a driver that knows about a reset say so; agreeing outlier edges (a step, ``_step``) start one
too.  Edges and probes are routed to the segment they fit (``ROUTE_SLACK_NS``); on a stream without samples,
evidence that goes back or jumps ahead starts one.  ``segments_info`` says why each began.

``Timeline`` is the base of ``synchub.agent.clock.model.ClockModel``, which feeds it evidence and maps times.
"""

from __future__ import annotations

import math

import numpy as np

from synchub.agent.core.units import NS

from .bank import SKEW_PLAUSIBLE, FilterBank
from .envelope import Envelope
from .resets import ResetRule, step_boundary
from .segment import Segment

#: 1-sigma of a new segment's skew prior when an earlier segment of the same stream measured it (the same
#: oscillator after a reset).
SKEW_PRIOR_KNOWN = 50e-6
#: Evidence (an edge, a probe) is routed to the segment whose spans hold its times within this slack.
ROUTE_SLACK_NS = 2 * NS
#: A sample that maps to more than this (or 6 sigma) after it arrived shows a clock that jumped forward.
EARLY_MARGIN_NS = 5_000_000
#: Edges a segment begun that way takes before the step is placed again by their line (``_resplit_early``).
EARLY_RESPLIT_EDGES = 3
#: Probes a bank rejects in a row make a step only over this much device time: a device that stamps its replies late for
#: a moment (a stall) is no step.
PROBE_STEP_SPAN_NS = 2 * NS
#: Samples surely on the old timeline that ``step_boundary`` needs to know the link's latencies.
STEP_HELD_MIN = 20
#: A sample that went back but could be a late one of its timeline (a marker logged late, rows of merged logs)
#: starts a new segment once this many samples after it stay back too (as ``synchub align`` decides on files);
#: fewer were out of time order: they keep their timeline, counted (``arrival_out_of_order``).
RESET_CONFIRM = 3
#: ... when it was taken at most this long before it arrived (later: a reset at once).  The samples after it decide
#: (``_confirm``), so a reset back by less costs the first ``RESET_CONFIRM`` samples after it, mapped on the old
#: timeline as they arrive; a row logged later than ``reset_forward_ns`` (10 s) was taken for a reset and mapped by
#: its own arrival (12-30 s off) with two segments around it.
LATE_SAMPLE_MAX_NS = 60 * NS


class Timeline:
    """The segments of one stream's clock and the rules that start them (see the module docstring)."""

    def __init__(self, window_s: float, *, gate_sigma: float, skew_prior: float, qs: np.ndarray,
                 rscales: np.ndarray, reset_back_ns: int, reset_forward_ns: int, early_margin_ns: int, consensus: int):
        self.window_s = float(window_s)
        self.gate_sigma = gate_sigma
        self.skew_prior = skew_prior
        self.qs = qs
        self.rscales = rscales
        self.reset_back_ns = int(reset_back_ns)
        self.reset_forward_ns = int(reset_forward_ns)
        # samples arrive in device-time order; other evidence may come a little out of order (1 s at least)
        self.arrival_rule = ResetRule(back=self.reset_back_ns, forward=self.reset_forward_ns)
        self.evidence_rule = ResetRule(back=max(self.reset_back_ns, NS), forward=self.reset_forward_ns)
        self.early_margin_ns = int(early_margin_ns)
        self.consensus = int(consensus)  # edges/offsets that must agree before a segment's first is used
        self.segments: list[Segment] = []
        # False in the live agent: segments keep no history for the two-sided ``smooth`` (bounded memory)
        self.history = True
        self.rejected: dict[str, int] = {}
        self.resets = 0
        self._pending: list[tuple[int, int]] = []  # (device, host) of samples that went back, no reset yet
        # a regular stream's samples are stamped in order (``ClockModel`` with a nominal period): a step back is a
        # reset at once, so that the samples after it are mapped right live
        self.samples_in_order = False
        self._arrivals_seen = False  # once a stream's samples arrive, only they (and drivers, steps) start segments

    def _new_segment(self, device_ns: int, host_ns: int, z: int, cause: str = "start") -> Segment:
        forget = 30 * max(self.window_s, 60.0)
        skew0, skew_sd, quick = 0.0, self.skew_prior, SKEW_PLAUSIBLE
        p_skew0, p_skew_sd = 0.0, self.skew_prior
        if self.segments:
            self.resets += 1
            self._count(f"segment_{cause}")
            # the same oscillator, most likely: its last skew, as its edges and as its probes measured it
            if (known := self._last_skew("trig")) is not None:
                skew0, skew_sd, quick = known, SKEW_PRIOR_KNOWN, SKEW_PRIOR_KNOWN
            if (known := self._last_skew("probe")) is not None:
                p_skew0, p_skew_sd = known, SKEW_PRIOR_KNOWN
        seg = Segment(
            index=len(self.segments), dev0=int(device_ns), host0=int(host_ns), z0=int(z),
            trig=FilterBank(self.qs, skew_sd, self.gate_sigma, forget, self.rscales, consensus=self.consensus,
                             skew0=skew0, quick_skew=quick),
            # probes: a run of excursions on a jittery link is no step (eight rejections in a row over 2 s are)
            probe=FilterBank(self.qs, p_skew_sd, self.gate_sigma, forget, self.rscales, step_n=8, skew0=p_skew0,
                             step_span=PROBE_STEP_SPAN_NS),
            env=Envelope(NS, int(self.window_s * NS), None if self.history else int(2 * self.window_s * NS)),
            dev_hi=int(device_ns), host_hi=int(host_ns), cause=cause,
        )
        seg.trig.keep_log = seg.probe.keep_log = self.history
        self.segments.append(seg)
        return seg

    def reset_detected(self, device_ns: int, host_ns: int = 0) -> None:
        """A driver saw the device clock reset: the next evidence starts a new segment at ``device_ns``."""
        d, h = int(device_ns), int(host_ns)
        z = h - d if h else 0
        if self._pending:  # samples that went back and waited for the ones after them: the driver says, counted
            self._count("arrival_back_before_reset", len(self._pending))
            self._pending = []
        if self.segments and self.segments[-1].fresh and len(self.segments) > 1:
            seg = self.segments[-1]  # announced twice before any evidence: one reset
            seg.dev0, seg.host0, seg.z0, seg.dev_hi, seg.host_hi = d, h, z, d, h
            return
        self._new_segment(d, h, z, "driver")

    def _segment_for(self, device_ns: int, host_ns: int, z: int, kind: str) -> Segment | None:
        """The segment evidence (an edge, a probe, an aligner offset) belongs to; None to reject it.  Where the
        stream's samples arrive, they define the clock's timelines (``add_arrivals``) and other evidence is routed
        to the one it fits; without arrivals, evidence whose device time goes back or jumps ahead starts one."""
        if not self.segments:
            return self._new_segment(device_ns, host_ns, z)
        seg = self.segments[-1]
        if kind == "offset":
            # aligner estimates describe windows seconds to minutes old: late by nature, never a reset signal
            if seg.fresh:
                return seg.adopt(device_ns, host_ns, z)
            if device_ns < seg.dev0 or seg.dev_hi - device_ns > 600 * NS:
                self._count("offset_out_of_segment")
                return None
            return seg
        if self._arrivals_seen:
            return self._route(device_ns, host_ns, kind)
        if seg.fresh:
            return seg.adopt(device_ns, host_ns, z)
        rule = self.evidence_rule
        if rule.went_back(seg.dev_hi, device_ns):
            if device_ns < seg.dev0 + (seg.dev_hi - seg.dev0) // 2 + rule.back:
                # device time went back: a reset (late evidence from before a reset lands in the second half)
                if host_ns and host_ns < seg.host_hi - 5 * NS:
                    self._count("late_evidence")
                    return None
                return self._new_segment(device_ns, host_ns, z, f"{kind}_back")
            self._count(f"{kind}_out_of_order")
            return None
        if rule.jumped_forward(device_ns - seg.dev_hi, host_ns - seg.host_hi):
            return self._new_segment(device_ns, host_ns, z, f"{kind}_forward")
        return seg.extend(device_ns, host_ns)

    def _route(self, device_ns: int, host_ns: int, kind: str) -> Segment | None:
        """The segment (of the last few) whose reference-time span holds ``host_ns`` and whose device-time span
        (grown by the reference time since its last sample) holds ``device_ns``, both within ``ROUTE_SLACK_NS``;
        an exact reference-time match wins.  Evidence that fits none is counted and dropped (a timeline no sample
        has shown yet: the samples will start its segment)."""
        segs = self.segments
        near = None
        for i in range(len(segs) - 1, max(len(segs) - 5, -1), -1):
            s = segs[i]
            if s.fresh:
                continue
            nxt = segs[i + 1].host0 if i + 1 < len(segs) else None
            fits = s.dev0 - ROUTE_SLACK_NS <= device_ns <= s.dev_hi + max(host_ns - s.host_hi, 0) + ROUTE_SLACK_NS
            if not fits:
                continue
            if host_ns >= s.host0 and (nxt is None or host_ns < nxt):
                return s.extend(device_ns, host_ns)
            if near is None and host_ns >= s.host0 - ROUTE_SLACK_NS and (nxt is None or host_ns < nxt + ROUTE_SLACK_NS):
                near = s
        if near is not None:
            return near.extend(device_ns, host_ns)
        self._count(f"{kind}_no_segment")
        return None

    def _count(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + n

    def _step(self, seg: Segment, which: str, counter: str = "edges") -> int:
        """When a bank saw a step (rejections agreeing with each other), the clock jumped without going
        backwards (a device that set its own clock): start a new segment from the measurements after the step."""
        bank = getattr(seg, which)
        if not bank.step:
            return 0
        bad, bank.step = bank.step, []
        self._count("clock_step")
        d0 = seg.dev0 + int(bad[0][0])
        z = seg.z0 + int(bad[0][1])
        new = self._new_segment(d0, d0 + z, z, "step")
        new.dev_hi, new.host_hi = seg.dev_hi, seg.host_hi
        nb = getattr(new, which)
        for bd, bz, br in bad:
            nb.update(float(seg.dev0 + bd - new.dev0), float(seg.z0 + bz - new.z0), br)
        setattr(new, counter, getattr(new, counter) + len(bad))
        if counter == "edges":
            new.first_edge_ns = d0
            new.last_edge_ns = seg.dev0 + int(max(b[0] for b in bad))
        if seg.floor.recent:
            self._split_recent(seg, new, bank, nb)
        return len(bad)

    def _last_skew(self, which: str) -> float | None:
        """The skew of the newest segment whose ``which`` bank ("trig" or "probe") took 10 measurements or more."""
        known = [getattr(s, which) for s in self.segments if getattr(s, which).n >= 10]
        return float(known[-1].x[known[-1].best, 1]) if known else None

    def _resplit_early(self, seg: Segment) -> None:
        """A segment begun by a sample mapped after it arrived (a clock that jumped forward) starts at the first
        sample beyond the early margin; the few before it, after the step, were within the margin.  Once its edges
        have a line, the step is placed among the previous segment's recent samples as after a step the edges saw."""
        seg.placed = True
        old = self.segments[seg.index - 1] if seg.index else None
        if old is not None and old.floor.recent and old.trig.n:
            self._split_recent(old, seg, old.trig, seg.trig)

    def _split_recent(self, old: Segment, new: Segment, ob: FilterBank, nb: FilterBank) -> None:
        """After a step seen in the edges, the samples since it are on the new timeline.  Of the recent arrivals,
        those taken up to the old bank's newest measurement are on the old one (it held until then) and show the
        link's latencies; those after it and before the new segment's start could be on either: the step lies
        where their latencies on the old line before it and on the new one after it are likeliest (``step_boundary``:
        one that would have arrived before it was taken all but rules a line out), and the new segment starts there.
        (It took every sample the new line gave a smaller latency: after a step back of a few ms that was all of
        the last 12 s.)"""
        d = np.concatenate([x for x, _ in old.floor.recent])
        h = np.concatenate([y for _, y in old.floor.recent])
        held = d - old.dev0 <= ob.last_taken
        cand = np.flatnonzero(~held & (h < new.host0))  # a run: device and host times both go up
        if not len(cand):
            return
        if held.sum() < STEP_HELD_MIN:  # the link's latencies unknown: the new segment starts where it was seen
            return
        lat, margin = [], []
        for seg, bank in ((old, ob), (new, nb)):
            k = bank.best
            dr = (d - seg.dev0).astype(np.float64)
            lat.append(((h - d) - seg.z0) - (bank.x[k, 0] + (dr - bank.t) * bank.x[k, 1]))
            margin.append(3.0 * math.sqrt(float(bank.predict(dr[-1:])[1][0])))
        k = step_boundary(lat[0][cand], lat[1][cand], lat[0][held], margin[0], margin[1])
        if k < len(cand):
            j = int(cand[k])
            new.host0, new.first_sample_ns = int(h[j]), int(d[j])
            self._take_arrivals(new, d[j:], h[j:])

    def add_arrivals(self, device_ns, host_ns) -> np.ndarray:
        """Host receive times of samples with device times; returns each sample's segment (int32).

        Samples are stamped in device-time order and arrive after they were taken, so a new timeline starts where
        device time goes back (``reset_back_ns``), jumps ahead by more than the host's clock advanced
        (``reset_forward_ns``; both ``resets.ResetRule``), or maps to a time after the sample arrived (``early_margin_ns`` beyond the
        segment's trigger/probe estimate and its uncertainty, or 0.5 s beyond its arrival envelope): a device clock
        that jumped forward (a saved RTC restored at reboot).  A sample that went back alone is out of time order
        (a marker logged late, rows of merged logs, a reordered packet; ``_back``): it keeps its timeline."""
        dev = np.asarray(device_ns, dtype=np.int64)
        host = np.asarray(host_ns, dtype=np.int64)
        n = len(dev)
        segs = np.zeros(n, dtype=np.int32)
        if n == 0:
            return segs
        self._arrivals_seen = True
        a = 0
        while a < n:
            if self._pending:
                a = self._confirm(dev, host, a, segs)
                continue
            seg = self._arrival_segment(int(dev[a]), int(host[a]))
            j, cause = self._timeline_break(seg, dev[a:], host[a:])
            if j == 0:
                if cause == "arrival_back" and self._back(seg, int(dev[a]), int(host[a])):
                    self._pending.append((int(dev[a]), int(host[a])))  # not (yet) a reset: it keeps the timeline
                    segs[a] = seg.index
                    a += 1
                    continue
                seg = self._new_segment(int(dev[a]), int(host[a]), int(host[a] - dev[a]), cause)
                j, cause = self._timeline_break(seg, dev[a:], host[a:])
            b = a + j
            self._take_arrivals(seg, dev[a:b], host[a:b])
            segs[a:b] = seg.index
            a = b
        return segs

    def _back(self, seg: Segment, device_ns: int, host_ns: int) -> bool:
        """Whether a sample more than ``reset_back_ns`` before its segment's newest may be a late one of that
        timeline (an irregular stream's: markers, events; within the segment, taken no more than
        ``LATE_SAMPLE_MAX_NS`` before it arrived): then it waits for the samples after it (``_confirm``) and is mapped
        on the segment meanwhile, which a reset of the clock costs those few samples; else the clock reset there."""
        if self.samples_in_order:
            return False
        top_d, top_h = _newest(seg)
        return device_ns >= seg.dev0 and top_d - device_ns + max(host_ns - top_h, 0) <= LATE_SAMPLE_MAX_NS

    def _confirm(self, dev: np.ndarray, host: np.ndarray, a: int, segs: np.ndarray) -> int:
        """Samples after one that went back (``_pending``): each goes on from whichever timeline is nearer where
        it arrived, the segment's newest sample's or the pending ones' (each carried forward by the host time
        since).  ``RESET_CONFIRM`` on the pending ones' and the clock reset there (a new segment from the first of
        them); one on the segment's and they were out of time order.  Returns the index of the next sample."""
        seg = self.segments[-1]
        top_d, top_h = _newest(seg)
        (pd, ph), d, h = self._pending[-1], int(dev[a]), int(host[a])
        if abs(d - top_d - max(h - top_h, 0)) <= abs(d - pd - max(h - ph, 0)):  # the segment's timeline
            self._count("arrival_out_of_order", len(self._pending))
            self._pending = []
            return a
        self._pending.append((d, h))
        segs[a] = seg.index
        if len(self._pending) > RESET_CONFIRM:  # they stayed back: the clock reset at the first of them
            pdev = np.array([p[0] for p in self._pending], dtype=np.int64)
            phost = np.array([p[1] for p in self._pending], dtype=np.int64)
            self._pending = []
            new = self._new_segment(int(pdev[0]), int(phost[0]), int(phost[0] - pdev[0]), "arrival_back")
            self._take_arrivals(new, pdev, phost)
            segs[max(a - len(pdev) + 1, 0):a + 1] = new.index
        return a + 1

    def _arrival_segment(self, device_ns: int, host_ns: int) -> Segment:
        if not self.segments:
            return self._new_segment(device_ns, host_ns, host_ns - device_ns)
        seg = self.segments[-1]
        if seg.fresh:
            return seg.adopt(device_ns, host_ns, host_ns - device_ns)
        return seg

    def _timeline_break(self, seg: Segment, d: np.ndarray, h: np.ndarray) -> tuple[int, str]:
        """(index of the first sample that does not continue ``seg``'s timeline, why) or (len, "")."""
        if seg.arrivals and seg.arr_last is not None:
            pd = np.concatenate([[seg.arr_last[0]], d[:-1]])
            ph = np.concatenate([[seg.arr_last[1]], h[:-1]])
            first = 0
        else:  # the segment's first samples: nothing before them to compare with
            pd, ph, first = d[:-1], h[:-1], 1
        dd, hh = d[first:], h[first:]
        back = self.arrival_rule.went_back(pd, dd)
        fwd = self.arrival_rule.jumped_forward(dd - pd, hh - ph)
        early = seg.early(dd, hh, self.early_margin_ns)
        bad = back | fwd | early
        if not bad.any():
            return len(d), ""
        i = int(np.argmax(bad))
        why = "back" if back[i] else ("forward" if fwd[i] else "early")
        return first + i, f"arrival_{why}"

    def _take_arrivals(self, seg: Segment, d: np.ndarray, h: np.ndarray) -> None:
        level = seg.take_arrivals(d, h)
        if level is not None:
            self._late_jump(seg, level)

    def _late_jump(self, seg: Segment, level: float) -> None:
        """The arrival floor rose and stayed up: the clock jumped back while its time kept going up (it stood still
        during a reboot).  A new segment starts right after the last recent sample still on the old floor."""
        d = np.concatenate([x for x, _ in seg.floor.recent])
        h = np.concatenate([y for _, y in seg.floor.recent])
        dr = (d - seg.dev0).astype(np.float64)
        live = seg.live_offset(dr)
        base = live[0] if live is not None else seg.env.predict(dr)
        on_floor = np.flatnonzero(((h - d) - seg.z0) - base <= level)
        j = int(on_floor[-1]) + 1 if len(on_floor) else 0
        if j >= len(d):
            return
        new = self._new_segment(int(d[j]), int(h[j]), int(h[j] - d[j]), "arrival_late")
        self._take_arrivals(new, d[j:], h[j:])

    def segment_of(self, device_ns, host_ns) -> np.ndarray:
        """The segment of samples given their device and host receive times (for chunks fed to add_arrivals)."""
        dev = np.asarray(device_ns, dtype=np.int64)
        host = np.asarray(host_ns, dtype=np.int64)
        if len(self.segments) <= 1:
            return np.zeros(len(dev), dtype=np.int32)
        starts = np.array([s.host0 for s in self.segments], dtype=np.int64)
        k = np.searchsorted(starts, host, side="right") - 1
        k = np.clip(k, 0, len(self.segments) - 1)
        # a burst straddling a reset shares host times: use the device time to split ties
        tie = (k > 0) & (host == starts[k])
        if np.any(tie):
            for i in np.flatnonzero(tie):
                cur, prev = self.segments[k[i]], self.segments[k[i] - 1]
                if cur.first_sample_ns is not None:  # its first sample is known: the step lies before it
                    k[i] -= int(dev[i]) < cur.first_sample_ns
                elif abs(int(dev[i]) - cur.dev0) > abs(int(dev[i]) - prev.dev_hi):
                    k[i] -= 1
        return k.astype(np.int32)

    def segments_info(self) -> list[dict]:
        """Per segment: its index, why it began (``start``; ``driver``: a reported reset; ``arrival_back``,
        ``arrival_forward``, ``arrival_early``: the samples' device times; ``step``: agreeing outlier edges or
        probes; ``edge_back``/``probe_forward``...: that evidence, on a stream without samples), where (device and
        reference time), the device time of its first accepted edge pair and its evidence counts."""
        return [s.info() for s in self.segments]


def _newest(seg: Segment) -> tuple[int, int]:
    """(device, host) time of the segment's newest sample in time order (its newest evidence before any)."""
    return seg.arr_last if seg.arr_last is not None else (seg.dev_hi, seg.host_hi)
