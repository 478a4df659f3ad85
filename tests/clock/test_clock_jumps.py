"""Device clock jumps: forward (a saved RTC restored at reboot) and backward, reported by the driver or not: every
one starts a clock segment, the trigger matcher follows it (first edge pair of the new segment within 3 periods), and
no segment maps samples of two timelines (hypothesis over directions, sizes and times)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synchub.agent.clock.bank import FilterBank
from synchub.agent.clock.layer import StreamClocks
from synchub.agent.clock.model import ClockModel
from synchub.agent.clock.probes import excludes_line
from synchub.agent.clock.replay import feed_offline
from synchub.agent.clock.resets import step_boundary
from synchub.agent.clock.triggers import TriggerMatcher
from synchub.agent.core.evidence import TriggerEdge
from synchub.agent.core.stream import Chunk
from synchub.agent.core.units import NS
from synchub.bench.sync.report import apparent_jumps, reset_checks
from synchub.bench.sync.run import Recording
from synchub.bench.sync.scenario import parse_scenario


def _scenario(jumps, at, report=True, downtime=1.0, seed=1, bits=64, tick=1e6, probes=False, trigger=True,
              line=None, rate_hz=50.0, **clock):
    """One device on a 1 s trigger line (``line``: another), its clock jumping by ``jumps`` at ``at``; ``clock``:
    settings of its clock other than these defaults."""
    return parse_scenario({
        "name": "j", "duration_s": float(max(at) + 30.0), "seed": seed, "eval_points": 4000,
        "trigger": line or {"period_s": 1.0},
        "device": [{"name": "d", "rate_hz": rate_hz, "probes": probes, "trigger": trigger, "report_resets": report,
                    "clock": {"offset_s": 100.0, "drift_ppm": 30.0, "jitter_us": 2.0, "latency_min_ms": 0.5,
                              "latency_max_ms": 3.0, "resets_at_s": list(at), "reset_jump_s": list(jumps),
                              "reset_downtime_s": downtime, "counter_bits": bits, "tick_hz": tick, **clock}}]},
        "j.toml")


def _run(sc):
    rec = Recording(sc)
    s = rec.streams[0]
    clocks = StreamClocks(rec.infos, rec.config("auto"))
    feed_offline(clocks, rec.chunks, rec.evidence({"edges", "probes"}) + rec.resets)
    c = clocks.correct(Chunk("d", 0, np.zeros((len(s.host), 1)), s.device_ns, s.host), smooth=True)
    checks = reset_checks(sc, s, clocks.segments("d"), c.segment, np.arange(len(s.host)))
    return rec, s, c, checks


def _settled_rms(s, ref, skip_s=3.0, before_s=0.0):
    """RMS error (ns) of the samples outside ``skip_s`` after each true jump and ``before_s`` before it."""
    ok = np.ones(len(s.true), bool)
    for k in range(1, int(s.segment.max()) + 1):
        first = s.true[np.flatnonzero(s.segment == k)[0]]
        ok &= ~((s.true >= first - before_s * NS) & (s.true < first + skip_s * NS))
    return float(np.sqrt(np.mean((ref[ok] - s.true[ok]).astype(float) ** 2)))


def test_rtc_restored_forward_restarts_matching_reported_or_not():
    """A reboot restores a saved clock an hour ahead: the new segment's edges are matched within 3 periods (they
    used to stay unmatched: the matcher restarted after backward jumps only, about 1 ms error on the segment)."""
    for report in (True, False):
        rec, s, c, checks = _run(_scenario([3600.0], [40.0], report=report))
        assert checks["resets_detected"] == 1 and checks["false_segments"] == 0 and checks["mixed_segments"] == 0
        assert checks["first_match_periods"] and max(checks["first_match_periods"]) <= 3
        assert checks["segments"][1]["edges"] > 20
        assert _settled_rms(s, c.ref_ns) < 3_000


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([-1.0, 1.0]), st.floats(math.log10(0.05), 5.0)), min_size=1, max_size=3),
       st.booleans(), st.floats(0.0, 3.0), st.integers(0, 1000), st.sampled_from([(64, 1e6), (32, 1e6), (16, 1e4)]))
def test_any_jump_is_found_and_no_segment_mixes_timelines(jumps, report, downtime, seed, counter):
    """Jumps of 50 ms to a day either way, 25-35 s apart, with or without the driver's report and a reboot's
    downtime, on 64-, 32- and 16-bit counters.  What the clock layer sees is the jump of the device time the driver
    delivers (``apparent_jumps``: a narrow counter aliases a jump into one of its wrap period, a clock that stood
    still during a reboot jumps back by the downtime): from 20 ms up the samples show it; under 1 ms the checks count
    nothing to find; from ~0.2 to 20 ms the edges find it, and where it is within the samples' latency spread
    (0.5-3 ms) the samples within a trigger period of it may fall on either side (no segment is checked for mixing;
    the settled error leaves that period out).  CI drew a 32.8 s jump that a 16-bit counter at 10 kHz aliased to
    -0.95 ms, 337 us rms after it: ``test_a_step_aliased_by_a_narrow_counter_is_found_as_the_step_it_delivers``."""
    sizes = [sign * 10**exp for sign, exp in jumps]
    at = [25.0 + 30.0 * i + (seed % 7) for i in range(len(sizes))]
    bits, tick = counter
    sc = _scenario(sizes, at, report=report, downtime=downtime, seed=seed, bits=bits, tick=tick)
    rec, s, c, checks = _run(sc)
    small = any(20_000 <= abs(j) < 20_000_000 for j in apparent_jumps(s))
    assert checks["resets_detected"] == checks["resets_visible"], checks
    assert small or checks["mixed_segments"] == 0, checks
    assert max(checks["first_match_periods"], default=0) <= 3, checks
    assert _settled_rms(s, c.ref_ns, before_s=1.0 if small else 0.0) < 20_000


@pytest.mark.parametrize("jump_ms", [-10.0, -3.0, -0.95, -0.3, 0.3, 0.95, 3.0, 6.0, 7.0, 10.0])
def test_a_step_only_the_edges_see_starts_where_it_happened(jump_ms):
    """An unreported step of 0.3-10 ms either way (the samples' latency spread of 0.5-3 ms hides most of it): the
    edges after it find no partner where the pairs predict one; the matcher starts over and pairs them again from
    the prior, the first of them too (it paired again only from the edges after the run that lost its lock: the new
    segment began three periods late, 0.95 ms off for those 3 s); the samples between the last edge before and the
    first after go to the timeline under which their latencies are likelier (a new line ms back explained every
    sample of the last 12 s with a smaller latency: 8 s of them mapped 3 ms off)."""
    rec, s, c, checks = _run(_scenario([jump_ms / 1e3], [40.0], report=False, downtime=0.0, seed=3))
    assert abs(apparent_jumps(s)[0] - jump_ms * 1e6) < 5_000
    # (6-10 ms forward: samples mapped after they arrived start it, the first beyond the early margin; once its
    # edges have a line the step is placed among the samples before that one: they had stayed on the old segment)
    assert len(checks["segments"]) == 2 and checks["segments"][1]["cause"] in ("step", "arrival_early"), checks
    assert jump_ms < 6.0 or checks["mixed_segments"] == 0, checks
    after = np.flatnonzero(s.segment == 1)
    assert int(c.segment[after[after.size // 10]]) == 1  # 100 ms after the step: on the new segment
    assert _settled_rms(s, c.ref_ns, skip_s=0.0, before_s=0.0) < 0.1 * abs(jump_ms) * 1e6
    assert _settled_rms(s, c.ref_ns, skip_s=1.0, before_s=1.0) < 5_000


def test_a_step_aliased_by_a_narrow_counter_is_found_as_the_step_it_delivers():
    """CI's case: a 32.8 s jump on a 16-bit counter at 10 kHz (wraps every 6.5536 s) delivers a step of -0.95 ms
    (337 us rms after it)."""
    sc = _scenario([5 * 6.5536 - 0.00095], [31.0], report=False, downtime=0.0, seed=5, bits=16, tick=1e4)
    rec, s, c, checks = _run(sc)
    assert abs(apparent_jumps(s)[0] + 950_000) < 20_000
    assert _settled_rms(s, c.ref_ns, before_s=1.0) < 20_000


def test_matcher_restarts_when_its_pairs_stop_predicting_the_device_edges():
    """A step of the device clock that nothing reported (80 ms forward): three device edges in a row find no partner
    where the pairs predict them; the matcher starts over and pairs again from the prior."""
    prior_offset = {"v": 5 * NS}
    m = TriggerMatcher(NS, prior=lambda d: (d + prior_offset["v"], 10_000_000))
    pairs = []
    for k in range(1, 40):
        ref = k * NS
        dev = ref - 5 * NS + (80_000_000 if k >= 20 else 0)
        if k == 20:
            prior_offset["v"] = 5 * NS - 80_000_000  # the model, having seen the samples, knows the new offset
        pairs += m.add_ref([TriggerEdge("s", ref, "ref", width_ns=10_000_000)])
        pairs += m.add_device([TriggerEdge("d", dev, "device", width_ns=10_000_000, host_ns=ref + 20_000_000)])
    after = [(d, r) for d, r in pairs if r >= 20 * NS]
    assert m.stats.get("lock_lost") == 1 and m.restarts == 1
    assert after and after[0][1] == 20 * NS and all(r - d == 5 * NS - 80_000_000 for d, r in after)
    assert len(after) >= 15


@pytest.mark.parametrize("step_us", [-2000.0, -600.0, 600.0, 2000.0])
def test_step_boundary_puts_the_step_where_the_latencies_are_likeliest(step_us):
    """``step_boundary`` directly: latencies 0.5-3 ms; 60 samples before a step, 40 after.  On the old line the
    samples after a step forward arrive too early (before they were taken, for the most), on the new line those before
    it arrive late beyond the link's spread; after a step back the reverse.  The boundary lands on the step (a step
    of 0.6 ms, within the spread, within 8 samples: about a quarter of them tell; of 2 ms within one), and with no step
    at all past the end (of 0.6 ms: within 8 of it)."""
    rng = np.random.default_rng(7)
    held = rng.uniform(0.5e6, 3e6, 400)
    lat = rng.uniform(0.5e6, 3e6, 100)
    s = step_us * 1e3
    on_old = np.where(np.arange(100) < 60, lat, lat - s)  # a step forward: the old line puts later samples early
    on_new = on_old + s
    k = step_boundary(on_old, on_new, held, 50e3, 50e3)
    assert abs(k - 60) <= (1 if abs(step_us) >= 2000 else 8), k
    assert step_boundary(lat, lat + abs(s), held, 50e3, 50e3) >= (100 if abs(step_us) >= 2000 else 92)


@pytest.mark.parametrize(("jump_ms", "seed"), [(-20.0, 1), (-3.0, 2), (-1.45, 1), (-1.45, 3), (1.0, 1), (3.0, 2)])
def test_a_step_only_probes_see_starts_a_segment(jump_ms, seed):
    """A device that answers round-trip probes (1 Hz) but sees no trigger steps its clock by 1-20 ms unreported
    (20 ms back: its samples' arrival floor rises by less than a reboot's margin; forward under the early margin).
    The probes after it leave the old line out of their bands entirely, whatever the link's delays: they pass the
    min-RTT filter (the bands the old arrivals tightened made them look wide), the bank rejects them however wide
    they are (it took the wide ones and crept), and eight over 2 s start a segment whose skew is the old one's.
    Before: none was found in 30 s; 0.5-12.6 ms rms after the step (the probes' own error is ~0.1 ms).  A step back
    of 1.45 ms, within the round trips' spread, was found 7 s late at first: the old timeline's arrivals had clipped
    the first probes' bands short of the new offset, so only later ones agreed (the segment starts at its first
    probe now)."""
    rec, s, c, checks = _run(_scenario([jump_ms / 1e3], [40.0], report=False, downtime=0.0, seed=seed,
                                       probes=True, trigger=False))
    assert [g["cause"] for g in checks["segments"]] == ["start", "step"], checks
    assert checks["resets_detected"] == 1, checks
    assert _settled_rms(s, c.ref_ns) < 300_000


def test_probes_that_stamp_late_for_a_moment_are_no_step():
    """A bank that rejects probes in a row for less than its step span (a device stalled for 0.3 s: 6 replies at
    20 Hz stamped 4 ms late, all on one line) starts no segment; the same rejections over 2.5 s do."""
    for seconds, step in ((0.3, False), (2.5, True)):
        b = FilterBank(np.array([0.0]), 2e-3, 6.0, 3600.0, step_n=8, step_span=2 * NS)
        for k in range(40):
            b.update(k * 0.05 * NS, 0.0, 1e8)
        n = int(seconds / 0.05)
        took = [b.update((40 + k) * 0.05 * NS, 4e6 + 1e3 * k, 1e8) for k in range(n)]
        assert not any(took) and bool(b.step) is step, (seconds, len(b.step))
        b.update((41 + n) * 0.05 * NS, 0.0, 1e8)
        assert b._bad == [] and b.rejected == n


def test_a_probe_band_that_leaves_the_line_out_is_told():
    """``excludes_line``: a band the probe line's 3-sigma (and the wander's) lies outside of, on either side; not one
    around it, nor any before the bank has five probes."""
    clocks = ClockModel("p")
    for k in range(10):
        clocks.add_probe(k * NS, k * NS + 500_000 - 100 * NS, k * NS + 1_000_000)
    seg = clocks.segments[-1]
    dr = float(10 * NS - seg.dev0 + 100 * NS)
    z = float(seg.probe.predict(np.array([dr]))[0][0])
    assert excludes_line(seg, dr, z + 2e6, z + 3e6) and excludes_line(seg, dr, z - 3e6, z - 2e6)
    assert not excludes_line(seg, dr, z - 5e5, z + 5e5)
    seg.probe.n = 4
    assert not excludes_line(seg, dr, z + 2e6, z + 3e6)


def _aperiodic(jump_s, seed=1):
    """An aperiodic trigger line (events 3-12 ms apart) and a 100 Hz device 8-16 ms late, its clock stepping at 40 s."""
    return _scenario([jump_s], [40.0], report=False, downtime=0.0, seed=seed, rate_hz=100.0,
                     line={"period_s": 0.0075, "irregular": 0.6, "width_ms": 1.0},
                     offset_s=3.0, drift_ppm=40.0, latency_min_ms=8.0, latency_max_ms=16.0)


@pytest.mark.parametrize("jump_ms", [-20.0, -15.0, -3.0, 3.0])
def test_a_step_on_an_aperiodic_line_is_found(jump_ms):
    """A step of 3-20 ms on an aperiodic line: each device edge's window now and then holds one wrong partner,
    which reset the matcher's count of edges that found none (and a window widened by wrong pairs held two, so the
    edges waited and were dropped uncounted); lost now once 6 of the last 8 found none.  Starting over, the line's
    pattern is matched from the reports alone: the stream's arrival bound is still the old timeline's and left
    the new offset out.  Before: never found (1.9-12.7 ms rms after the step, the matcher locked on nothing)."""
    rec, s, c, checks = _run(_aperiodic(jump_ms / 1e3))
    assert [g["cause"] for g in checks["segments"]] == ["start", "step"], checks
    assert _settled_rms(s, c.ref_ns, skip_s=1.0, before_s=1.0) < 20_000
