"""ClockModel: drift tracking, calibrated uncertainty, resets, wraps, outliers, probes, arrivals, aligner offsets."""

from __future__ import annotations

import numpy as np
import pytest

from synchub.agent.clock.choice import UNKNOWN_UNC_NS
from synchub.agent.clock.kalman import least_squares_bound, linear_smoother, q_per_ns
from synchub.agent.clock.model import ClockModel
from synchub.agent.clock.unwrap import Unwrapper
from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.units import NS
from synchub.drivers.sim.clocks import ClockSpec, DeviceClock


def _edges(spec: ClockSpec, dur: float, seed: int, ref_jitter_ns: float = 2000.0):
    clk = DeviceClock(spec, dur, seed)
    rng = np.random.default_rng(seed + 100)
    te = (np.arange(0.5, dur, 1.0) * NS).astype(np.int64)
    dev = clk.to_device(te, jitter=True)
    ref = te + np.rint(rng.normal(0, ref_jitter_ns, len(te))).astype(np.int64)
    return clk, te, dev, ref


def _live_errors(spec, dur, seed, sigma):
    """Feed edges one by one; after each, map the samples since the previous edge (what the agent does)."""
    clk, te, dev, ref = _edges(spec, dur, seed)
    ts, ds, _ = clk.regular_samples(20.0)
    m = ClockModel("x")
    errs, uncs, j = [], [], 0
    for i in range(len(te)):
        m.add_edges(dev[i : i + 1], ref[i : i + 1], sigma)
        k = int(np.searchsorted(ts, te[i], side="right"))
        if k > j and i >= 10:
            r, u, _ = m.map(ds[j:k])
            errs.append(r - ts[j:k])
            uncs.append(u)
        j = k
    return m, np.concatenate(errs), np.concatenate(uncs), clk, ts, ds


def test_tracks_drift_and_thermal_random_walk():
    spec = ClockSpec(offset_s=50.0, drift_ppm=100.0, random_walk_ppm=2.0, jitter_us=2.0)
    m, err, _, clk, ts, ds = _live_errors(spec, 1200, 1, 2828.0)
    assert m.method == "triggers"
    # 100 ppm over 20 min is 120 ms of drift and the walk adds tens of us: tracked to a few us live
    assert np.sqrt(np.mean(err.astype(float) ** 2)) < 3_000
    st = m.state()
    true_now = float(clk.drift_ppm_at(np.array([1199 * NS]))[0])  # the walk moved it away from 100 ppm
    assert abs(st["drift_ppm"] - true_now) < 0.5 and st["edges"] == 1200
    ref, unc, _ = m.map(ds, smooth=True)
    assert np.sqrt(np.mean((ref - ts).astype(float) ** 2)) < 1_500  # two-sided is better than live
    assert np.all(unc > 0) and np.all(unc < 10_000)


def test_uncertainty_roughly_calibrated():
    inside, total = 0, 0
    for seed in range(4):
        spec = ClockSpec(drift_ppm=-60.0, random_walk_ppm=1.0, jitter_us=2.0)
        _, err, unc, *_ = _live_errors(spec, 400, 10 + seed, 2828.0)
        inside += int(np.sum(np.abs(err) <= unc))
        total += len(err)
    frac = inside / total
    assert 0.55 < frac < 0.85, frac  # ~68% of errors within 1 sigma


def test_stated_sigma_wrong_by_3x_still_calibrated_and_accurate():
    spec = ClockSpec(drift_ppm=30.0, jitter_us=2.0)
    _, err, unc, *_ = _live_errors(spec, 400, 3, 9000.0)  # stated 9 us, true 2.8 us
    assert 0.5 < np.mean(np.abs(err) <= unc) < 0.95
    assert np.sqrt(np.mean(err.astype(float) ** 2)) < 1_500


