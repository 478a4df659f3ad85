"""Raw wrapping tick counters -> monotone int64 device ns, with resets told apart from wraps.  Pure.

A device sends a free-running counter of ``bits`` bits at ``tick_hz``.  Between two consecutive readings the
counter advanced by ``d = (raw - prev) mod 2**bits`` ticks plus some whole number of wraps.  Which number?

* With host receive times, the host's elapsed time bounds how far the device clock can have moved (plus a
  tolerance: ``host_tol_s`` + ``rate_tol`` of the elapsed time, covering USB buffering and drift); it may have
  moved much less (the host read late).  A step beyond that bound (``resets.ResetRule``) is a **reset** (reboot, brown-out), whether
  the counter went backwards or far ahead.  When the host gap spans whole counter periods (a long outage), the
  wrap count is the one that brings the step closest to the host's elapsed time within the bound.
* Without host times, a step of more than ``max_gap_s`` is taken as a reset (it would otherwise be a silent
  hour-long forward jump), anything else as a wrap.
* Times that never wrap (64 bits: a device's own ns, ms or s): a reading up to ``back_s`` behind the newest is
  no reset here, its time kept as sent: a line printed late (an event logged from another handler, merged logs) or
  a clock that went back a little, which the clock layer tells apart from the readings after it
  (``timeline.RESET_CONFIRM``); the newest reading stays the reference.  A wrapping counter's reading behind the
  newest is a reset, as before: its era (the wraps before it) would differ between the two, and stamped counters
  come in order.

After a reset the device time restarts from the raw counter value (the device's own idea of time) and
``segment`` increases by one; within a segment device time is monotone but for readings ``behind``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synchub.agent.core.units import NS

from .resets import ResetRule


@dataclass
class Unwrapped:
    device_ns: np.ndarray  # int64
    segment: np.ndarray  # int32
    resets: list[int]  # indices (into this call's input) where a new segment starts


class Unwrapper:
    def __init__(
        self, bits: int, tick_hz: float, max_gap_s: float = 10.0, host_tol_s: float = 0.5, rate_tol: float = 0.02,
        back_s: float = 10.0,
    ):
        if not 1 <= bits <= 64:
            raise ValueError("bits must be in 1..64")
        if tick_hz <= 0:
            raise ValueError("tick_hz must be > 0")
        self.bits = int(bits)
        self.modulus = 1 << self.bits
        self.tick_hz = float(tick_hz)
        self.host_tol_s = host_tol_s
        # in ticks: ahead of the host's elapsed time by host_tol_s + rate_tol of it; max_gap_s without host times
        self.rule = ResetRule(forward=host_tol_s * tick_hz, rate_tol=rate_tol, max_step=max_gap_s * tick_hz)
        ns_per_tick = NS / self.tick_hz
        self._int_ns = int(ns_per_tick) if float(ns_per_tick).is_integer() else 0
        self._ns_per_tick = ns_per_tick
        back = int(back_s * tick_hz)
        self._back = back if self.bits == 64 else 0  # ticks a reading may lie behind the newest
        self.behind = 0  # readings that did (out of time order, or the start of a clock that went back a little)
        self.segment = 0
        self.wraps = 0
        self.resets = 0
        self._prev_raw: int | None = None
        self._prev_host: int | None = None
        self._ticks = 0  # unwrapped ticks of the last reading (current segment)

    @property
    def started(self) -> bool:
        return self._prev_raw is not None

    def _to_ns(self, ticks: np.ndarray) -> np.ndarray:
        if self._int_ns:
            return ticks.astype(np.int64) * self._int_ns
        return np.rint(ticks.astype(np.float64) * self._ns_per_tick).astype(np.int64)

    def unwrap(self, raw, host_ns=None) -> Unwrapped:
        """Unwrap readings ``raw`` (in order); ``host_ns`` their host receive times (optional)."""
        raw = np.atleast_1d(np.asarray(raw, dtype=np.uint64)).astype(np.int64) if self.bits == 64 else (
            np.atleast_1d(np.asarray(raw)).astype(np.int64) & (self.modulus - 1)
        )
        n = len(raw)
        host = None if host_ns is None else np.atleast_1d(np.asarray(host_ns, dtype=np.int64))
        ticks = np.empty(n, dtype=np.int64)
        seg = np.empty(n, dtype=np.int32)
        resets: list[int] = []
        m = self.modulus
        for i in range(n):  # scalar loop: counters arrive at <= a few kHz, and the logic must be exact
            r = int(raw[i])
            h = None if host is None else int(host[i])
            if self._prev_raw is None:
                self._ticks = r
            else:
                d = (r - self._prev_raw) % m
                reset = False
                if h is not None and self._prev_host is not None and m / self.tick_hz > 2 * self.host_tol_s:
                    # one-sided: the device cannot have advanced (much) more than the host's elapsed time, but the
                    # host may have read late (a stall, a full queue), so it may have advanced much less
                    elapsed = max(h - self._prev_host, 0) * self.tick_hz / NS
                    limit = self.rule.limit(elapsed)
                    k = max(0, round((elapsed - d) / m))  # whole wraps, only when the host gap spans a wrap period
                    while k > 0 and d + k * m > limit:
                        k -= 1
                    step = d + k * m
                    reset = self.rule.jumped_forward(step, elapsed)
                else:
                    step = d
                    reset = self.rule.jumped_forward(d)
                if reset and 0 < m - d <= self._back:  # behind the newest: unwrapped so; it stays the reference
                    self.behind += 1
                    ticks[i] = self._ticks - (m - d)
                    seg[i] = self.segment
                    continue
                if reset:
                    self.segment += 1
                    self.resets += 1
                    resets.append(i)
                    self._ticks = r
                else:
                    self.wraps += (self._ticks % m + step) // m
                    self._ticks += step
            self._prev_raw = r
            if h is not None:
                self._prev_host = h
            ticks[i] = self._ticks
            seg[i] = self.segment
        return Unwrapped(self._to_ns(ticks), seg, resets)

    def peek(self, raw: int) -> int:
        """Device ns of a side reading (a trigger edge, a pong) near the last reading, without changing state:
        the representative of ``raw`` closest to the last unwrapped value."""
        r = int(raw) & (self.modulus - 1)
        if self._prev_raw is None:
            return int(self._to_ns(np.array([r]))[0])
        d = (r - self._prev_raw) % self.modulus
        if d >= self.modulus // 2:
            d -= self.modulus
        return int(self._to_ns(np.array([self._ticks + d]))[0])
