"""`synchub bench align --onset-check`: the onset check's answer on a corpus recording's sounds mapped right and
late writes the documented JSON; the figures themselves are in bench/results/align-onset-check.json."""

import json

import pytest

from synchub.cli import main
from synchub.models.corpus import split as SP


def test_bench_align_onset_check_writes_the_documented_json(tmp_path, capsys):
    pytest.importorskip("soundfile", reason="soundfile is in the bench extra")
    if not SP.sounds("heldout"):
        pytest.skip("no held-out sound effects installed (sound-theme-freedesktop, ...)")
    out = tmp_path / "r.json"
    assert main(["bench", "align", "--onset-check", "--speech", "0", "--sounds", "1", "--duration", "60",
                 "--cache", str(tmp_path / "cache"), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = doc["results"]["events"]
    assert [r["late_ms"] for r in rows] == [0, 5, 10, 20, 40] and doc["results"]["speech"] == []
    assert set(rows[0]) == {"late_ms", "recordings", "median_abs_ms", "p90_abs_ms", "max_abs_ms", "early_over_5ms",
                            "moved_start", "moved_departure"}
    checks = doc["per_recording"][0]["checks"]
    # functional sanity: sound effects mapped right stay; mapped 40 ms late they come back to within a few ms
    assert checks[0] == {"late_ms": 0, "error_ms": 0.0, "moved": "none"}
    assert checks[-1]["moved"] != "none" and abs(checks[-1]["error_ms"]) < 5.0
    assert "events mapped 40 ms late" in capsys.readouterr().out


def test_bad_onset_check_arguments_are_user_errors(capsys):
    assert main(["bench", "align", "--onset-check", "--duration", "5"]) == 2
    assert main(["bench", "align", "--onset-check", "--speech", "0", "--sounds", "0"]) == 2
    assert "--speech + --sounds" in capsys.readouterr().err
