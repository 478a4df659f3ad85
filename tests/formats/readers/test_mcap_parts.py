"""synchub MCAP sessions read as a stream (several part files, one session) and re-corrected by the engine with
the agent's clock layer fed as the recording is read: the same times as ``synchub align``'s in-memory rerun."""

from __future__ import annotations

import os

import numpy as np
import pytest

from synchub.agent.align.files.engine import FileAlignment, InputSpec
from synchub.agent.cli.align import rerun
from synchub.agent.formats.mcap_read import read_session
from synchub.agent.formats.readers.base import InputError, Piece
from synchub.agent.formats.readers.mcap_parts import McapInput
from synchub.bench.files.session import write_session
from synchub.bench.sync.run import Recording
from synchub.bench.sync.scenario import parse_scenario

NS = 1_000_000_000


def _recording(probes: bool = True, b_latency: dict | None = None) -> Recording:
    return Recording(parse_scenario({
        "name": "t", "duration_s": 90.0, "seed": 3, "chunk_ms": 100.0, "trigger": {"period_s": 1.0},
        "probes": {"rate_hz": 2.0 if probes else 0.0},
        "device": [
            {"name": "a", "rate_hz": 40.0, "clock": {"offset_s": 30.0, "drift_ppm": 40.0, "jitter_us": 1.0,
                                                    "resets_at_s": [50.0], "reset_to_s": [2.0]}},
            {"name": "b", "rate_hz": 25.0, "trigger": False,
             "clock": {"offset_s": -5.0, "drift_ppm": -20.0, **(b_latency or {})}},
        ]}, "t.toml"))


@pytest.fixture(scope="module", params=["gaps", "evidence"])
def session(tmp_path_factory, request):
    """Resets as ``device_reset`` gaps (recordings before issue 10) and as ``ClockReset`` evidence (today's)."""
    d = tmp_path_factory.mktemp("session")
    paths = [str(d / "agent-s-p1.mcap"), str(d / "agent-s-p2.mcap")]
    write_session(_recording(), paths, resets=request.param)
    return paths


def test_parts_read_as_one_stream_equal_read_session(session):
    whole = read_session(session)
    got: dict[str, list[Piece]] = {}
    for item in McapInput(list(reversed(session))).read():  # parts in any order: sorted by their part number
        if isinstance(item, Piece):
            got.setdefault(item.stream, []).append(item)
    for name, s in whole["streams"].items():
        pieces = sorted(got[name], key=lambda p: p.seq)
        assert np.array_equal(np.concatenate([p.device_ns for p in pieces]), s["device_ns"])
        assert np.array_equal(np.concatenate([p.host_ns for p in pieces]), s["host_ns"])
        assert np.array_equal(np.concatenate([p.data for p in pieces]), s["data"])


def test_streaming_rerun_equals_synchub_aligns_in_memory_rerun(session, tmp_path):
    corrected, _ = rerun(session)
    want: dict[str, list] = {}
    for c in corrected:
        want.setdefault(c.stream, []).append((c.seq, c.ref_ns))
    out = tmp_path / "out.mcap"
    rep = FileAlignment([InputSpec(list(session))]).write(out)
    back = read_session(out)
    for name, parts in want.items():
        ref = np.concatenate([r for _, r in sorted(parts, key=lambda p: p[0])])
        assert np.array_equal(back["streams"][name]["ref_ns"], ref), name
    a = next(s for s in rep["streams"] if s["name"] == "a")
    assert a["method"] == "synchub-clock-layer" and len(a["segments"]) == 2
    if "device_reset" in str(read_session(session)["gaps"]):  # the older form: gap records, carried to the output
        assert [(g["stream"], g["cause"]) for g in back["gaps"]] == [("a", "device_reset")]
        assert a["gaps_recorded"] == {"device_reset": 0}
    else:
        assert back["gaps"] == [] and "gaps_recorded" not in a


def test_not_an_mcap(tmp_path):
    p = tmp_path / "x.mcap"
    p.write_text("not mcap")
    with pytest.raises(InputError, match=r"x\.mcap: not an MCAP file"):
        FileAlignment([InputSpec([str(p)])])