def test_outliers_rejected_and_counted_model_unharmed():
    spec = ClockSpec(drift_ppm=40.0, jitter_us=2.0)
    clk, te, dev, ref = _edges(spec, 300, 5)
    clean, dirty = ClockModel(), ClockModel()
    clean.add_edges(dev, ref, 2828.0)
    bad_ref = ref.copy()
    bad_ref[[50, 120, 121, 200]] += np.array([5_000_000, -300_000, 80_000_000, 1_000_000])  # absurd pairs
    dirty.add_edges(dev, bad_ref, 2828.0)
    assert dirty.state()["rejected"].get("edge_outlier") == 4
    ts, ds, _ = clk.regular_samples(10.0)
    a, _, _ = clean.map(ds, smooth=True)
    b, _, _ = dirty.map(ds, smooth=True)
    assert np.max(np.abs(a - b)) < 200  # ns: four edges fewer, nothing else
    assert dirty.state()["segments"] == 1


def test_step_in_device_clock_becomes_a_new_segment():
    spec = ClockSpec(drift_ppm=10.0, jitter_us=1.0)
    clk, te, dev, ref = _edges(spec, 200, 6)
    dev = dev.copy()
    dev[100:] += 250_000_000  # the device set its own clock forward by 250 ms (no reset to zero)
    m = ClockModel()
    m.add_edges(dev, ref, 1500.0)
    assert m.state()["segments"] == 2 and m.resets == 1
    r, _, _ = m.map(dev[150:160])  # current segment maps the new timeline correctly
    assert np.max(np.abs(r - te[150:160])) < 20_000


