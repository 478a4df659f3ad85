"""``synchub inspect SESSION.mcap`` read a record at a time gives the summary the whole-session read gave: on the
recording made before issue 10, and on simulated sessions in two parts with holes, duplicated chunks, resets in both
forms and no correction layer, and with one."""

from __future__ import annotations

import numpy as np
import pytest

from synchub.agent.cli.inspect_cmd import summarize
from synchub.agent.cli.inspect_stream import summarize_streaming
from synchub.agent.cli.rerun import rerun_streamed
from synchub.agent.formats.mcap_read import read_session
from synchub.agent.formats.readers.mcap_parts import McapInput
from synchub.bench.files.session import write_session
from synchub.bench.sync.run import Recording
from synchub.bench.sync.scenario import parse_scenario
from synchub.cli import main


def _recording() -> Recording:
    return Recording(parse_scenario({
        "name": "t", "duration_s": 40.0, "seed": 5, "chunk_ms": 100.0, "trigger": {"period_s": 1.0},
        "probes": {"rate_hz": 2.0},
        "device": [
            {"name": "a", "rate_hz": 50.0, "clock": {"offset_s": 3.0, "drift_ppm": 40.0, "resets_at_s": [20.0],
                                                    "reset_to_s": [1.0]}},
            {"name": "b", "rate_hz": 20.0, "trigger": False, "clock": {"offset_s": -5.0, "drift_ppm": -20.0}},
        ]}, "t.toml"))


def test_the_legacy_recording_summarizes_the_same(legacy_recording):
    path = str(legacy_recording[0])
    assert summarize_streaming([path]) == summarize(read_session([path]))


@pytest.mark.parametrize("resets", ["gaps", "evidence"])
def test_a_session_in_parts_with_holes_and_duplicates_summarizes_the_same(tmp_path, resets):
    rec = _recording()
    a = [c for c in rec.chunks if c.stream == "a"]
    rec.chunks = [c for c in rec.chunks if c is not a[10] and c is not a[11]] + [a[30]]  # a hole, a duplicate
    parts = [str(tmp_path / "agent-s-p1.mcap"), str(tmp_path / "agent-s-p2.mcap")]
    write_session(rec, parts, resets=resets)
    whole = summarize(read_session(parts))
    assert summarize_streaming(parts) == whole
    row = next(r for r in whole["streams"] if r["name"] == "a")
    assert row["seq_holes"] == 1 and row["seq_duplicates"] == a[30].n and row["clock_resets"] == 1
    assert not row["corrected"]
    copy = tmp_path / "copy.mcap"  # and with a correction layer (the streamed rerun's copy of one part)
    one = str(tmp_path / "one.mcap")
    write_session(rec, [one], resets=resets)
    rerun_streamed(McapInput([one]), copy)
    corrected = summarize(read_session([str(copy)]))
    assert summarize_streaming([str(copy)]) == corrected
    assert next(r for r in corrected["streams"] if r["name"] == "a")["uncertainty_us_median"] > 0
    got = read_session([str(copy)])["streams"]["a"]  # a chunk recorded twice streams without a crash
    assert len(got["ref_ns"]) == len(got["seq"]) and np.all(got["ref_ns"] > 0)


def test_the_command_reads_it_streamed(legacy_recording, capsys):
    assert main(["inspect", str(legacy_recording[0]), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"imu0"' in out and np.isfinite(len(out))
