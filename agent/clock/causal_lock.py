"""The causal lock: a trigger line's first pairing where the stream's prior cannot tell its edges apart.

Pure (no I/O); ``TriggerMatcher`` (``triggers``) asks it before its first pair.  Given the pending device edges,
each with the latest reference time it can have (its report's host time, or tighter, the stream's arrival bound:
no sample is received before it is taken), and the reference edges, the candidates are the offsets (reference -
device) that put the newest device edge on a reference edge before its latest time, each kept where no pending
edge would come after its own.  A periodic line's lock is the latest candidate that gives ``CAUSAL_EDGES`` edges a
partner; after a device clock reset, the candidate whose reports' least latency is the last lock's (the link's).
An aperiodic line's (events closer than the prior's window: a lick sensor, frames on demand) is the one offset at
which its irregular intervals match: the most edges with a partner, ``APERIODIC_MARGIN`` more than any other
candidate and more than chance gives any (``APERIODIC_FALSE``).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

#: Pending device edges with a partner that a causal lock needs; how many periods back it looks for their partners.
CAUSAL_EDGES, CAUSAL_SPAN = 3, 64
#: A causal lock's slack for a reference edge stamped after its report or bound (the stamp's error): this share of a
#: period, at most ``CAUSAL_SLACK_NS`` (0.2 ms let a new segment's loose bound lock a 10 ms line one period late).
CAUSAL_SLACK = 0.02
CAUSAL_SLACK_NS = 100_000
#: An aperiodic line's causal lock: how close a device edge's partner must be (ns), and by how many more edges the
#: best offset must beat the next (its irregular intervals match at one offset only).
APERIODIC_TOL_NS = 500_000
APERIODIC_MARGIN = 2
#: ... and how unlikely its partners must be by chance (all candidates together: an edge finds a partner within the
#: tolerance by chance as often as 2 x tolerance x the reference's event rate)
APERIODIC_FALSE = 1e-6


@dataclass(frozen=True)
class CausalLock:
    """One causal lock: ``offset`` (reference - device, ns), what it assumes (``least``: the least latency from a
    pending edge to its report or latest time) and the reports' own least latency (``report_least``, kept across
    device clock resets as the link's once the lock pairs)."""

    offset: int
    least: int
    report_least: int


def causal_lock(dev: list[tuple[int, int]], latest: list[tuple[int, int]], refs: list[int], period_ns: int,
                span_ns: int, link_least: int) -> CausalLock | None:
    """The lock, or None.  ``dev``: pending (device_ns, report host_ns); ``latest``: the same edges with their
    latest reference time; ``refs``: the reference edges, ascending; ``span_ns``: how far back an aperiodic line's
    partners are looked for; ``link_least``: the reports' least latency at the last lock (0: none)."""
    p = period_ns
    tol, slack, span = ((0.3 * p, min(CAUSAL_SLACK * p, CAUSAL_SLACK_NS), CAUSAL_SPAN * p) if p
                        else (APERIODIC_TOL_NS, APERIODIC_TOL_NS, span_ns))
    d_last, h_last = latest[-1]
    lo = bisect_left(refs, h_last - span)
    found = []  # (support, offset), ascending offsets
    for r in refs[lo:bisect_right(refs, h_last + slack)]:
        off, support = r - d_last, 0
        for d, h in latest:
            t = d + off
            if t > h + slack:  # this edge would come after its own report (or after its latest time)
                break
            i = bisect_left(refs, t - tol)
            support += i < len(refs) and refs[i] <= t + tol
        else:
            found.append((support, off))
    found = [f for f in found if f[0] >= CAUSAL_EDGES] if p else sorted(found, reverse=True)
    if not p and found:
        chance = min(1.0, 2.0 * tol * (len(refs) - lo) / max(1.0, refs[-1] - refs[lo]))
        k, n = found[0][0], len(latest)
        tail = sum(math.comb(n, j) * chance**j * (1.0 - chance) ** (n - j) for j in range(k, n + 1))
        if k < CAUSAL_EDGES or len(found) * tail > APERIODIC_FALSE or (
                len(found) > 1 and found[1][0] > k - APERIODIC_MARGIN):
            return None
    if not found:
        return None
    late = min(h - d for d, h in dev)  # the reports' least latency is the link's: after a reset, the same again
    off = min(found, key=lambda f: abs(late - f[1] - link_least))[1] if p and link_least else None
    if off is None or abs(late - off - link_least) >= p / 2:
        off = found[-1][1] if p else found[0][1]  # (periodic: the latest)
    return CausalLock(off, int(min(h - d for d, h in latest) - off), late - off)