def test_reset_detected_from_arrivals_and_segments_map_correctly():
    spec = ClockSpec(offset_s=100.0, drift_ppm=50.0, jitter_us=1.0, resets_at_s=(120.0,), latency_min_ms=0.5,
                     latency_max_ms=2.0)
    clk = DeviceClock(spec, 240, 7)
    true, dev, seg = clk.regular_samples(50.0)
    host = clk.arrivals(true)
    te = (np.arange(0.5, 240, 1.0) * NS).astype(np.int64)
    d_e = clk.to_device(te, jitter=True)
    m = ClockModel()
    segs = []
    # interleave: arrivals in 100 ms chunks, edges as they happen
    chunk = np.searchsorted(host, np.arange(0, 241 * NS, NS // 10))
    ei = 0
    for a, b in zip(chunk[:-1], chunk[1:], strict=False):
        if b > a:
            segs.append(m.add_arrivals(dev[a:b], host[a:b]))
        while ei < len(te) and te[ei] <= host[b - 1 if b > 0 else 0]:
            m.add_edges(d_e[ei : ei + 1], te[ei : ei + 1], 1500.0)
            ei += 1
    segs = np.concatenate(segs)
    assert m.resets == 1 and m.state()["segments"] == 2
    assert np.array_equal(segs, seg[: len(segs)])
    s = m.segment_of(dev, host)
    assert np.array_equal(s, seg)
    ref, unc, _ = m.map(dev, s, smooth=True)
    assert np.max(np.abs(ref - true)) < 20_000  # both sides of the reset, no corrupt mapping
    assert m.method == "triggers"


def test_unwrapped_ticks_in_chunks_and_no_error_jump_at_wrap():
    spec = ClockSpec(offset_s=0.0, drift_ppm=80.0, jitter_us=1.0, counter_bits=16, tick_hz=1000.0)
    clk = DeviceClock(spec, 300, 8)
    true, dev, _ = clk.regular_samples(10.0)
    ticks = clk.ticks(dev)
    assert ticks.max() < 1 << 16 and np.any(np.diff(ticks) < 0)  # it wraps (every 65.5 s)
    chunked = Unwrapper(16, 1000.0)
    full = np.concatenate([chunked.unwrap(ticks[:1000]).device_ns, chunked.unwrap(ticks[1000:]).device_ns])
    assert np.array_equal(full, np.floor_divide(dev, 1_000_000) * 1_000_000)
    # the model on driver-unwrapped times: errors near wraps like elsewhere
    u = Unwrapper(16, 1000.0).unwrap(ticks)
    te = (np.arange(0.5, 300, 1.0) * NS).astype(np.int64)
    m = ClockModel()
    d_e = clk.to_device(te)
    m.add_edges(np.floor_divide(d_e, 1_000_000) * 1_000_000 + 500_000, te, 300_000.0)
    ref, _, _ = m.map(u.device_ns, smooth=True)
    err = np.abs(ref - true)
    wraps = true[np.flatnonzero(np.diff(ticks) < 0) + 1]
    near = np.zeros(len(true), bool)
    for w in wraps:
        near |= np.abs(true - w) < 2 * NS
    assert err[near].max() < 3 * np.percentile(err[~near], 99) + 1000


def test_probes_min_rtt_and_bounds():
    spec = ClockSpec(offset_s=3.0, drift_ppm=25.0, jitter_us=1.0)
    clk = DeviceClock(spec, 300, 9)
    rng = np.random.default_rng(9)
    tp = (np.arange(0.2, 299, 0.5) * NS).astype(np.int64)
    out = rng.uniform(100_000, 300_000, len(tp)).astype(np.int64)  # 0.1-0.3 ms host -> device
    back = rng.uniform(100_000, 300_000, len(tp)).astype(np.int64)
    back[rng.random(len(tp)) < 0.3] += 20_000_000  # some replies stuck behind a 20 ms stall
    m = ClockModel()
    for s, o, b in zip(tp, out, back, strict=False):
        m.add_probe(int(s), int(clk.to_device(np.array([s + o]))[0]), int(s + o + b))
    assert m.method == "probes"
    assert m.state()["rejected"]["probe_rtt_filtered"] > 0.2 * len(tp)
    true, dev, _ = clk.regular_samples(5.0)
    ref, unc, _ = m.map(dev, smooth=True)
    assert np.sqrt(np.mean((ref - true).astype(float) ** 2)) < 60_000  # symmetric link: within ~50 us


@pytest.mark.parametrize("lucky", [0, 1, 3])
def test_one_lucky_probe_before_the_bank_has_a_skew_does_not_starve_it(lucky):
    # liblsl's corrections over loopback: one 47 us wide, the others 130-165 us (a min-RTT filter whose floor that
    # one set took no other: a bank of one probe, 200 ppm unseen, the samples 1.1 ms off RMS over 8 s)
    spec = ClockSpec(offset_s=2.0, drift_ppm=200.0, jitter_us=0.0)
    clk = DeviceClock(spec, 20, 4)
    rng = np.random.default_rng(4)
    tp = (np.arange(0.2, 10, 2.0) * NS).astype(np.int64)
    rtt = rng.uniform(130_000, 165_000, len(tp)).astype(np.int64)
    rtt[lucky] = 47_000
    m = ClockModel()
    for s, r in zip(tp, rtt, strict=True):
        m.add_probe(int(s), int(clk.to_device(np.array([s + r // 2]))[0]), int(s + r))
    st = m.state()
    assert st["probes"] == len(tp), st["rejected"]
    true, dev, _ = clk.regular_samples(50.0)
    keep = true < 10 * NS
    ref, unc, _ = m.map(dev[keep], smooth=True)
    err = (ref - true[keep]).astype(float)
    assert np.sqrt(np.mean(err**2)) < 60_000  # within the bands (200 ppm over 10 s: 2 ms unseen)
    assert abs(st["drift_ppm"] - 200.0) < 20.0


def test_arrival_envelope_sits_at_minimum_latency():
    spec = ClockSpec(offset_s=-7.0, drift_ppm=-120.0, latency_min_ms=2.0, latency_max_ms=12.0, drop_rate=0.05,
                     drop_burst=10)
    clk = DeviceClock(spec, 600, 10)
    rng = np.random.default_rng(10)
    t = np.sort(rng.uniform(0, 600, 6000) * NS).astype(np.int64)  # irregular stream
    keep = ~clk.drop_mask(len(t), rng)
    t = t[keep]
    dev = clk.to_device(t)
    host = clk.arrivals(t, rng)
    m = ClockModel()
    for a in range(0, len(t), 37):
        m.add_arrivals(dev[a : a + 37], host[a : a + 37])
    assert m.method == "arrival"
    ref, unc, _ = m.map(dev, smooth=True)
    bias = (ref - t) / 1e6
    assert 1.5 < np.median(bias) < 3.0  # the min latency (2 ms) is left: arrival times cannot see it
    assert np.median(host - t) / 1e6 > 5.0  # the raw arrival time is much worse
    assert np.all(unc >= 1_000_000)


def test_aligner_offsets_neural_then_hybrid():
    m = ClockModel()
    for k in range(20):
        d = k * NS
        m.add_offset(OffsetEstimate("x", d, 5_000_000 + k * 100, 200_000))
    assert m.method == "neural"
    ref, unc, _ = m.map(np.array([10 * NS]))
    assert abs(int(ref[0]) - (10 * NS + 5_001_000)) < 200_000
    m.add_edges(np.arange(20, 40) * NS, np.arange(20, 40) * NS + 5_002_000 + np.arange(20) * 100, 2000.0)
    assert m.method == "hybrid"


def test_identity_and_bad_input():
    m = ClockModel()
    r, u, s = m.map(np.array([1, 2, 3]))
    assert np.array_equal(r, [1, 2, 3]) and np.all(u == UNKNOWN_UNC_NS) and m.method == "identity"
    assert m.add_edges([1, 2], [3, 4], float("nan")) == 0
    assert m.state()["rejected"]["edge_bad_sigma"] == 2
    assert not m.add_probe(10, 5, 9)  # negative round trip
    with pytest.raises(ValueError):
        m.add_edges([1, 2], [3], 1.0)


def test_late_aligner_offsets_are_used_not_mistaken_for_resets():
    m = ClockModel()
    dev = np.arange(0, 120) * NS
    m.add_arrivals(dev, dev + 7_000_000)
    # the aligner reports offsets for windows centred 30 s in the past
    for k in range(40, 120, 10):
        assert m.add_offset(OffsetEstimate("x", (k - 30) * NS, 5_000_000, 100_000))
    assert m.state()["segments"] == 1 and m.method == "neural"
    assert not m.add_offset(OffsetEstimate("x", -5 * NS, 5_000_000, 100_000))  # before the segment began


def _tailed_link(seed, dur_s=60.0, rate_hz=50.0, drift_ppm=40.0, stalls=6):
    """Probes on a link with long-tailed one-way delays (exponential, 10% stuck behind 5-30 ms stalls) to a device
    whose notion of now wanders (sub-ms jitter and a few catch-up stalls of 4 ms, as a paced simulation or a busy
    device shows): probes (send, device, recv), edge device times and their truth on the host clock."""
    rng = np.random.default_rng(seed)
    off, k = 3 * NS, 1.0 + drift_ppm * 1e-6
    starts = rng.uniform(1, dur_s - 1, stalls) * NS

    def wander(t):
        w = rng.uniform(0, 600_000, len(t))
        for c in starts:
            dt = (t - c) / 1e9
            w += np.where((dt >= 0) & (dt < 0.3), 4_000_000 * (1 - dt / 0.3), 0)
        return w

    def one_way(n, lo):
        x = lo + rng.exponential(1_500_000, n)
        stuck = rng.random(n) < 0.1
        x[stuck] += rng.uniform(5e6, 30e6, stuck.sum())
        return x

    s = np.arange(0.1, dur_s, 1 / rate_hz) * NS
    t_dev = s + one_way(len(s), 80_000)
    d = (t_dev - off - wander(t_dev)) / k
    r = t_dev + one_way(len(s), 120_000)
    te = np.sort(rng.uniform(2, dur_s - 0.5, 200)) * NS
    de = (te - off - wander(te)) / k
    return np.stack([s, d, r], 1).astype(np.int64), de.astype(np.int64), te.astype(np.int64)


def _min_rtt_floor(pr, de, half_window_ns=2 * NS):
    """The plain min-RTT answer: each event mapped by the midpoint of the smallest round trip within 2 s of it."""
    s, d, r = pr[:, 0], pr[:, 1], pr[:, 2]
    out = np.empty(len(de))
    for i, x in enumerate(de):
        sel = np.flatnonzero(np.abs(d - x) <= half_window_ns)
        j = sel[np.argmin((r - s)[sel])]
        out[i] = x + (s[j] + r[j]) / 2 - d[j]
    return out


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_probes_long_tailed_rtt_near_min_rtt_floor_and_sigma_covers(seed):
    """Long-tailed round trips and a wandering device: the model stays near the min-RTT floor, live (each edge
    mapped with the probes received before it) and offline, and its 1-sigma covers the errors (it used to claim
    ~0.1 ms while the errors were larger, and one seed ran off to 1.7 ms)."""
    pr, de, te = _tailed_link(seed)
    floor = np.median(np.abs(_min_rtt_floor(pr, de) - te))
    m = ClockModel("x")
    errs, uncs, j = [], [], 0
    for x, t in zip(de.tolist(), te.tolist(), strict=True):
        while j < len(pr) and pr[j, 2] <= t:
            m.add_probe(*map(int, pr[j]))
            j += 1
        ref, unc, _ = m.map(np.array([x]))
        errs.append(int(ref[0]) - t)
        uncs.append(int(unc[0]))
    live, live_unc = np.abs(np.array(errs)), np.array(uncs)
    ref, unc, _ = m.map(de, smooth=True)
    off = np.abs(ref - te)
    assert m.method == "probes" and m.state()["segments"] == 1
    for e, u in ((live, live_unc), (off, unc)):
        assert np.median(e) < 1.25 * floor + 50_000, (np.median(e), floor)
        assert np.mean(e <= u) > 0.6  # honest: the 1-sigma covers (at least) the 68% it should
        assert np.median(u) < 5 * max(np.median(e), 100_000)  # and is not uselessly wide
    st = m.state()
    assert st["probes"] > 100 and st["rejected"]["probe_rtt_filtered"] > 0.2 * len(pr)  # min-RTT filter at work
    assert abs(st["drift_ppm"] + 40.0) < 20.0


def test_probes_asymmetric_link_tightened_by_arrivals():
    """A fast host -> device path (0.1-0.3 ms), a slow way back for the reply (a long line at a low baud rate: 40 ms,
    then a USB latency timer) while the short samples arrive within 1 ms at best: the round trip's midpoint sits
    ~20 ms late; the samples' arrival minima bound the offset from above and bring the probes' estimate within
    about half the samples' minimum latency."""
    spec = ClockSpec(offset_s=2.0, drift_ppm=-30.0, jitter_us=1.0, latency_min_ms=1.0, latency_max_ms=16.0,
                     latency_kind="usb-buffer")
    dur = 120
    clk = DeviceClock(spec, dur, 12)
    rng = np.random.default_rng(12)
    true, dev, _ = clk.regular_samples(100.0)
    host = clk.arrivals(true, rng)
    tp = (np.arange(0.3, dur - 1, 1.0) * NS).astype(np.int64)
    t_dev = tp + rng.uniform(100_000, 300_000, len(tp)).astype(np.int64)
    d_p = clk.to_device(t_dev)
    recv = clk.arrivals(t_dev + 40_000_000, rng)
    results = {}
    for with_arrivals in (False, True):
        m = ClockModel(method="probes")
        items = [(int(r), 0, (int(s), int(d), int(r))) for s, d, r in zip(tp, d_p, recv, strict=True)]
        if with_arrivals:
            for a in range(0, len(true), 10):  # 100 ms chunks
                items.append((int(host[min(a + 9, len(true) - 1)]), 1, (a, min(a + 10, len(true)))))
        for _, kind, x in sorted(items):
            if kind == 0:
                m.add_probe(*x)
            else:
                m.add_arrivals(dev[x[0]:x[1]], host[x[0]:x[1]])
        ref, unc, _ = m.map(dev, smooth=True)
        err = np.abs(ref - true)
        results[with_arrivals] = (np.median(err), np.mean(err <= unc))
    assert results[True][0] < 700_000 and results[True][0] < 0.6 * results[False][0], results
    assert results[True][1] > 0.6 and results[False][1] > 0.6, results


@pytest.mark.parametrize("seed", range(6))
def test_drift_wander_between_bank_presets_is_followed(seed):
    """A drift wander of 1 ppm/sqrt(h) (the old bank had 0.3 and 3), 0.5 Hz pulses, stamps ten times finer than
    stated: the two-sided estimate is as good as the optimal smoother that knows the true wander and noise, on the
    same edges (the nearest preset, picked by likelihood, gave up to 2x that)."""
    dur, rw = 1800, 1.0
    clk = DeviceClock(ClockSpec(offset_s=20.0, drift_ppm=30.0, random_walk_ppm=rw, jitter_us=0.3, tick_hz=1e7),
                      dur, seed)
    rng = np.random.default_rng(seed + 7)
    te = (np.arange(1.0, dur, 2.0) * NS).astype(np.int64)
    dev = clk.to_device(te, jitter=True) // 100 * 100 + 50  # a 10 MHz counter, read at the tick's centre
    ref = te + np.rint(rng.normal(0, 500.0, len(te))).astype(np.int64)
    ts, ds, _ = clk.regular_samples(5.0)
    m = ClockModel("x")
    m.add_edges(dev, ref, 5000.0)
    r, unc, _ = m.map(ds, smooth=True)
    best = ds + linear_smoother(dev, ref - dev, 300.0**2 + 500.0**2 + 100.0**2 / 12, q_per_ns(rw), ds)[0]
    rms = np.sqrt(np.mean((r - ts).astype(float) ** 2))
    assert rms <= 1.1 * np.sqrt(np.mean((best - ts) ** 2))
    assert 0.5 < np.mean(np.abs(r - ts) <= unc) < 0.9  # and says how good it is


def test_least_squares_bound_is_the_line_without_wander_and_grows_with_it():
    e = np.arange(100) * NS
    pts = np.linspace(0, 99, 50) * NS
    var, var_live = least_squares_bound(e, 4e6, 0.0, pts)
    x = e - e.mean()
    assert np.allclose(var, 4e6 * (1 / 100 + (pts - e.mean()) ** 2 / np.sum(x * x)), rtol=1e-6)
    assert np.all(var_live >= var * 0.999)  # the causal filter sees only one side
    wander, _ = least_squares_bound(e, 4e6, q_per_ns(3.0), pts)
    assert np.all(wander > var)
    biased, _ = least_squares_bound(e, 4e6, 0.0, pts, edge_bias=np.full(100, 300.0))
    assert np.allclose(biased, var + 300.0**2, rtol=1e-6)  # a bias every edge shares is carried whole


def test_segments_say_why_they_began():
    m = ClockModel()
    dev = np.arange(0, 50) * 20_000_000
    m.add_arrivals(dev, dev + 10**12)
    m.add_arrivals(dev[:10] + 4000 * NS, dev[:10] + 10**12 + 2 * NS)  # forward an hour: arrived before taken
    m.add_arrivals(dev[:10], dev[:10] + 10**12 + 3 * NS)  # back to zero
    m.reset_detected(5 * NS, 10**12 + 4 * NS)
    m.add_arrivals(dev[:10] + 5 * NS, dev[:10] + 10**12 + 4 * NS)
    assert [s["cause"] for s in m.segments_info()] == ["start", "arrival_forward", "arrival_back", "driver"]
    assert m.resets == 3


def test_a_skew_prior_wider_than_the_default_lets_a_steeper_line_start():
    """Aligner offsets on a line 5000 ppm steep (a file whose clock runs on a ceramic resonator): the filter's
    start took no line steeper than twice the default prior (4000 ppm) whatever the model's own prior, and the
    model mapped nothing (identity, unknown).  A model given a wider prior starts on it; the default still does
    not."""
    def fed(prior_ppm):
        m = ClockModel("log", consensus=2, skew_prior_ppm=prior_ppm)
        for k in range(60):
            d = (10 + 4 * k) * NS
            m.add_offset(OffsetEstimate("log", d, int(-12e9 - 5000e-6 * d), 2_000_000, "classical"))
        d = np.array([50 * NS, 200 * NS])
        g, unc, _ = m.map(d, smooth=True)
        return np.abs(g - d - (-12e9 - 5000e-6 * d)), unc

    err, unc = fed(10_000.0)
    assert np.all(err < 1e6) and np.all(unc < 1e6)
    _, unc = fed(2000.0)
    assert np.all(unc == UNKNOWN_UNC_NS)
