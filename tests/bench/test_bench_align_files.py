"""The short version of ``synchub bench align-files``: every part runs, its checks pass, the JSON holds them."""

from __future__ import annotations

import json
import types

import pytest

from synchub.bench.files import run as align_files

pytest.importorskip("pyxdf", reason="pyxdf is in the bench extra")
pytest.importorskip("soundfile", reason="soundfile is in the bench extra")
pytest.importorskip("av", reason="PyAV (the video extra; in the dev extra) writes and reads the camera part's files")


def test_quick_bench_runs_and_passes(tmp_path, capsys):
    out = tmp_path / "af.json"
    args = types.SimpleNamespace(json=str(out), quick=True, examples=align_files.EXAMPLES, hours=1.0, corpus=0, session_s=10.0)
    rc = align_files.run(args)
    res = json.loads(out.read_text())
    assert rc == 0, [c for c in res["checks"] if not c["pass"]]
    assert res["long"]["streams"] == 8 and res["long"]["peak_rss_mb"] < 500
    assert {r["kind"] for r in res["sync_edges"]} == {"ttl", "photodiode"}
    assert "[PASS] sync edges ttl periodic" in capsys.readouterr().out
    assert res["session"]["same_times"] and res["session"]["streamed"]["peak_rss_mb"] < 500
    assert [r["method"] for r in res["camera"]] == ["hybrid", "hybrid"]  # a camera's MP4 and a silent one's MKV
