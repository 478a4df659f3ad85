"""A short ``synchub bench lsl-outlet``: the agent's LSL outlet re-publishes 100k samples/s of 8-ch float32 with
every sample and stamp arriving at a real inlet in another process.  Skipped (with the reason) without liblsl."""

import json
import subprocess
import sys

import pytest

try:
    from synchub.drivers.lsl.inlet import import_pylsl

    import_pylsl()
    WHY = ""
except Exception as exc:  # noqa: BLE001 - the reason is the skip message
    WHY = f"pylsl/liblsl unavailable: {exc}"


@pytest.mark.skipif(bool(WHY), reason=WHY or "-")
def test_a_short_lsl_outlet_benchmark_delivers_every_sample_at_100k_per_s(tmp_path):
    out = tmp_path / "r.json"
    run = subprocess.run([sys.executable, "-m", "synchub.cli", "bench", "lsl-outlet", "--seconds", "1.5",
                          "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["samples_pushed"] >= 140_000 and r["received"] == r["samples_pushed"]
    assert r["bad_values"] == 0 and r["max_stamp_error_ns"] < 1.0
    assert r["samples_per_cpu_s"] >= 100_000  # the publisher needs well under one core for 100k samples/s


@pytest.mark.skipif(bool(WHY), reason=WHY or "-")
def test_the_collectors_tap_delivers_every_sample_with_its_stamp_through_utc(tmp_path):
    """``--collector``: the same through ``LslTap.took`` (the collector's ``--lsl-outlet``); the stamps go through
    this host's UTC both ways, so they differ from the truth by the two clock readings' jitter only."""
    out = tmp_path / "r.json"
    run = subprocess.run([sys.executable, "-m", "synchub.cli", "bench", "lsl-outlet", "--seconds", "1",
                          "--collector", "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["publisher"] == "collector --lsl-outlet" and r["received"] == r["samples_pushed"] >= 90_000
    assert r["bad_values"] == 0 and r["max_stamp_error_ns"] < 1_000_000
