"""A trigger-wired stream that an aligner also maps (``synchub.agent.clock.fallback``): the aligner's offsets never
move a trigger-locked stream nor start a segment, however biased; once the edges stop they carry the stream,
corrected by the latency measured against the edges before; when the edges come back the trigger path takes over in
the same segment."""

from __future__ import annotations

import numpy as np
import pytest

from synchub.agent.align.latency import LatencyMeter, PairKey
from synchub.agent.clock.fallback import TriggerFallback, default_stale_ns, robust_median
from synchub.agent.clock.model import ClockModel
from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.units import NS

OFFSET_NS = 2_000_000_000
BIAS_NS = 20_000_000  # the aligner's latency: every window 20 ms late


def true_off(d, change_s: float = 1e9):
    """ref - device: 40 ppm fast, 30 ppm faster still from ``change_s`` on (the room warmed up)."""
    d = np.asarray(d, dtype=np.float64)
    return OFFSET_NS - 40e-6 * d - 30e-6 * np.maximum(d - change_s * NS, 0.0)


def run(seconds: int, edges=lambda s: True, *, wired: bool = True, offsets: bool = True, bias_ns: int = BIAS_NS,
        change_s: float = 1e9, seed: int = 3, noise_ms: float = 1.5):
    """Feeds a ClockModel as the live agent does: 10 chunks/s of arrivals (5-10 ms late), a trigger edge pair every
    second ``s`` where ``edges(s)``, and every 4 s an aligner offset for the window centred 8 s before the
    newest sample (late by ``bias_ns``, noise ``noise_ms``).  Returns the model and (device time, mapped error, method)
    of every chunk mapped as it arrived."""
    rng, rng_off = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    m = ClockModel("cam0", method="auto")
    if wired:
        m.fallback = TriggerFallback(default_stale_ns(NS))
    out = []
    next_off = 12 * NS
    for k in range(seconds * 10):
        d = np.arange(k * 100, (k + 1) * 100, dtype=np.int64) * 1_000_000
        h = d + np.rint(true_off(d, change_s) + rng.uniform(5e6, 10e6)).astype(np.int64)
        m.add_arrivals(d, h)
        if k % 10 == 0 and edges(k // 10):
            e = np.array([d[0]])
            m.add_edges(e, e + np.rint(true_off(e, change_s) + rng.normal(0, 5e3)).astype(np.int64), 5e3)
        if offsets and d[-1] >= next_off:
            c = int(d[-1] - 8 * NS)
            z = int(true_off([c], change_s)[0]) + bias_ns + int(rng_off.normal(0, noise_ms * 1e6))
            m.add_offset(OffsetEstimate("cam0", c, z, int(2 * noise_ms * 1e6), "hybrid"))
            next_off += 4 * NS
        ref, _, _ = m.map(d)
        out.append((int(d[0]), float(np.median(ref - (d + true_off(d, change_s)))), m.last_method))
    return m, out


def err_us(out, lo_s, hi_s=1e9):
    return float(np.median([abs(e) for d, e, _ in out if lo_s * NS <= d < hi_s * NS])) / 1e3


def test_biased_offsets_never_move_a_trigger_locked_stream():
    locked, a = run(80, offsets=True, bias_ns=BIAS_NS)
    alone, b = run(80, offsets=False)
    assert [e for _, e, _ in a] == [e for _, e, _ in b]  # not a nanosecond
    assert len(locked.segments) == 1 and locked.rejected["offset_trigger_fresh"] >= 15
    assert {m for _, _, m in a[20:]} == {"triggers"} and locked.fallback.take_events() == []
    assert err_us(a, 10) < 20
    lat = locked.fallback.latency()  # measured against the edges meanwhile
    assert abs(lat[0] - BIAS_NS) < 1_000_000 and lat[2] >= 15
    # without the rule the same offsets reach the trigger path's filter (the old hybrid): they do move it
    old, c = run(80, wired=False, bias_ns=BIAS_NS)
    assert [e for _, e, _ in c] != [e for _, e, _ in b] and old.segments[-1].offsets > 0


def test_steadily_biased_offsets_start_no_segment_even_when_the_trigger_is_stale():
    """Offsets 500 ms off that agree with each other are a step to a filter bank; the fallback's is never one."""
    m, out = run(120, edges=lambda s: s < 60, bias_ns=500_000_000, noise_ms=0.5)
    assert len(m.segments) == 1
    m2, _ = run(60, edges=lambda s: False, bias_ns=0)  # a wire never plugged in: offsets map, and start nothing either
    assert len(m2.segments) == 1 and m2.segments[0].fallback_offsets > 0


def test_a_stale_trigger_falls_back_on_the_latency_corrected_offsets():
    """The trigger is lost at 60 s, then the room warms (30 ppm faster from 70 s): the trigger path extrapolated alone
    drifts away (4-7 ms late over 200-300 s); the aligner, corrected by the +20 ms it measured against the edges,
    keeps the stream within about its own noise."""
    fell, a = run(300, edges=lambda s: s < 60, change_s=70)
    alone, b = run(300, edges=lambda s: s < 60, change_s=70, offsets=False)
    with_fb, without = err_us(a, 200), err_us(b, 200)
    print(f"200-300 s after a loss at 60 s: {with_fb / 1e3:.2f} ms with the fallback, {without / 1e3:.2f} ms without")
    assert with_fb < 2_000 and without > 3 * with_fb
    assert err_us(a, 10, 60) < 20  # before the loss: the trigger path
    events = fell.fallback.take_events()
    assert len(events) == 1 and events[0].startswith("trigger lost on cam0: aligner fallback (latency +2")
    # by variance: the edges' extrapolation while the widest drift it allows stays below the aligner's error
    assert {m for d, _, m in a if 60 * NS <= d < 70 * NS} == {"triggers"}
    assert {m for d, _, m in a if d >= 220 * NS} == {"hybrid"} and len(fell.segments) == 1
    st = fell.state()
    assert st["method"] == "hybrid" and st["fallback"]["active"] and st["fallback"]["offsets"] > 50
    steady, c = run(300, edges=lambda s: s < 60)  # a clock that stays steady loses little by it
    assert err_us(c, 200) < 500


def test_when_the_edges_come_back_the_trigger_path_takes_over_in_the_same_segment():
    m, out = run(220, edges=lambda s: not 60 <= s < 150, change_s=70)
    assert len(m.segments) == 1 and m.segments[0].fall is None and not m.fallback.active
    events = m.fallback.take_events()
    assert [e.split(":")[0] for e in events] == ["trigger lost on cam0", "trigger back on cam0"]
    assert m.fallback.fed > 10
    assert err_us(out, 160) < 50 and {x for d, _, x in out if d >= 160 * NS} == {"triggers"}


def test_without_a_latency_the_offsets_count_as_far_off_and_a_good_extrapolation_stays():
    """Lost before 5 windows were measured, none stored: the offsets may be a frame off; they set the fallback
    bank's level but weigh as 100 ms off, so a steady clock's extrapolated edges keep mapping it.  With a stored
    latency (an earlier session's) they are corrected by it."""
    m, out = run(100, edges=lambda s: s < 12, change_s=20)
    events = m.fallback.take_events()
    assert len(events) == 1 and "latency not measured (2 windows against the trigger path), none stored" in events[0]
    assert m.segments[0].fallback_offsets > 10 and {x for d, _, x in out if d >= 20 * NS} == {"triggers"}
    fb = TriggerFallback(default_stale_ns(NS), prior=(BIAS_NS, 300_000))
    est = fb.correct(OffsetEstimate("cam0", NS, 5 + BIAS_NS, 10, shared_ns=400_000))
    assert (est.offset_ns, est.shared_ns) == (5, 500_000) and fb.latency() == (BIAS_NS, 300_000, 0)
    fb.start("cam0", m.segments[0].trig)
    assert "latency +20.00 +- 0.30 ms, stored by an earlier session" in fb.take_events()[0]
    for _ in range(5):
        fb.measure(BIAS_NS + 1_000_000, 0)  # this session's measurement, once there is one, wins
    assert fb.latency()[0] == BIAS_NS + 1_000_000


def test_stale_time_defaults_to_a_few_trigger_periods():
    assert default_stale_ns(NS) == 5 * NS and default_stale_ns(100_000_000) == 3 * NS
    assert default_stale_ns(0) == 10 * NS and default_stale_ns(NS, 2.5) == int(2.5 * NS)
    with pytest.raises(ValueError):
        TriggerFallback(0)


def test_the_latency_meter_and_the_fallback_share_one_robust_median():
    rng = np.random.default_rng(5)
    d = list(rng.normal(7e6, 1e6, 30).astype(int)) + [400_000_000] * 3
    meter = LatencyMeter()
    key = PairKey("a", "audio", "b", "imu")
    for x in d:
        meter.add(key, x, 0)
    lat = meter.result(key)
    assert (lat.latency_ns, lat.sigma_ns, lat.n) == robust_median(d, 8) and lat.rejected == 3
    assert robust_median(d[:5], 8) is None
