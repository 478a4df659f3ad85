"""The soak benchmark, short: agent and collector processes for 30 s, memory and fds sampled, every sample
accounted for (the long run is ``synchub bench soak --minutes 30``; its result is in bench/results/)."""

import json

import pytest

from synchub.bench.soak import growth, slope_mb_per_h
from synchub.cli import main


def test_slope_shows_a_steady_leak_that_the_growth_of_a_short_run_hides():
    t = [15.0 * k for k in range(1, 41)]  # 10 minutes
    leak = [100.0 + 0.01 * x for x in t]  # 0.6 MB/min: +5.4 % after warm-up, 36 MB/h
    assert slope_mb_per_h(t, leak, 8) == pytest.approx(36.0, abs=0.01)
    saw = [100.0 + (x % 120.0) / 60.0 for x in t]  # a sawtooth that comes back every 2 minutes
    assert abs(slope_mb_per_h(t, saw, 8)) < 3.0
    assert growth(leak, 8) > 4.0
    assert slope_mb_per_h(t[:2], leak[:2], 0) is None


@pytest.mark.slow
def test_short_soak_loses_nothing_and_keeps_fds_flat(tmp_path, capsys):
    out = tmp_path / "soak.json"
    assert main(["bench", "soak", "--minutes", "0.5", "--every", "2", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["agent_exit"] == 0 and r["lost_without_gap"] == 0 and r["recorded_twice"] == 0
    assert r["samples_spooled"] == r["samples_delivered"] == r["samples_recorded"] > 0
    assert set(r["streams"]) == {"imu0", "tlm0", "mic0", "sync"}
    for who in ("agent", "collector"):
        lo, hi = r[f"{who}_fds_after_warmup"]
        assert hi - lo <= 2, (who, lo, hi)  # flat (a reconnect may open one more briefly)
    assert len(r["series"]["t_s"]) >= 8
