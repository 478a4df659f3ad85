"""Arrival-only correction offline (two-sided) must be at least as good as live on the same data."""

import numpy as np
import pytest

from synchub.agent.clock.model import ClockModel
from synchub.drivers.sim.clocks import ClockSpec, DeviceClock


@pytest.mark.parametrize("duration_s", [20.0, 300.0])
def test_offline_arrival_envelope_not_worse_than_live(duration_s):
    clock = DeviceClock(ClockSpec(offset_s=2.0, drift_ppm=-80, random_walk_ppm=0.3, latency_min_ms=0.2,
                                  latency_max_ms=1.0), duration_s, seed=5, origin_ns=10**12)
    true, dev, _ = clock.regular_samples(16000.0)
    host = clock.arrivals(true)
    period = 320  # 20 ms capture periods: every sample of a period arrives with the period's last sample
    host = np.repeat(host[period - 1 :: period], period)[: len(true)]
    n = len(host)
    true, dev = true[:n], dev[:n]
    model = ClockModel("mic", nominal_period_ns=62_500, method="arrival")
    live = np.empty(n, dtype=np.int64)
    for a in range(0, n, period):
        model.add_arrivals(dev[a : a + period], host[a : a + period])
        live[a : a + period] = model.map(dev[a : a + period])[0]
    off = model.map(dev, smooth=True)[0]
    live_err = np.median(np.abs(live - true)[n // 10 :])
    off_err = np.median(np.abs(off - true))
    assert off_err <= 1.1 * live_err + 20_000, (off_err, live_err)
    assert off_err < 1_000_000  # within the link's latency range


def test_arrival_map_before_any_arrival_is_identity_not_a_crash():
    model = ClockModel("x")
    model.add_probe(1_000_000, 5_000, 1_200_000)  # a segment exists, but no arrival envelope yet
    ref, unc, seg = model.map(np.array([5_000, 6_000]), method="arrival")
    assert len(ref) == 2 and np.all(unc > 0)  # no TypeError


def test_arrival_bound_holds_where_a_sparse_streams_envelope_line_tilts_below_the_truth():
    """A log on a serial line: a handful of lines, each late by 1-45 ms.  The lower hull through a few of them tilts
    by thousands of ppm and, carried a few seconds on, lies below the true offset (a mapping bounded by it puts
    events early); the bound from the arrivals themselves, carried with the skew prior, stays above the truth and
    close to it."""
    off = 1_175_000_000
    dev = np.array([1, 2, 3, 4], dtype=np.int64) * 1_000_000_000
    lat = np.array([40, 25, 2, 1], dtype=np.int64) * 1_000_000
    model = ClockModel("log", skew_prior_ppm=300.0)
    model.add_arrivals(dev, dev + off + lat)
    d = np.array([4_500_000_000, 6_000_000_000], dtype=np.int64)
    line = model.map(d, method="arrival")[0]
    assert np.all(line < d + off - 1_000_000)  # the line: more than a millisecond below the truth
    ub = model.arrival_bound(d, 300.0)
    assert np.all(ub >= d + off) and np.all(ub <= d + off + 2_000_000)
    assert np.all(np.isinf(ClockModel("none").arrival_bound(d, 300.0)))  # no arrivals: no bound


def test_arrival_bound_takes_a_fitted_envelope_line_with_a_plausible_slope():
    """A minute of a 10 Hz stream, 1-20 ms late: the envelope's line (late by the link's 1 ms floor) is a tighter
    bound than any single arrival carried with the skew prior, and is used; ``line=False`` leaves it out."""
    rng = np.random.default_rng(2)
    off = 400_000_000
    dev = np.arange(1_000_000_000, 61_000_000_000, 100_000_000, dtype=np.int64)
    model = ClockModel("tlm", skew_prior_ppm=300.0)
    model.add_arrivals(dev, dev + off + rng.integers(1_000_000, 20_000_000, len(dev)))
    d = np.array([30_050_000_000, 61_500_000_000], dtype=np.int64)
    with_line, points = model.arrival_bound(d, 300.0), model.arrival_bound(d, 300.0, line=False)
    assert np.all(with_line < d + off + 1_100_000) and with_line[1] < points[1] - 1_000_000
    assert np.all(with_line >= d + off) and np.all(points >= d + off)
