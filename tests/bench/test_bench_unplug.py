"""The short version of `synchub bench unplug` (the field example's IMU unplugged; the 5-minute run is
bench/results/unplug.json): no restart, every watchdog ping on time, STATUS= names the missing stream, the stream
resumes within 1 s of the replug, the recording has the outage as a disconnect gap."""

import json
import subprocess
import sys

import pytest
from support.paths import ROOT


@pytest.mark.slow
def test_unplug_short(tmp_path):
    out = tmp_path / "unplug.json"
    r = subprocess.run([sys.executable, "-m", "synchub.cli", "bench", "unplug", "--minutes", "0.1", "--warmup", "2",
                        "--after", "4", "--watchdog-s", "6", "--json", str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["restarts"] == 0 and not res["agent_exited_early"], res
    assert res["pings"] >= 5 and res["max_ping_interval_s"] < 6, res  # every 3 s, unplugged or not
    assert res["status_named_missing"], res["status_lines"]
    assert any(s["status"].startswith("DEGRADED: imu0 missing") for s in res["status_lines"])
    assert res["status_lines"][-1]["status"].startswith("ok: 2/2 streams ok"), res["status_lines"]
    assert res["resume_latency_s"] is not None and res["resume_latency_s"] < 1.0, res
    assert res["status_ok_after_replug_s"] is not None and res["status_ok_after_replug_s"] < 1.0, res
    gap = res["gap"]
    assert "disconnect" in gap["causes"] and gap["seq_missing"] == 0, gap
    assert 0.8 * gap["expected_samples"] <= gap["samples"] <= 1.3 * gap["expected_samples"] + 50, gap
    assert res["samples_recorded"]["imu0"] > 1000 and res["control_answer"]["n"] > 10, res
