"""`synchub bench throughput` runs with tiny sizes and writes valid JSON (no numbers asserted)."""

import json

import pytest

from synchub.cli import main


@pytest.mark.timeout(120)
def test_throughput_bench_smoke(tmp_path):
    out = tmp_path / "tp.json"
    rc = main(["bench", "throughput", "--seconds", "0.3", "--chunk", "50", "--streams", "1", "--latency-rate",
               "2000", "--no-lsl", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    for phase in ("synchub_max", "synchub_latency"):
        assert r[phase]["samples_recorded"] == r[phase]["samples_sent"] > 0 and r[phase]["exactly_once"]
    assert "cpu_model" in r["machine"] or "platform" in r["machine"]
    assert set(r["goals"]) == {"samples_per_s>=500k", "p99_ms<=5", ">=1x_pylsl"}
