"""Device clock jumps: forward (a saved RTC restored at reboot) and backward, reported by the driver or not: every
one starts a clock segment, the trigger matcher follows it (first edge pair of the new segment within 3 periods), and
no segment maps samples of two timelines (hypothesis over directions, sizes and times)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from synchub.agent.clock.layer import StreamClocks
from synchub.agent.clock.replay import feed_offline
from synchub.agent.clock.triggers import TriggerMatcher
from synchub.agent.core.evidence import TriggerEdge
from synchub.agent.core.stream import Chunk
from synchub.agent.core.units import NS
from synchub.bench.sync.report import apparent_jumps, reset_checks
from synchub.bench.sync.run import Recording
from synchub.bench.sync.scenario import parse_scenario


def _scenario(jumps, at, report=True, downtime=1.0, seed=1, bits=64, tick=1e6, probes=False):
    return parse_scenario({
        "name": "j", "duration_s": float(max(at) + 30.0), "seed": seed, "eval_points": 4000,
        "trigger": {"period_s": 1.0},
        "device": [{"name": "d", "rate_hz": 50.0, "probes": probes, "report_resets": report,
                    "clock": {"offset_s": 100.0, "drift_ppm": 30.0, "jitter_us": 2.0, "latency_min_ms": 0.5,
                              "latency_max_ms": 3.0, "resets_at_s": list(at), "reset_jump_s": list(jumps),
                              "reset_downtime_s": downtime, "counter_bits": bits, "tick_hz": tick}}]}, "j.toml")


def _run(sc):
    rec = Recording(sc)
    s = rec.streams[0]
    clocks = StreamClocks(rec.infos, rec.config("auto"))
    feed_offline(clocks, rec.chunks, rec.evidence({"edges", "probes"}) + rec.resets)
    c = clocks.correct(Chunk("d", 0, np.zeros((len(s.host), 1)), s.device_ns, s.host), smooth=True)
    checks = reset_checks(sc, s, clocks.segments("d"), c.segment, np.arange(len(s.host)))
    return rec, s, c, checks


def _settled_rms(s, ref, skip_s=3.0):
    ok = np.ones(len(s.true), bool)
    for k in range(1, int(s.segment.max()) + 1):
        first = s.true[np.flatnonzero(s.segment == k)[0]]
        ok &= ~((s.true >= first) & (s.true < first + skip_s * NS))
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
    still during a reboot jumps back by the downtime): from 20 ms up the samples show it; under 1 ms there is
    nothing to find; in between only the edges can, and that range is left out here (from 20 us up: the settled
    error this test allows)."""
    sizes = [sign * 10**exp for sign, exp in jumps]
    at = [25.0 + 30.0 * i + (seed % 7) for i in range(len(sizes))]
    bits, tick = counter
    sc = _scenario(sizes, at, report=report, downtime=downtime, seed=seed, bits=bits, tick=tick)
    # from 20 us: more than the settled error allowed below (a 16-bit counter at 10 kHz aliased a 32.8 s jump back to
    # 0.95 ms: the edges found it as a step, 337 us rms after it)
    assume(all(abs(j) >= 20_000_000 or abs(j) < 20_000 for j in apparent_jumps(Recording(sc).streams[0])))
    rec, s, c, checks = _run(sc)
    assert checks["resets_detected"] == checks["resets_visible"], checks
    assert checks["mixed_segments"] == 0, checks
    assert max(checks["first_match_periods"], default=0) <= 3, checks
    assert _settled_rms(s, c.ref_ns) < 20_000


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
    assert after and after[0][1] <= 24 * NS and all(r - d == 5 * NS - 80_000_000 for d, r in after)
    assert len(after) >= 15
