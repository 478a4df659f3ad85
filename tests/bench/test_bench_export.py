"""A short ``synchub bench export``: a session written by the collector's writer, exported to XDF in a child
process, every sample in the XDF (checked by pyxdf too)."""

import json
import subprocess
import sys

import pytest

from synchub.extras import available


@pytest.mark.skipif(not available("pyxdf"), reason="pyxdf not installed (the bench extra)")
def test_a_short_export_benchmark_exports_every_sample_with_bounded_memory(tmp_path):
    out = tmp_path / "r.json"
    run = subprocess.run([sys.executable, "-m", "synchub.cli", "bench", "export", "--minutes", "0.5", "--verify",
                          "--json", str(out)], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["all_samples_exported"] and r["pyxdf_counts_match"] and r["clock_offsets"] == 3
    assert r["samples"] > 50_000 and r["export_peak_rss_mb"] < 300
