"""One clock segment: a stretch of a device's timeline between resets, with its own estimators.  Pure.

A ``Segment`` holds the trigger/offset filter bank (``trig``), the probe filter bank (``probe``), the arrival
envelope (``env``) and what the probes taught about the link (band, wander, tick).  It answers, at device times
relative to its origin ``dev0``: each estimator's offset and variance (``estimate``), the estimators it can offer
(``candidates``), the live offset from its edges or probes (``live_offset``), and whether samples would have arrived
before they were taken (``early``: a clock that jumped forward).  ``ArrivalFloor`` watches the samples' latency
floor for a clock that stood still (``late``).  ``synchub.agent.clock.timeline`` decides where segments begin.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from synchub.agent.core.units import NS

from .bank import FilterBank
from .choice import UNKNOWN_UNC_NS
from .envelope import Envelope

#: The samples' arrival floor (per 1 s block of device time, the smallest latency over the segment's estimate)
#: sitting this much (or 4x its usual scatter) higher for ``LATE_BLOCKS`` blocks in a row, steadily (a stall drains
#: by a second per second), shows a clock that jumped back without going backwards (stopped during a reboot).
LATE_MARGIN_NS = 30_000_000
LATE_BLOCKS = 2
#: Round trips in the sliding window whose minimum is the min-RTT floor (also at most a quarter of ``window_s``).
PROBE_RTT_KEEP = 32


class ArrivalFloor:
    """A segment's arrival floor: per closed block of the envelope, the block minimum's height above the segment's
    estimate (its latency floor), and the last few seconds of raw arrivals (to find where a jump happened)."""

    RECENT_NS = 12 * NS  # of host time: covers a step that edges take a few periods to show

    def __init__(self):
        self.lat: deque[float] = deque(maxlen=40)
        self.recent: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self.base = ""  # what the heights are measured from: "envelope", "trig" or "probe" (``Segment.floor_base``)

    def rebase(self, base: str) -> None:
        """Heights above one estimate compare only with heights above the same one: when the segment's estimate
        changes kind (its envelope, late by the link's latency, gives way to edges or aligner offsets, which are not)
        the history starts over; else the switch itself reads as a floor that rose by the latency."""
        if base != self.base:
            self.lat.clear()
            self.base = base

    def keep(self, d: np.ndarray, h: np.ndarray) -> None:
        self.recent.append((d, h))
        while len(self.recent) > 1 and int(h[-1]) - int(self.recent[1][1][0]) > self.RECENT_NS:
            self.recent.popleft()

    def late(self) -> float | None:
        """The floor before the last ``LATE_BLOCKS`` blocks when those sit steadily above it by the margin, else
        None."""
        if len(self.lat) < LATE_BLOCKS + 5:
            return None
        lat = list(self.lat)
        now, hist = lat[-LATE_BLOCKS:], sorted(lat[:-LATE_BLOCKS][-30:])
        floor = hist[len(hist) // 2]
        margin = max(LATE_MARGIN_NS, 4.0 * (hist[(9 * len(hist)) // 10] - hist[len(hist) // 10]))
        if min(now) > floor + margin and max(now) - min(now) < margin / 2:
            return floor + margin / 2
        return None


@dataclass
class Segment:
    index: int
    dev0: int  # device time origin (ns)
    host0: int  # reference/host time when the segment was first seen
    z0: int  # offset origin: ref - device at the start (ns)
    trig: FilterBank
    probe: FilterBank
    env: Envelope
    dev_hi: int = 0
    host_hi: int = 0
    arr_hi: int = 0  # largest device time of an arrival
    min_rtt: float = 0.0  # smallest probe round trip
    band: float = 0.0  # median of the recent probes' half-bands: the estimate's bias bound (asymmetric links)
    bands: deque = field(default_factory=lambda: deque(maxlen=PROBE_RTT_KEEP))
    tick_n: int = 0
    tick_gcd: int = 0  # gcd of the probe stamps' distances from dev0: the device counter's resolution
    wander: float = 0.0  # variance of the offset's short-term scatter beyond the probes' bands (ns^2)
    edges: int = 0
    offsets: int = 0
    probes: int = 0
    arrivals: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    cause: str = "start"  # why the segment began (see ClockModel.segments_info)
    arr_last: tuple[int, int] | None = None  # (device, host) time of the last arrival
    first_edge_ns: int | None = None  # device time of the first edge pair the segment accepted
    first_sample_ns: int | None = None  # where a step was placed among samples: the first one's device time
    placed: bool = False  # a segment the samples began: its start placed again by its edges' line (``_resplit_early``)
    last_edge_ns: int | None = None  # ... and of the newest
    # a trigger-wired stream's aligner offsets once its edges went stale (``fallback``): a copy of ``trig`` taken
    # then, and what it maps is "hybrid" (edges, then offsets) or "neural" (no edge in the segment)
    fall: FilterBank | None = None
    fall_method: str = "hybrid"
    trig_until: int = 0  # while ``fall`` maps: the trigger bank's extrapolation holds up to here (device time)
    fallback_offsets: int = 0
    shared_var: float = 0.0  # the latest offset's shared error variance (``OffsetEstimate.shared_ns``), ns^2
    floor: ArrivalFloor = field(default_factory=lambda: ArrivalFloor())
    # (offsets logged, blocks closed) when the smooth skew prior was last measured (``_smooth_skew_prior``)
    _prior_key: tuple[int, int] | None = None

    # ---- extent
    @property
    def fresh(self) -> bool:
        """No evidence yet (a segment a driver announced)."""
        return not (self.edges or self.probes or self.arrivals or self.offsets)

    def adopt(self, device_ns: int, host_ns: int, z: int) -> Segment:
        """The first evidence of a segment a driver announced: it sets what the announcement left open."""
        if self.host0 == 0:
            self.host0, self.z0 = host_ns, z
        self.dev0 = min(self.dev0, device_ns) if self.dev0 else device_ns
        self.dev_hi, self.host_hi = device_ns, host_ns
        return self

    def extend(self, device_ns: int, host_ns: int) -> Segment:
        if device_ns > self.dev_hi:
            self.dev_hi = device_ns
        if host_ns > self.host_hi:
            self.host_hi = host_ns
        return self

    # ---- arrivals
    def take_arrivals(self, d: np.ndarray, h: np.ndarray) -> float | None:
        """Samples of this segment arrived; returns the level of a raised arrival floor (``ArrivalFloor.late``: the
        clock stood still meanwhile) or None."""
        # within the run the order is monotone; only the last sample needs the bookkeeping
        self.arr_hi = max(self.arr_hi, int(d[-1])) if self.arrivals else int(d[-1])
        self.arr_last = (int(d[-1]), int(h[-1]))
        self.dev_hi = max(self.dev_hi, int(d[-1]))
        self.host_hi = max(self.host_hi, int(h[-1]))
        closed = self.env.closed
        self.env.add((d - self.dev0).astype(np.float64), ((h - d) - self.z0).astype(np.float64))
        self.arrivals += len(d)
        self.floor.keep(d, h)
        new = min(self.env.closed - closed, len(self.env.d))
        if new == 0:
            return None
        bd = np.asarray(self.env.d[-new:])
        live = self.live_offset(bd)
        base = live[0] if live is not None else (self.env.predict(bd) if self.env.line is not None else None)
        if base is None:
            return None
        self.floor.rebase(self.live_bank_name() if live is not None else "envelope")
        self.floor.lat.extend((np.asarray(self.env.m[-new:]) - base).tolist())
        return self.floor.late()

    def live_bank_name(self) -> str:
        """Which bank ``live_offset`` uses: "trig" (edges, aligner offsets), "probe", or "" (neither yet)."""
        return "trig" if self.trig.n >= 10 else ("probe" if self.probe.n >= 10 else "")

    def live_offset(self, dr: np.ndarray) -> tuple[np.ndarray, float] | None:
        """The current offset estimate at device times ``dr`` (relative) from the edges or probes, and its 1-sigma
        at the farthest of them; None when there are neither yet."""
        name = self.live_bank_name()
        if not name:
            return None
        bank = self.trig if name == "trig" else self.probe
        k = bank.best
        est = bank.x[k, 0] + (dr - bank.t) * bank.x[k, 1]
        far = float(dr[np.argmax(np.abs(dr - bank.t))])
        var = bank.predict_raw(far)[1] * bank.scale
        if bank is self.probe:
            var += self.band**2 + self.wander
        return est, math.sqrt(max(var, 0.0))

    def early(self, d: np.ndarray, h: np.ndarray, margin_ns: int) -> np.ndarray:
        """True where a sample would have arrived before it was taken according to the estimate (more than
        ``margin_ns`` or 6 sigma before, or 0.5 s beyond the arrival envelope when there are no edges or probes)."""
        if len(d) == 0:
            return np.zeros(0, dtype=bool)
        dr = (d - self.dev0).astype(np.float64)
        m = ((h - d) - self.z0).astype(np.float64)
        live = self.live_offset(dr)
        if live is not None:
            return m < live[0] - max(margin_ns, 6.0 * live[1])
        if len(self.env.d) >= 10 and self.env.line is not None:
            return m < self.env.predict(dr) - max(0.5 * NS, 10.0 * self.env.spread())
        return np.zeros(len(d), dtype=bool)

    # ---- estimates
    def candidates(self) -> list[str]:
        """The estimators this segment can offer, best evidence first."""
        out = []
        if self.trig.n >= 1:  # one point already maps, with the skew prior's growing uncertainty
            if self.edges and self.offsets:
                out.append("hybrid")
            elif self.edges:
                out.append("triggers")
            else:
                out.append("neural")
        if self.fall is not None and self.fall.n >= 1:
            out.append(self.fall_method)
        if self.probe.n >= 1:
            out.append("probes")
        if self.env.n >= 1:
            out.append("arrival")
        return out

    def var_floor(self, m: str) -> float | None:
        """A lower bound of an estimator's variance anywhere in the segment (None: none known)."""
        if m == "probes":
            return self.band**2 + self.wander
        if m == "arrival" and self.env.line is not None:
            return self.env.spread() ** 2
        return None

    def estimate(self, m: str, d: np.ndarray, smooth: bool) -> tuple[np.ndarray, np.ndarray]:
        """Estimator ``m``'s offset (relative to ``z0``) and variance at relative device times ``d``: two-sided
        with ``smooth``, else the live filter's prediction."""
        if m in ("triggers", "hybrid", "neural", "probes"):
            bank = self.bank_for(m)
        elif m == "arrival" and self.env.line is not None:  # (no envelope yet: identity below)
            a = self.env.smooth(d) if smooth else self.env.predict(d)
            return a, np.full(len(d), self.env.spread() ** 2)
        else:  # identity: the segment's first offset, unknown uncertainty
            return np.zeros(len(d)), np.full(len(d), float(UNKNOWN_UNC_NS) ** 2)
        if bank.n == 0:
            return np.zeros(len(d)), np.full(len(d), float(UNKNOWN_UNC_NS) ** 2)
        if smooth and len(bank.log_d) >= 2:
            if bank is self.trig and not self.edges:
                self._smooth_skew_prior()
            a, var = bank.smooth(d)
        else:
            a, var = bank.predict(d)
        if self.fall is not None and bank is self.trig:
            # beyond it the edges' extrapolation assumes the clock stays as steady as it was while they came; what
            # the pause may hold is the bank's widest random walk (the fallback bank holds the same state, and the
            # aligner's offsets since)
            wide = bank.predict(d, k=int(np.argmax(bank.q)))[1]
            var = np.where(d > self.trig_until - self.dev0, np.maximum(var, wide), var)
        if m == "neural" or bank is self.fall:  # offsets: the error they all share stays, however many there are
            var = var + self.shared_var
        if m == "probes":  # consistent centres say nothing of the link's asymmetry (add its bound) nor of the wander
            var = var + self.band**2 + self.wander
        return a, var

    def _smooth_skew_prior(self) -> None:
        """Offsets alone (no edges): the two-sided estimate's skew prior is the arrivals' slope over the span
        of the offsets (a half window beyond each end), measured on every arrival of it (``FilterBank.smooth_skew``)."""
        key = (len(self.trig.log_d), self.env.closed)
        if key == self._prior_key:
            return
        self._prior_key = key
        half = self.env.window_ns / 2
        measured = self.env.slope_over(min(self.trig.log_d) - half, max(self.trig.log_d) + half)
        if measured is not None:
            self.trig.smooth_skew(*measured)

    def bank_for(self, m: str) -> FilterBank:
        """The filter bank behind estimator ``m`` ("triggers", "hybrid", "neural", "probes")."""
        if self.fall is not None and m == self.fall_method:
            return self.fall
        return self.probe if m == "probes" else self.trig

    def info(self) -> dict:
        """Its index, why it began, where (device and reference time), its first accepted edge, evidence counts."""
        return {"index": self.index, "cause": self.cause, "device_ns": self.dev0, "host_ns": self.host0,
                "first_edge_device_ns": self.first_edge_ns, "edges": self.edges, "probes": self.probes,
                "offsets": self.offsets, "arrivals": self.arrivals,
                **({"fallback_offsets": self.fallback_offsets} if self.fallback_offsets else {})}
