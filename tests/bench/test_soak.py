"""The soak benchmark, short: agent and collector processes for 30 s, memory and fds sampled, every sample
accounted for (the long run is ``synchub bench soak --minutes 30``; its result is in bench/results/)."""

import json

import pytest

from synchub.cli import main

pytestmark = pytest.mark.slow


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
