"""The live agent's clocks keep bounded memory: no history for the offline two-sided ``smooth`` (the envelope's block
minima beyond twice the window, the filter banks' measurement logs), and the live corrections are the same as with it."""

import numpy as np
import pytest

from synchub.agent.clock.envelope import Envelope
from synchub.agent.clock.model import ClockModel
from synchub.drivers.sim.clocks import ClockSpec, DeviceClock

NS = 1_000_000_000


def test_envelope_with_keep_holds_a_bounded_window_and_counts_every_block():
    env = Envelope(NS, 60 * NS, keep_ns=120 * NS)
    full = Envelope(NS, 60 * NS)
    for k in range(3600):  # an hour of 1 s blocks, 4 chunks each
        d = np.arange(4, dtype=np.float64) * 0.25 * NS + k * NS
        m = 1e6 + 1e3 * np.sin(d / 7e9) + 2e-6 * d
        env.add(d, m)
        full.add(d, m)
        assert len(env.d) <= 2 * 120 + 2
        assert env.line == full.line  # the live line and bounds do not need what was let go
    assert env.closed == full.closed == len(full.d) == 3599
    assert env.upper_bound(3599.0 * NS, 2e-6, 30 * NS, 0.0) == full.upper_bound(3599.0 * NS, 2e-6, 30 * NS, 0.0)


@pytest.mark.parametrize("history", [True, False])
def test_live_model_memory_after_an_hour_of_edges_and_arrivals(history):
    clock = DeviceClock(ClockSpec(offset_s=2.0, drift_ppm=-40, random_walk_ppm=0.2, latency_min_ms=0.2,
                                  latency_max_ms=2.0), 3600.0, seed=3, origin_ns=10**12)
    true, dev, _ = clock.regular_samples(20.0)
    host = clock.arrivals(true)
    model = ClockModel("imu", nominal_period_ns=50_000_000, window_s=60.0)
    model.history = history
    ref = ClockModel("imu", nominal_period_ns=50_000_000, window_s=60.0)  # keeps everything
    for a in range(0, len(true), 20):  # 1 s chunks and a 1 Hz trigger edge each
        model.add_arrivals(dev[a : a + 20], host[a : a + 20])
        ref.add_arrivals(dev[a : a + 20], host[a : a + 20])
        model.add_edges(dev[a : a + 1], true[a : a + 1], 1000.0)
        ref.add_edges(dev[a : a + 1], true[a : a + 1], 1000.0)
        if a % 4000 == 0:  # the live correction does not depend on the history
            assert np.array_equal(model.map(dev[a : a + 20])[0], ref.map(dev[a : a + 20])[0])
    seg = model.segments[-1]
    if history:
        assert len(seg.trig.log_d) > 3000 and len(seg.env.d) > 3000
    else:  # bounded by the window, not the run
        assert len(seg.trig.log_d) == len(seg.probe.log_d) == 0
        assert len(seg.env.d) <= 2 * 2 * 60 + 2
        assert seg.env.closed == len(ref.segments[-1].env.d)
