"""TriggerMatcher: periodic pulses with missed/spurious edges, pulse widths, bad input, barcodes, device resets."""

from __future__ import annotations

import numpy as np

from synchub.agent.clock.model import ClockModel
from synchub.agent.clock.triggers import EdgeFilter, TriggerMatcher
from synchub.agent.core.evidence import TriggerEdge
from synchub.agent.core.units import NS
from synchub.drivers.sim.clocks import ClockSpec, DeviceClock

W = 10_000_000


def _train(seed=1, dur=300, miss=0.1, spurious=30):
    clk = DeviceClock(ClockSpec(offset_s=123.4, drift_ppm=100, jitter_us=2), dur, seed)
    rng = np.random.default_rng(seed)
    te = (np.arange(1, dur) * NS).astype(np.int64)
    dev = clk.to_device(te, jitter=True)
    host = clk.arrivals(te)
    kd, kr = rng.random(len(te)) > miss, rng.random(len(te)) > miss
    d_edges = [TriggerEdge("s", int(d), "device", width_ns=W, host_ns=int(h)) for d, h, k in zip(dev, host, kd, strict=False) if k]
    for t in rng.uniform(0, dur, spurious):  # glitches on the device input: short pulses
        d_edges.append(TriggerEdge("s", int(clk.to_device(np.array([int(t * NS)]))[0]), "device", width_ns=50_000,
                                   host_ns=int(t * NS) + 1_000_000))
    r_edges = [TriggerEdge("trig", int(r), "ref", width_ns=W) for r, k in zip(te, kr, strict=False) if k]
    d_edges.sort(key=lambda e: e.t_ns)
    return clk, te, kd & kr, d_edges, r_edges


def _run(m, d_edges, r_edges):
    pairs, i, j = [], 0, 0
    while i < len(d_edges) or j < len(r_edges):
        pairs += m.add_ref(r_edges[j : j + 3])
        j += 3
        pairs += m.add_device(d_edges[i : i + 2])
        i += 2
    return np.array(pairs)