def test_a_sessions_aligner_offsets_are_judged_alike_streamed_and_in_memory(tmp_path):
    """The two-sided reruns judge a stream's aligner offsets all together before feeding any
    (``replay.offset_judgement``): the streamed one (``synchub align SESSION.mcap``, a pass over the evidence first)
    leaves out the same confident wrong windows as the in-memory one and gives the same times."""
    from synchub.agent.cli.rerun import rerun_streamed
    from synchub.agent.core.evidence import OffsetEstimate

    # b: no trigger, no probes; its arrivals (2-30 ms late) and the aligner's offsets
    rec = _recording(probes=False, b_latency={"latency_kind": "uniform", "latency_min_ms": 2.0, "latency_max_ms": 30.0})
    b = next(s for s in rec.streams if s.name == "b")
    rng = np.random.default_rng(7)
    offs = []
    for k in range(20, len(b.device_ns) - 20, 100):  # every 4 s; a fifth of them 40-90 ms late with a 2 ms sigma
        d, truth = int(b.device_ns[k]), int(b.true[k]) - int(b.device_ns[k])
        off, sg = (truth + rng.uniform(40e6, 90e6), 2e6) if k % 500 == 20 else (truth + rng.normal(0, 3e6), 3e6)
        offs.append(OffsetEstimate("b", d, int(off), int(2 * sg), "hybrid", host_ns=int(b.host[k]) + 8 * NS))
    paths = [str(tmp_path / "agent-s-p1.mcap"), str(tmp_path / "agent-s-p2.mcap")]
    write_session(rec, paths, evidence=offs)
    corrected, _ = rerun(paths)
    ref = np.concatenate([c.ref_ns for c in sorted((c for c in corrected if c.stream == "b"), key=lambda c: c.seq)])
    assert np.median(np.abs(ref - b.true)) < 2e6  # the five wrong ones followed: 20.5 ms
    out = tmp_path / "out.mcap"
    FileAlignment([InputSpec(list(paths))]).write(out)
    assert np.array_equal(read_session(out)["streams"]["b"]["ref_ns"], ref)
    summary = rerun_streamed(McapInput(paths))
    assert summary["aligner_offsets_left_out"] == {"b": 5}, summary  # the five wrong ones


def test_inspect_of_a_foreign_file_named_mcap_is_a_one_line_error(tmp_path, capsys):
    """A foreign file (here an XDF's first bytes) named .mcap: ``synchub inspect`` said "0 streams", exit 0."""
    from synchub.cli import main

    p = tmp_path / "x.mcap"
    p.write_bytes(b"XDF:\x01\x3a\x01\x00" + b"<info/>" * 8)
    assert main(["inspect", str(p)]) == 2
    err = capsys.readouterr().err
    assert "not an MCAP file" in err and "Traceback" not in err


def test_align_of_a_session_torn_in_its_summary_reads_up_to_the_tear(session, tmp_path, capsys, caplog):
    """A part file cut inside its summary/footer (a collector that stopped): ``synchub align`` raised the mcap
    library's ``RecordLengthLimitExceeded`` (a seeking reader on a file without footer); now it reads the part up to
    the tear, logged."""
    import shutil

    from synchub.cli import main

    paths = [str(tmp_path / os.path.basename(p)) for p in session]
    for a, b in zip(session, paths, strict=True):
        shutil.copy(a, b)
    with open(paths[-1], "r+b") as f:
        f.truncate(os.path.getsize(paths[-1]) - 30)
    assert main(["align", *paths]) == 0
    assert "torn/corrupt record" in caplog.text
    assert "Traceback" not in capsys.readouterr().err


def test_inspect_of_a_part_torn_before_any_message_is_a_one_line_error(session, tmp_path, capsys, caplog):
    """A part cut in its middle, where its messages sit in one compressed chunk not yet ended: ``synchub inspect``
    said "0 streams", exit 0, the tear logged at INFO; a part torn later is read up to the tear with a warning."""
    import logging
    import shutil

    from synchub.cli import main

    p = tmp_path / os.path.basename(session[0])
    shutil.copy(session[0], p)
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.truncate(size // 2)
    assert main(["inspect", str(p)]) == 2
    err = capsys.readouterr().err
    assert "torn or corrupt before any message is readable" in err and "Traceback" not in err
    shutil.copy(session[0], p)
    with open(p, "r+b") as f:
        f.truncate(size - 30)  # inside the summary: every message readable
    with caplog.at_level(logging.WARNING):
        assert main(["inspect", str(p)]) == 0
    assert "torn/corrupt record" in caplog.text


def test_export_of_a_part_torn_before_any_message_is_a_one_line_error(session, tmp_path, capsys):
    """``synchub inspect`` refused such a part (above); ``synchub export`` wrote an export without a sample of it,
    exit 0.  Now the same one line, and no output left behind."""
    import shutil

    from synchub.cli import main

    p = tmp_path / os.path.basename(session[0])
    shutil.copy(session[0], p)
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) // 2)
    out = tmp_path / "out.xdf"
    assert main(["export", str(p), *session[1:], "--xdf", str(out)]) == 2  # with the session's other parts too
    err = capsys.readouterr().err
    assert "torn or corrupt before any message is readable" in err and str(p) in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.xdf.partial-*"))
