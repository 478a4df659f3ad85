"""The reset detector: where a device clock's timeline breaks between two readings.  Pure.

The one rule of the tree for a clock reset seen in device times (``unwrap.Unwrapper`` on raw counters,
``timeline.Timeline`` on samples and evidence, ``edge_filter.EdgeFilter`` on a device's trigger edges): between a
reading at device time ``d0`` (received at host time ``h0``) and the next at ``d1`` (``h1``),

* the device clock **went back** when ``d0 - d1 > back``;
* it **jumped forward** when it advanced more than the host's clock did by more than ``forward`` plus ``rate_tol``
  of the host's elapsed time (the host may have read late, so it may have advanced much less; never more than its
  own elapsed time and a tolerance); without host times, when it advanced more than ``max_step``.

Values are in whatever unit the caller works in (ns, or counter ticks), scalars or numpy arrays.  What the clock
model learns besides (a sample that would map to after it arrived, an arrival floor that rose and stayed, agreeing
outlier edges) needs its estimates and lives in ``timeline``; ``step_boundary`` places a step among the samples that
could be on either side of it, by their latencies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ResetRule:
    back: float = math.inf  # the device clock may go back this much (out-of-order readings)
    forward: float = math.inf  # it may get this much ahead of the host's clock (buffering, a late first reading)
    rate_tol: float = 0.0  # and this fraction of the host's elapsed time ahead (the clocks' rate difference)
    max_step: float = math.inf  # without host times: the largest step that is not a reset

    def went_back(self, prev, cur):
        """True where the device time ``cur`` lies more than ``back`` before ``prev``."""
        return (prev - cur) > self.back

    def limit(self, host_elapsed):
        """The largest advance of the device clock over a host interval ``host_elapsed`` (clipped at 0)."""
        h = np.maximum(host_elapsed, 0)
        if self.rate_tol:
            return h + self.forward + self.rate_tol * h
        return h + self.forward

    def jumped_forward(self, step, host_elapsed=None):
        """True where the device clock advanced by ``step`` over ``host_elapsed`` of host time (None: unknown)
        by more than it can have."""
        if host_elapsed is None:
            return step > self.max_step
        return step > self.limit(host_elapsed)


#: Below the link's latency floor by more than this and the line's margin, a sample cannot be on that timeline
#: (``step_boundary``).
STEP_FLOOR_MARGIN_NS = 50_000


def step_boundary(lat_old: np.ndarray, lat_new: np.ndarray, held: np.ndarray, margin_old: float,
                  margin_new: float) -> int:
    """Where a clock stepped among samples (in time order) that could be on either timeline: the index of the first
    one on the new timeline (``len`` for none).  ``lat_*``: each sample's latency on either line; ``held``: the
    latencies of samples surely on the old one (the link's); ``margin_*``: 3 sigma of either line.  The boundary is
    the most likely under the link's latencies (their histogram, smoothed; a latency under their floor by the line's
    margin and ``STEP_FLOOR_MARGIN_NS``: arrived before it was taken, all but impossible); of equally likely ones,
    the middle one."""
    ref = np.sort(held)
    w = max(STEP_FLOOR_MARGIN_NS, float(ref[(9 * len(ref)) // 10] - ref[len(ref) // 10]) / 8)

    def logp(lat: np.ndarray, margin: float) -> np.ndarray:
        near = np.searchsorted(ref, lat + w) - np.searchsorted(ref, lat - w)
        p = (near + 0.5) / (len(ref) + 1.0)
        return np.log(np.where(lat < ref[0] - margin - STEP_FLOOR_MARGIN_NS, 1e-3 / len(ref), p))

    on_old = np.concatenate([[0.0], np.cumsum(logp(lat_old, margin_old))])
    on_new = np.concatenate([np.cumsum(logp(lat_new, margin_new)[::-1])[::-1], [0.0]])
    ll = on_old + on_new
    best = np.flatnonzero(ll >= ll.max() - 1e-9)
    return int(best[len(best) // 2])
