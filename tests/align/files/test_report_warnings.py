"""What ``synchub align`` left out or took for a clock reset reaches the ``--json`` report's warnings and stderr:
the rows were logged one by one at WARNING, the report said nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synchub.cli import main


def test_rows_without_a_time_are_counted_in_the_report(tmp_path, capsys):
    p = tmp_path / "log.csv"
    p.write_text("time,event\n1.0,a\n2.0,b\nxx,c\n3.0,d\n,e\n4.0,f\n")
    assert main(["align", str(p), "--json", str(tmp_path / "r.json")]) == 0
    want = f"{p}: 2 rows skipped: no time"
    assert json.loads((tmp_path / "r.json").read_text())["warnings"] == [want]
    assert f"warning: {want}" in capsys.readouterr().err


def test_a_time_column_that_goes_back_part_way_is_said_and_how_it_was_taken(tmp_path, capsys):
    """Times 100..130 s, then 5..39 s (the logger's clock reset): the stream was split into two clock timelines
    without a word; the report and stderr say where it went back and what became of the samples after it."""
    p = tmp_path / "reset.csv"
    rows = [f"{t},ev{t}" for t in range(100, 131, 2)] + [f"{t},ev{t}" for t in range(5, 41, 2)]
    p.write_text("time,event\n" + "\n".join(rows) + "\n")
    assert main(["align", str(p), "--json", str(tmp_path / "r.json")]) == 0
    (w,) = json.loads((tmp_path / "r.json").read_text())["warnings"]
    assert w.startswith(f"{p}: reset: its time went back 1 time(s), a clock reset? (at sample 17)")
    assert "repeat the times before it" in w and f"warning: {w}" in capsys.readouterr().err


def test_skipped_rows_are_logged_once_each_and_only_the_first_few(tmp_path, caplog):
    """The engine reads a table twice: each skipped row was logged twice, and a file of 10,000 bad rows logged
    20,000 lines.  Now the first five once each, then one line; the report counts them all."""
    p = tmp_path / "log.csv"
    p.write_text("time,event\n" + "".join(f"{k}.0,a\nxx,b\n" for k in range(1, 41)))
    assert main(["align", str(p), "--json", str(tmp_path / "r.json")]) == 0
    rows = [r.getMessage() for r in caplog.records if "skipped: no time" in r.getMessage()]
    assert len(rows) == 5 and len(set(rows)) == 5, rows
    assert sum("more rows skipped: counted in the report" in r.getMessage() for r in caplog.records) == 1
    assert json.loads((tmp_path / "r.json").read_text())["warnings"] == [f"{p}: 40 rows skipped: no time"]


def test_a_log_of_which_no_row_was_read_says_so_not_that_no_pair_is_known(tmp_path, capsys):
    """Every row's time unreadable (a clock written as 12:04): the refusal said "no stream pair the aligner knows
    (marker)", as if a marker log could not be tied to a microphone."""
    sf = pytest.importorskip("soundfile", reason="soundfile is in the bench extra")
    sf.write(tmp_path / "mic.wav", np.zeros(8000, np.float32), 8000)
    p = tmp_path / "log.csv"
    p.write_text("time,event\n12:04,tone\n12:06,tone\n")
    assert main(["align", str(tmp_path / "mic.wav"), str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no samples in log (every row or sample left out" in err and "no stream pair" not in err, err
