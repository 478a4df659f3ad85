"""A finished synchub session with garbled bytes (not a tear): every command says so in one line, or reads what is
readable and says what it lost; never a traceback, never a silent loss."""

from __future__ import annotations

import os
import shutil
import struct

import pytest

from synchub.bench.files.session import write_session
from synchub.bench.sync.run import Recording
from synchub.bench.sync.scenario import parse_scenario
from synchub.cli import main


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    rec = Recording(parse_scenario({
        "name": "t", "duration_s": 20.0, "seed": 3, "chunk_ms": 100.0, "trigger": {"period_s": 1.0},
        "probes": {"rate_hz": 2.0},
        "device": [{"name": "a", "rate_hz": 40.0, "clock": {"offset_s": 30.0, "drift_ppm": 40.0}},
                   {"name": "b", "rate_hz": 25.0, "trigger": False, "clock": {"offset_s": -5.0}}]}, "t.toml"))
    d = tmp_path_factory.mktemp("session")
    paths = [str(d / "agent-s-p1.mcap"), str(d / "agent-s-p2.mcap")]
    write_session(rec, paths)
    return paths


def records(b: bytes) -> list[tuple[int, int, int]]:
    """(position, opcode, length) of a file's top-level records up to its footer."""
    out, pos = [], 8
    while pos + 9 <= len(b) - 8:
        op, n = b[pos], struct.unpack_from("<Q", b, pos + 1)[0]
        out.append((pos, op, n))
        if op == 2:
            break
        pos += 9 + n
    return out


def garbled(session, tmp_path, patch) -> list[str]:
    """A copy of the session whose first part is ``patch(bytearray)``ed."""
    paths = [str(tmp_path / os.path.basename(p)) for p in session]
    for a, b in zip(session, paths, strict=True):
        shutil.copy(a, b)
    b = bytearray(open(paths[0], "rb").read())
    patch(b)
    with open(paths[0], "wb") as f:
        f.write(b)
    return paths


def test_a_chunk_whose_opcode_flipped_is_a_corrupt_record_not_one_skipped(session, tmp_path, capsys, caplog):
    """The mcap library skips a record of an opcode it does not know without a word: a chunk whose opcode byte
    flipped lost every message in it, and inspect, align and export said nothing (exit 0, the part's samples gone)."""

    def flip(b):
        pos = next(p for p, op, _ in records(b) if op == 6)
        b[pos] = 0x7F

    paths = garbled(session, tmp_path, flip)
    assert main(["inspect", *paths]) == 2
    err = capsys.readouterr().err
    assert "unknown opcode 0x7f" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["align", *paths, "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "corrupt MCAP" in err and "unknown opcode 0x7f" in err and not (tmp_path / "r.json").exists()
    # the part's first chunk: nothing of it readable, so export refuses it as inspect and align do (it wrote the
    # other parts and said "1 part(s) torn", exit 0)
    assert main(["export", *paths, "--csv", str(tmp_path / "csv")]) == 2
    err = capsys.readouterr().err
    assert "torn or corrupt before any message is readable" in err and "unknown opcode 0x7f" in err


@pytest.mark.parametrize("where", ["footer's summary start", "chunk index's chunk offset"])
def test_align_out_of_a_part_whose_summary_is_garbled_copies_it_whole(session, tmp_path, capsys, where):
    """``synchub align PART --out`` copied a finished part by its summary (a seeking reader): a garbled footer or
    index, every record of the data whole, was a traceback (EndOfFile, RecordLengthLimitExceeded).  The copy is
    read record by record now: the same file as the intact part's."""

    def garble(b):
        recs = records(b)
        if where.startswith("footer"):
            pos = next(p for p, op, _ in recs if op == 2)
            b[pos + 9:pos + 17] = struct.pack("<Q", 5)
        else:
            pos = next(p for p, op, _ in recs if op == 8)
            b[pos + 9 + 16:pos + 9 + 24] = struct.pack("<Q", 0)

    paths = garbled(session, tmp_path, garble)
    assert main(["align", session[0], "--out", str(tmp_path / "want.mcap")]) == 0
    assert main(["align", paths[0], "--out", str(tmp_path / "got.mcap")]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert (tmp_path / "got.mcap").read_bytes() == (tmp_path / "want.mcap").read_bytes()



def test_a_live_rerun_of_a_part_whose_index_is_garbled_copies_it_whole(session, tmp_path, capsys):
    """``synchub align --live PART --out``: the same copy, by the summary, was a traceback too."""

    def garble(b):
        pos = next(p for p, op, _ in records(b) if op == 8)
        b[pos + 9 + 16:pos + 9 + 24] = struct.pack("<Q", 1 << 40)

    paths = garbled(session, tmp_path, garble)
    assert main(["align", "--live", session[0], "--out", str(tmp_path / "want.mcap")]) == 0
    assert main(["align", "--live", paths[0], "--out", str(tmp_path / "got.mcap")]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert (tmp_path / "got.mcap").read_bytes() == (tmp_path / "want.mcap").read_bytes()