def test_periodic_pulses_with_missed_and_spurious_edges():
    clk, te, both, d_edges, r_edges = _train()
    m = TriggerMatcher(NS, min_width_ns=1_000_000, max_width_ns=NS // 2)
    pairs = _run(m, d_edges, r_edges)
    truth = clk.to_true(pairs[:, 0], 0)
    assert np.max(np.abs(truth - pairs[:, 1])) < 20_000  # every pair is the same pulse (jitter only)
    assert len(pairs) >= both.sum() - 3
    assert m.stats["device_width"] == 30  # the glitches never reach the matching


def test_bad_edges_rejected_and_counted_model_unharmed():
    clk, te, both, d_edges, r_edges = _train(seed=2, miss=0.0, spurious=0)
    good = TriggerMatcher(NS, min_width_ns=1_000_000)
    gp = _run(good, list(d_edges), list(r_edges))
    bad = list(d_edges)

    def after(i, edge):
        bad.insert(bad.index(d_edges[i]) + 1, edge)

    after(49, d_edges[49])  # duplicate
    after(80, TriggerEdge("s", d_edges[79].t_ns - 200_000_000, "device", width_ns=W))  # out of order
    after(119, TriggerEdge("s", d_edges[119].t_ns + 300_000_000, "device", width_ns=0))  # width 0
    for k in range(9, 0, -1):  # a burst at 10x the rate
        after(200, TriggerEdge("s", d_edges[200].t_ns + k * NS // 10, "device", width_ns=W))
    m = TriggerMatcher(NS, min_width_ns=1_000_000)
    bp = _run(m, bad, list(r_edges))
    assert m.stats["device_duplicate"] == 1
    assert m.stats["device_out_of_order"] == 1
    assert m.stats["device_width"] == 1
    assert m.stats["device_too_soon"] == 9
    assert np.array_equal(np.unique(bp, axis=0), np.unique(gp, axis=0))  # same pairs as the clean run
    a, b = ClockModel(), ClockModel()
    a.add_edges(gp[:, 0], gp[:, 1], 2828)
    b.add_edges(bp[:, 0], bp[:, 1], 2828)
    assert a.map(np.array([100 * NS]))[0][0] == b.map(np.array([100 * NS]))[0][0]


def test_edge_filter_reanchors_after_a_spurious_first_edge():
    f = EdgeFilter(NS, counts={})
    assert f.accept(400_000_000)  # a glitch taken as the first edge
    ok = [f.accept(k * NS) for k in range(1, 8)]
    assert ok[:3] == [False, False, True] and all(ok[3:])
    assert f.counts["reanchor"] == 1


def test_period_off_by_10x_on_the_slow_side_is_counted():
    f = EdgeFilter(NS, counts={})
    assert f.accept(0)
    assert f.accept(10 * NS)  # ten periods later: missed edges, still on the grid
    assert not f.accept(11 * NS + NS // 2)  # one and a half periods later: off the grid
    assert f.counts["off_period"] == 1


def test_first_match_from_host_time_and_from_prior():
    m = TriggerMatcher(NS, max_latency_ns=50_000_000)
    assert m.add_device([TriggerEdge("s", 5_000, "device", host_ns=2 * NS + 3_000_000)]) == []
    assert m.add_ref([TriggerEdge("t", 1 * NS, "ref"), TriggerEdge("t", 2 * NS, "ref")]) == [(5_000, 2 * NS)]
    m2 = TriggerMatcher(NS, prior=lambda d: (d + 7 * NS, 1_000_000))
    m2.add_ref([TriggerEdge("t", 7 * NS + 10 * k, "ref") for k in (0,)])
    assert m2.add_device([TriggerEdge("s", 0, "device")]) == [(0, 7 * NS)]


def test_ambiguous_window_waits_instead_of_guessing():
    m = TriggerMatcher(NS // 10, max_latency_ns=500_000_000)  # latency longer than the period: ambiguous
    m.add_ref([TriggerEdge("t", k * NS // 10, "ref") for k in range(1, 6)])
    assert m.add_device([TriggerEdge("s", 42, "device", host_ns=NS // 2 + 1)]) == []
    assert m.stats["ambiguous"] >= 1


def test_barcodes_identify_pulses_by_value():
    m = TriggerMatcher(0)
    assert m.add_device_code(1_000, 7) == []
    assert m.add_ref_code(5_000_000_000, 8) == []
    assert m.add_ref_code(4_000_000_000, 7) == [(1_000, 4_000_000_000)]
    assert m.add_device_code(1_000_000_000 + 1_000, 8) == [(1_000_000_000 + 1_000, 5_000_000_000)]
    assert m.add_device_code(3, 8) == [] and m.add_device_code(3, 8) == []
    assert m.stats["code_duplicate"] == 1


def test_device_clock_reset_restarts_matching():
    spec = ClockSpec(offset_s=50.0, drift_ppm=30, jitter_us=1, resets_at_s=(60.5,))
    clk = DeviceClock(spec, 120, 3)
    te = (np.arange(1, 120) * NS).astype(np.int64)
    dev = clk.to_device(te)
    host = te + 2_000_000
    m = TriggerMatcher(NS, max_latency_ns=100_000_000)
    pairs = []
    for t, d, h in zip(te, dev, host, strict=False):
        pairs += m.add_ref([TriggerEdge("t", int(t), "ref")])
        pairs += m.add_device([TriggerEdge("s", int(d), "device", host_ns=int(h))])
    pairs = np.array(pairs)
    assert m.stats["device_clock_reset"] == 1
    seg = clk.segment_of(pairs[:, 1])
    truth = np.array([clk.to_true(np.array([d]), s)[0] for d, s in zip(pairs[:, 0], seg, strict=False)])
    assert np.max(np.abs(truth - pairs[:, 1])) < 10_000 and len(pairs) >= 115


def _strobe(report_ms, seed=5, period=10_000_000, n=1500, width=2_500_000):
    """A 100 Hz camera strobe: true edges, the device's stamps (offset, 40 ppm), each report's host time (after the
    pulse ended, ``report_ms`` (lo, hi) later)."""
    clk = DeviceClock(ClockSpec(offset_s=3.0, drift_ppm=40, jitter_us=1), n * period / NS + 2, seed)
    rng = np.random.default_rng(seed)
    te = (NS // 2 + np.arange(n) * period).astype(np.int64)
    host = te + width + np.rint(rng.uniform(*report_ms, n) * 1e6).astype(np.int64)
    return clk, te, clk.to_device(te, jitter=True), host


def _feed(m, te, dev, host, chunk=10):
    """Device edges as their reports arrive, ``chunk`` at a time; before each chunk, every reference edge up to
    its last report (a GPIO line's edges come at once)."""
    pairs, j = [], 0
    for i in range(0, len(te), chunk):
        k = int(np.searchsorted(te, host[i:i + chunk].max(), side="right"))
        pairs += m.add_ref([TriggerEdge("t", int(t), "ref") for t in te[j:k]])
        j = k
        pairs += m.add_device([TriggerEdge("s", int(d), "device", host_ns=int(h))
                               for d, h in zip(dev[i:i + chunk], host[i:i + chunk], strict=True)])
    return np.array(pairs)


def test_a_fast_line_locks_from_its_reports_where_the_prior_cannot_tell_its_edges_apart():
    # an arrival-based prior (late by the link's latency, 10 ms wide) cannot pick one of 100 Hz edges; the matcher
    # had then waited for a better prior forever (no pair in the whole run), now the reports' host times lock it
    clk, te, dev, host = _strobe((1.0, 2.0))
    m = TriggerMatcher(10_000_000, prior=lambda d: (int(clk.to_true(np.array([d]), 0)[0]) + 5_000_000, 10_000_000))
    pairs = _feed(m, te, dev, host)
    assert len(pairs) >= len(te) - 10
    assert np.max(np.abs(clk.to_true(pairs[:, 0], 0) - pairs[:, 1])) < 20_000
    assert m.state()["lock"] == "causal" and 3.4 < m.state()["lock_least_latency_ms"] < 4.5


def test_the_causal_lock_takes_the_latest_time_the_stream_samples_allow():
    # reports 10.5-18.5 ms after their edge: more than a period (the pulse's width, then the link); the stream's
    # samples arrive 8-16 ms after they are taken, so the arrival envelope bounds each edge's reference time
    clk, te, dev, host = _strobe((8.0, 16.0))
    bound = TriggerMatcher(10_000_000, bound=lambda d: int(clk.to_true(np.array([d]), 0)[0]) + 8_000_000)
    pairs = _feed(bound, te, dev, host)
    assert len(pairs) >= len(te) - 10 and np.max(np.abs(clk.to_true(pairs[:, 0], 0) - pairs[:, 1])) < 20_000
    assert 7.9 < bound.state()["lock_least_latency_ms"] < 8.1
    # from the reports alone the same edges lock one period late: no host time can tell (the documented limit),
    # and the state says what the lock assumed
    blind = _feed(TriggerMatcher(10_000_000), te, dev, host)
    err = clk.to_true(blind[:, 0], 0) - blind[:, 1]
    assert len(blind) >= len(te) - 10 and np.all(np.abs(err + 10_000_000) < 20_000)


def test_a_prior_that_tells_the_edges_apart_wins_over_the_reports():
    clk, te, dev, host = _strobe((8.0, 16.0))
    m = TriggerMatcher(10_000_000, prior=lambda d: (int(clk.to_true(np.array([d]), 0)[0]) + 300_000, 500_000))
    pairs = _feed(m, te, dev, host)
    assert np.max(np.abs(clk.to_true(pairs[:, 0], 0) - pairs[:, 1])) < 20_000 and m.state()["lock"] == "prior"


def _irregular(seed, n=800):
    """An aperiodic line (events 3-12 ms apart: a lick sensor, frames on demand), its device stamps and reports."""
    rng = np.random.default_rng(seed)
    te = (NS // 2 + np.cumsum(rng.uniform(3e6, 12e6, n))).astype(np.int64)
    clk = DeviceClock(ClockSpec(offset_s=3.0, drift_ppm=40, jitter_us=1), te[-1] / NS + 2, seed)
    host = te + np.rint(rng.uniform(1e6, 20e6, n)).astype(np.int64)
    return clk, te, clk.to_device(te, jitter=True), host


def test_an_aperiodic_line_locks_on_the_one_offset_its_intervals_match():
    # events closer than the arrival prior's window: it was ambiguous for every edge (no pair in the whole run)
    clk, te, dev, host = _irregular(4)
    m = TriggerMatcher(0, prior=lambda d: (int(clk.to_true(np.array([d]), 0)[0]) + 8_000_000, 10_000_000))
    pairs = _feed(m, te, dev, host, chunk=5)
    assert len(pairs) >= len(te) - 5 and m.state()["lock"] == "causal"
    assert np.max(np.abs(clk.to_true(pairs[:, 0], 0) - pairs[:, 1])) < 20_000


def test_an_aperiodic_line_whose_reference_shows_another_pattern_pairs_nothing():
    clk, te, dev, host = _irregular(5)
    _, other, _, _ = _irregular(6)  # the reference line carries some other train of events
    m = TriggerMatcher(0)
    pairs = _feed(m, np.sort(other), dev, host, chunk=5)
    assert len(pairs) == 0  # no lock: no offset finds more partners than chance would


def test_after_the_device_clock_went_back_a_stale_bound_does_not_place_the_edges():
    # the caller's model has not seen the reset yet: its bound maps the new timeline's device times 2 s early
    spec = ClockSpec(offset_s=3.0, drift_ppm=40, jitter_us=1, resets_at_s=(6.005,))
    clk = DeviceClock(spec, 14, 7)
    rng = np.random.default_rng(7)
    te = (NS // 2 + np.arange(1200) * 10_000_000).astype(np.int64)
    dev = clk.to_device(te, jitter=True)
    seg = clk.segment_of(te)
    host = te + 2_500_000 + np.rint(rng.uniform(1e6, 2e6, len(te))).astype(np.int64)
    before = te[seg == 0]
    stale = TriggerMatcher(10_000_000, bound=lambda d: int(clk.to_true(np.array([d]), 0)[0]) + 1_000_000)
    pairs = _feed(stale, te, dev, host)
    truth = np.array([clk.to_true(np.array([d]), int(r >= before[-1] + 5_000_000))[0] for d, r in pairs])
    assert stale.stats["device_clock_reset"] == 1 and np.max(np.abs(truth - pairs[:, 1])) < 20_000
    assert len(pairs) >= len(te) - 120  # it waits up to BOUND_WAIT_NS (1 s) for a usable bound, then locks on reports
