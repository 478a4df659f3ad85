"""The soak benchmark, short: the issue's 2-minute version in CI (agent and collector processes for 2 minutes, memory
and fds sampled every 4 s, every sample accounted for).  The long run is ``synchub bench soak --minutes 30``; its
result is in bench/results/soak-30min.json.

What 2 minutes can assert without flaking on a loaded 2-core machine: 0 lost, nothing twice, spooled == delivered ==
recorded; fds flat (max - min <= 2 after warm-up: a reconnect may hold one more briefly).  RSS cannot be held to the
30-minute goal (<= 5 %): both processes still warm up for minutes (numpy, ZeroMQ, CURVE, MCAP buffers, malloc
arenas), so short runs measured here (2 cores shared with other jobs) showed after the 24 s warm-up: growth 1.4 to
6.0 % and slopes of 44 to 124 MB/h, agent and collector alike.  The bounds are 20 % growth and 600 MB/h (10 MB/min),
3 to 5x above that: they do not flake, and they still catch the class of leak this benchmark was built for (issue
11: the simulator's truth kept in memory grew the agent 71 -> 451 MB in 10 minutes, 38 MB/min, +50 % a minute)."""

import json

import pytest
from support import early

from synchub.bench.soak import growth, slope_mb_per_h
from synchub.cli import main

GROWTH_BOUND_PCT = 20.0  # after warm-up, in the 2-minute run (see the module docstring for why these numbers)
SLOPE_BOUND_MB_PER_H = 600.0


def test_slope_shows_a_steady_leak_that_the_growth_of_a_short_run_hides():
    t = [15.0 * k for k in range(1, 41)]  # 10 minutes
    leak = [100.0 + 0.01 * x for x in t]  # 0.6 MB/min: +5.4 % after warm-up, 36 MB/h
    assert slope_mb_per_h(t, leak, 8) == pytest.approx(36.0, abs=0.01)
    saw = [100.0 + (x % 120.0) / 60.0 for x in t]  # a sawtooth that comes back every 2 minutes
    assert abs(slope_mb_per_h(t, saw, 8)) < 3.0
    assert growth(leak, 8) > 4.0
    assert slope_mb_per_h(t[:2], leak[:2], 0) is None


@pytest.mark.slow
@pytest.mark.timeout(420)  # 2 minutes of soak, start-up and the read-back on a loaded machine
def test_two_minute_soak_loses_nothing_keeps_fds_flat_and_rss_bounded(tmp_path, capsys):
    if early.started("soak"):  # run from the start of the suite (support/early.py)
        done = early.result("soak", 420)
        assert done["rc"] == 0 and done["json"], done["output"]
        r = done["json"]
    else:
        out = tmp_path / "soak.json"
        assert main([*early.SOAK_ARGS, "--json", str(out)]) == 0
        r = json.loads(out.read_text())
    assert r["agent_exit"] == 0 and r["lost_without_gap"] == 0 and r["recorded_twice"] == 0
    assert r["samples_spooled"] == r["samples_delivered"] == r["samples_recorded"] > 0
    assert set(r["streams"]) == {"imu0", "tlm0", "mic0", "sync"}
    for who in ("agent", "collector"):
        lo, hi = r[f"{who}_fds_after_warmup"]
        assert hi - lo <= 2, (who, lo, hi)  # flat (a reconnect may open one more briefly)
        assert r[f"{who}_rss_growth_pct"] <= GROWTH_BOUND_PCT, (who, r[f"{who}_rss_growth_pct"])
        assert r[f"{who}_rss_slope_mb_per_h"] <= SLOPE_BOUND_MB_PER_H, (who, r[f"{who}_rss_slope_mb_per_h"])
    assert len(r["series"]["t_s"]) >= 20 and r["warmup_s"] >= 20
