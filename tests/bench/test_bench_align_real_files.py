"""`synchub bench align --real-files`: synchub align's file engine on a held-out corpus recording's WAV + marker CSV
writes the documented JSON; the figures themselves are in bench/results/align-real-files.json."""

import json

import pytest

from synchub.cli import main
from synchub.models.corpus import split as SP

FIELDS = {"events", "mapped", "refused", "signed_median_ms", "median_abs_ms", "p95_abs_ms", "within_5ms_pct",
          "drift_err_ppm", "drift_signed_err_ppm", "drift_sigma_ppm", "drift_within_1sigma", "sigma_median_ms",
          "cover_1sigma_pct", "cover_2sigma_pct"}


@pytest.mark.parametrize("mic", ["", "dc=0.2+gain=-20+pcm16"])
def test_bench_align_real_files_writes_the_documented_json(tmp_path, capsys, mic):
    """With ``--mic``, the corpus's microphone as a real one delivers it (``bench/align/mic.py``), the JSON says which."""
    pytest.importorskip("soundfile", reason="soundfile is in the bench extra")
    pytest.importorskip("onnxruntime", reason="the aligner's encoders need the neural extra")
    if not SP.sounds("heldout"):
        pytest.skip("no held-out sound effects installed (sound-theme-freedesktop, ...)")
    out = tmp_path / "r.json"
    assert main(["bench", "align", "--real-files", "--speech", "0", "--sounds", "1", "--duration", "40", "--cache",
                 str(tmp_path / "cache"), "--json", str(out)] + (["--mic", mic] if mic else [])) == 0
    doc = json.loads(out.read_text())
    assert set(doc["results"]) == {"sound markers"} and len(doc["per_recording"]) == 1
    assert doc["mic"] == (mic or "as rendered")
    r = doc["results"]["sound markers"]
    assert FIELDS <= set(r) and r["refused"] == 0 and 5 <= r["mapped"] == r["events"]
    # functional sanity: the log's clock is up to 1.5 s off and drifts up to 150 ppm; tied by the aligner, its sound
    # markers land within tens of milliseconds (the accuracy itself is the bench's JSON)
    assert r["median_abs_ms"] < 50.0 and 0.0 <= r["cover_1sigma_pct"] <= r["cover_2sigma_pct"] <= 100.0
    assert "sound markers:" in capsys.readouterr().out


def test_a_fit_over_several_lengths_says_each_length_s_coverage(tmp_path, capsys):
    """A table fitted on recordings of several lengths may be right on the pool and wrong at each length (the square
    root's shared bias: 61.8 / 75.6 / 76.6 % at 60 / 150 / 300 s under one table): the bench and the fit say each
    length's figures."""
    pytest.importorskip("soundfile", reason="soundfile is in the bench extra")
    pytest.importorskip("onnxruntime", reason="the aligner's encoders need the neural extra")
    if not SP.sounds("calibration"):
        pytest.skip("no calibration sound effects installed (sound-theme-freedesktop, ...)")
    out, table = tmp_path / "r.json", tmp_path / "t.json"
    assert main(["bench", "align", "--real-files", "--split", "calibration", "--speech", "0", "--sounds", "1",
                 "--durations", "30,40", "--cache", str(tmp_path / "cache"), "--json", str(out), "--fit-sigma",
                 str(table)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["by_duration_s"]) == {"30", "40"} and all(FIELDS <= set(r) for r in doc["by_duration_s"].values())
    assert sum(r["events"] for r in doc["by_duration_s"].values()) == doc["results"]["sound markers"]["events"]
    (pair,) = json.loads(table.read_text())["pairs"]
    by = pair["cover_1sigma_pct_fitted_by_duration_s"]
    assert set(by) == {"30", "40"} and all(0.0 <= v <= 100.0 for v in by.values())
    printed = capsys.readouterr().out
    assert "1-/2-sigma cover by length: 30 s" in printed and "% at 40 s" in printed


def test_bad_real_files_arguments_are_user_errors(capsys):
    assert main(["bench", "align", "--real-files", "--duration", "5"]) == 2
    assert main(["bench", "align", "--real-files", "--speech", "0", "--sounds", "0"]) == 2
    assert "--speech + --sounds" in capsys.readouterr().err
    assert main(["bench", "align", "--real-files", "--fit-sigma", "t.json"]) == 2  # held-out split: never fitted on
    assert "calibration split only" in capsys.readouterr().err
    assert main(["bench", "align", "--real-files", "--split", "calibration", "--fit-sigma", "t.json", "--mic",
                 "dc=0.1"]) == 2  # the table calibrates the corpus's own microphone
    assert "leave out --mic" in capsys.readouterr().err


def test_a_fit_with_every_recording_refused_is_a_user_error():
    from types import SimpleNamespace

    from synchub.bench.align.files import fit_files_table
    from synchub.errors import UserError

    with pytest.raises(UserError, match="refused every recording"):
        fit_files_table([], [{"events": 9, "refused": "nothing to align on"}], SimpleNamespace(split="calibration",
                                                                                          duration=60.0), None)
