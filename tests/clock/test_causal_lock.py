"""causal_lock: a trigger line's first pairing from its reports alone (pure function, tested directly)."""

from __future__ import annotations

import numpy as np

from synchub.agent.clock.causal_lock import CAUSAL_EDGES, causal_lock
from synchub.agent.core.units import NS

OFF = 7_000_000_123  # device time = reference time - OFF


def _line(ref, late_ns, n_dev, rng, jitter_ns=1_000_000):
    """The last ``n_dev`` edges of ``ref`` as the device reports them: (device, report host time) pairs."""
    te = np.asarray(ref[-n_dev - 2 : -2])
    host = te + late_ns + rng.integers(0, jitter_ns, len(te))
    return [(int(t) - OFF, int(h)) for t, h in zip(te, host, strict=True)]


def test_a_periodic_line_locks_on_the_latest_offset_that_keeps_every_edge_before_its_report():
    rng = np.random.default_rng(1)
    ref = list(NS + np.arange(200) * 10_000_000)  # a 100 Hz strobe
    dev = _line(ref, 3_000_000, 8, rng)  # reported 3-4 ms late: under one period
    lock = causal_lock(dev, dev, ref, 10_000_000, 0, 0)
    assert lock is not None and lock.offset == OFF
    assert 3_000_000 <= lock.least < 4_000_000 and lock.report_least == lock.least


def test_reports_later_than_a_period_lock_whole_periods_late_unless_a_bound_is_tighter():
    rng = np.random.default_rng(2)
    ref = list(NS + np.arange(200) * 10_000_000)
    dev = _line(ref, 25_000_000, 8, rng)  # 25-26 ms late: the documented limit, two periods off
    lock = causal_lock(dev, dev, ref, 10_000_000, 0, 0)
    assert lock is not None and lock.offset == OFF + 20_000_000
    bound = [(d, d + OFF + 4_000_000) for d, _ in dev]  # the stream's samples say: at most 4 ms after the edge
    lock = causal_lock(dev, bound, ref, 10_000_000, 0, 0)
    assert lock is not None and lock.offset == OFF and lock.least == 4_000_000
    assert lock.report_least >= 25_000_000  # what the reports themselves took, kept as the link's


def test_after_a_reset_the_offset_with_the_links_latency_wins():
    rng = np.random.default_rng(3)
    ref = list(NS + np.arange(200) * 10_000_000)
    dev = _line(ref, 25_000_000, 8, rng)
    first = causal_lock(dev, [(d, d + OFF + 4_000_000) for d, _ in dev], ref, 10_000_000, 0, 0)
    again = causal_lock(dev, dev, ref, 10_000_000, 0, first.report_least)  # no bound yet on the new timeline
    assert again is not None and again.offset == OFF


def test_an_aperiodic_line_locks_where_its_intervals_match_and_not_on_another_train():
    rng = np.random.default_rng(4)
    ref = list(NS + np.cumsum(rng.uniform(3e6, 12e6, 400)).astype(np.int64))
    dev = _line(ref, 20_000_000, 16, rng)  # events 3-12 ms apart, reported 20-21 ms late
    lock = causal_lock(dev, dev, ref, 0, 5 * NS, 0)
    assert lock is not None and lock.offset == OFF
    other = list(NS + np.cumsum(rng.uniform(3e6, 12e6, 400)).astype(np.int64))  # another line's events
    assert causal_lock(dev, dev, other, 0, 5 * NS, 0) is None


def test_too_few_partners_is_no_lock():
    ref = list(NS + np.arange(200) * 10_000_000)
    dev = [(int(t) - OFF, int(t) + 3_000_000) for t in ref[-CAUSAL_EDGES - 2 : -2]]
    gaps = ref[:-100] + [ref[-3]]  # all but one pending edge's partner missing, the rest beyond the 64-period span
    assert causal_lock(dev, dev, gaps, 10_000_000, 0, 0) is None
    assert causal_lock(dev, dev, ref, 10_000_000, 0, 0).offset == OFF
