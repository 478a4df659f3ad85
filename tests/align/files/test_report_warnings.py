"""What ``synchub align`` left out or took for a clock reset reaches the ``--json`` report's warnings and stderr:
the rows were logged one by one at WARNING, the report said nothing."""

from __future__ import annotations

import json

from synchub.cli import main


def test_rows_without_a_time_are_counted_in_the_report(tmp_path, capsys):
    p = tmp_path / "log.csv"
    p.write_text("time,event\n1.0,a\n2.0,b\nxx,c\n3.0,d\n,e\n4.0,f\n")
    assert main(["align", str(p), "--json", str(tmp_path / "r.json")]) == 0
    want = f"{p}: 2 rows skipped: no time"
    assert json.loads((tmp_path / "r.json").read_text())["warnings"] == [want]
    assert f"warning: {want}" in capsys.readouterr().err

