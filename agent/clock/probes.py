"""Round-trip probes: the host sent at ``s``, the device stamped ``d``, the reply came back at ``r``.  Pure.

The device stamp lies between send and receive, so the offset (reference - device) lies in ``[s - d, r - d]``
(``probe_band``: widened by the device counter's tick, learnt as the gcd of the stamps' distances; tightened from
above by the arrival envelope, since a sample arrives after it was taken).  ``RttWindow`` is the min-RTT filter:
probes whose band is not within a small margin of the lower envelope of the bands' widths over a sliding window
(the last ``PROBE_RTT_KEEP`` probes, at most a quarter window) are dropped, as LSL/Klipper/TICSync do.
``fit_probe`` feeds the centre of a kept band to the segment's probe filter bank with variance ``halfwidth**2 / 3``
(uniform over the band) plus the *wander*: the scatter of the probes around the line beyond what their bands allow
(a link or device whose offset moves at short time scales), learnt from the innovations.

``lsl_offset`` is what liblsl's ``time_correction`` computes from a burst of probes (the offset of the probe with the
smallest round trip, midpoint convention); the benchmark writes it into XDF ClockOffset chunks.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from synchub.agent.core.evidence import Probe
from synchub.agent.core.units import NS

from .segment import PROBE_RTT_KEEP, Segment

MIN_BANK = 5  # probes the bank takes whatever their round trip, before the min-RTT filter starts


def probe_band(seg: Segment, s: int, d: int, r: int) -> tuple[float, float, bool, float]:
    """The offset band ``(lo, hi)`` of a probe relative to the segment's ``z0``, whether the arrival envelope
    contradicted it (a bound is wrong somewhere: the round trip's band is kept), and the round trip's own ``hi``
    (before the envelope tightened it)."""
    dr = float(d - seg.dev0)
    lo, hi = float(s - d - seg.z0), float(r - d - seg.z0)
    # a coarse device counter stamps anywhere within its tick (the gcd of the stamps' distances, once there are
    # enough of them to tell): the band is that much wider
    seg.tick_gcd = math.gcd(seg.tick_gcd, abs(d - seg.dev0))
    seg.tick_n += 1
    if seg.tick_n >= 8 and 1_000 <= seg.tick_gcd <= 10_000_000:
        lo -= seg.tick_gcd / 2
        hi += seg.tick_gcd / 2
    bank = seg.probe
    inconsistent, whole_hi = False, hi
    if seg.env.n:  # arrivals bound the offset from above: tighten the probe's upper bound
        if bank.n >= 5:  # carried along the probes' skew, with slack for its uncertainty, up to 10 s
            k = bank.best
            slope, span = float(bank.x[k, 1]), 10.0 * NS
            slack = 3.0 * math.sqrt(max(float(bank.P[k, 1, 1]) * bank.scale, 0.0)) + 2e-6
        else:
            slope, span, slack = (seg.env.line[2] if seg.env.line else 0.0), 2.0 * NS, 5e-4
        ub = seg.env.upper_bound(dr, slope, span, slack)
        if ub is not None:
            if ub < lo - 50_000:
                inconsistent = True
            elif ub < hi:
                hi = max(ub, lo)
    return lo, hi, inconsistent, whole_hi


class RttWindow:
    """The min-RTT filter over a sliding window of band widths (a changed route is followed within the window)."""

    def __init__(self, window_s: float, margin: float):
        self.horizon = window_s * NS / 4
        self.margin = margin
        self.widths: deque[tuple[int, int]] = deque()  # (host send, band width) of recent probes
        self.filtered_run = 0  # probes filtered out since the last one kept

    def clear(self) -> None:
        self.widths.clear()
        self.filtered_run = 0

    def admit(self, s: int, width: int, bank_n: int) -> bool:
        """Whether a probe sent at ``s`` whose band is ``width`` wide is within the margin of the floor."""
        q = self.widths
        q.append((s, width))
        while len(q) > PROBE_RTT_KEEP or s - q[0][0] > self.horizon:
            q.popleft()
        # until the bank has a few probes, every one is taken (it needs a skew, and weighs each by its band's
        # width): a filter on a floor one lucky probe set left a bank of one probe blind to the drift (liblsl's
        # corrections over loopback, 47 us wide once and 130-165 us after: 200 ppm unseen over an 8 s run, the
        # samples 1.1 ms off RMS); after eight rejections in a row the floor is the smallest of the last eight (this
        # one's included): one lucky or lying probe, or early bands a wrong first line tightened too far
        # (``probe_band``), do not lock the filter while that line's error grows
        if bank_n < MIN_BANK:
            self.filtered_run = 0
            return True
        floor = min(x for _, x in list(q)[-8:]) if self.filtered_run >= 8 else min(x for _, x in q)
        if width > floor * (1.0 + self.margin) + 20_000:
            self.filtered_run += 1
            return False
        self.filtered_run = 0
        return True


def fit_probe(seg: Segment, dr: float, lo: float, hi: float, rtt: int, excluded: int = 0) -> bool:
    """The band's centre into the segment's probe bank; True when the bank took it.  Learns the wander from the
    innovations (also from a rejected probe, unless the rejections made a step).  ``excluded`` (``excludes_line``):
    rejected whatever its innovation (a band wide against the step would let the bank take it and creep onto the new
    timeline), and no wander learnt from it."""
    bank = seg.probe
    z, w = (lo + hi) / 2, (hi - lo) / 2
    band_var = w * w / 3 + 1e6
    fresh = bank.n == 0
    if not fresh:
        pred, pvar = bank.predict_raw(dr)
    if bank.update(dr, z, band_var + seg.wander, outlier=bool(excluded)):
        if not fresh:
            # innovations beyond the line's and the band's variance: the offset's short-term wander
            excess = (z - pred) ** 2 - pvar - band_var
            a = 0.05 if seg.probes >= 20 else 1.0 / (seg.probes + 1)
            seg.wander = max(seg.wander + a * (excess - seg.wander), 0.0)
        seg.min_rtt = float(rtt) if seg.probes == 0 else min(seg.min_rtt, float(rtt))
        seg.bands.append(w)
        # each centre is off by at most its half-width (the link's asymmetry); the median of the recent ones
        # bounds the estimate's bias (the tightest would be the bound if the one-way bounds always held: a
        # coarse or late device stamp breaks them)
        seg.band = sorted(seg.bands)[len(seg.bands) // 2]
        seg.probes += 1
        return True
    if not bank.step and not fresh and not excluded:
        # excursions say the offset wanders more than thought (bounded: one outlier is no trend)
        excess = min((z - pred) ** 2 - pvar - band_var, 9 * (band_var + seg.wander))
        seg.wander = max(seg.wander + 0.05 * (excess - seg.wander), 0.0)
    return False


def excludes_line(seg: Segment, dr: float, lo: float, hi: float) -> int:
    """Whether a probe's band ``(lo, hi)`` (relative to the segment's ``z0``) leaves out the segment's probe line
    beyond 3 sigma of it and of the wander: the device did not stamp where the line says whatever the link's delays
    were (a step of its clock; or a lying stamp), so the min-RTT filter must not hide it from the bank's step
    detection.  1: the band lies above the line (the clock stepped back), -1: below, 0: neither, or the bank has
    fewer than five probes."""
    bank = seg.probe
    if bank.n < 5:
        return 0
    a, var = bank.predict(np.array([dr]))
    reach = 3.0 * math.sqrt(float(var[0]) + seg.wander)
    return 1 if float(a[0]) + reach < lo else -1 if float(a[0]) - reach > hi else 0


def lsl_offset(probes: list[Probe]) -> tuple[int, int, int] | None:
    """LSL's estimate from a burst: ``(host time, offset = host - device, rtt)`` of the minimum-RTT probe."""
    best = None
    for p in probes:
        rtt = p.host_recv_ns - p.host_send_ns
        if rtt < 0:
            continue
        if best is None or rtt < best[2]:
            mid = p.host_send_ns + rtt // 2
            best = (mid, mid - p.device_ns, rtt)
    return best
