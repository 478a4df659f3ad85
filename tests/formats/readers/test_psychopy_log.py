"""PsychoPy ``.log`` files (what a Builder experiment writes beside its data): EXP and DATA entries as a marker
stream at their own times, other levels counted and left out, continuation lines joined, foreign files refused in
one line."""

from __future__ import annotations

import numpy as np
import pytest

from synchub.agent.formats.readers.base import InputError, InputOptions
from synchub.agent.formats.readers.opening import open_input
from synchub.agent.formats.readers.psychopy_log import PsychopyLogInput

NS = 1_000_000_000
LOG = (
    "3.5617 \tWARNING \tMonitor specification not found. Creating a temporary one...\n"
    "4.0463 \tEXP \tCreated window1 = Window(allowGUI=True, autoLog=True)\n"
    "6.5017 \tEXP \tNew trial (rep=0, index=0): {'stim': 'A'}\n"
    "6.5170 \tEXP \ttext: autoDraw = True\n"
    "6.5171 \tEXP \tSound tone started\n"
    "7.5170 \tDATA \tKeypress: space\n"
    "7.4185 \tEXP \ttext: autoDraw = False\n"  # stamped on its flip, written at the next flush
    "8.0001 \tEXP \ta message\n"
    "  on two lines\n"
    "8.5 \tINFO \tsome info\n"
    "9.1000 \tDATA \tMouse: Left button down, pos=(12,3)\n"
)


def test_exp_and_data_entries_are_one_marker_stream_at_their_own_times(tmp_path):
    p = tmp_path / "sub-01_task.log"
    p.write_text(LOG)
    inp = open_input(p)
    assert isinstance(inp, PsychopyLogInput) and [s.key for s in inp.streams] == ["sub-01_task"]
    info = inp.streams[0].info
    assert info.channel_format == "string" and info.type == "marker" and info.nominal_srate == 0.0
    pieces = list(inp.read())
    t = np.concatenate([x.device_ns for x in pieces])
    text = [m for x in pieces for m in x.data]
    assert t.tolist() == [4_046_300_000, 6_501_700_000, 6_517_000_000, 6_517_100_000, 7_517_000_000,
                          7_418_500_000, 8_000_100_000, 9_100_000_000]
    assert text[3] == "Sound tone started" and text[5] == "text: autoDraw = False"
    assert text[6] == "a message\n  on two lines"
    assert inp.stats == {"level_warning_left_out": 1, "level_info_left_out": 1}


def test_the_name_option_names_the_stream(tmp_path):
    p = tmp_path / "x.log"
    p.write_text(LOG)
    assert open_input(p, InputOptions(name="psychopy")).streams[0].key == "psychopy"


@pytest.mark.parametrize("body,why", [
    ("hello\nworld\n", "not a PsychoPy log"),
    ("2024-01-01 12:00:00,123 INFO something\n", "not a PsychoPy log"),
    ("\n\n", "no log lines"),
])
def test_a_log_that_is_not_psychopy_s_is_one_line(tmp_path, body, why):
    p = tmp_path / "other.log"
    p.write_text(body)
    with pytest.raises(InputError, match=why):
        open_input(p)
    b = tmp_path / "bin.log"
    b.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(InputError, match="not a text file"):
        open_input(b)


def test_a_log_saved_with_a_bom_or_crlf_reads_the_same(tmp_path):
    p = tmp_path / "win.log"
    p.write_bytes(b"\xef\xbb\xbf" + LOG.replace("\n", "\r\n").encode())
    pieces = list(open_input(p).read())
    assert sum(x.n for x in pieces) == 8 and pieces[0].data[0].startswith("Created window1")


def test_a_long_log_is_read_in_bounded_batches(tmp_path):
    p = tmp_path / "long.log"
    p.write_text("".join(f"{k * 0.01:.4f} \tEXP \tstim {k} on\n" for k in range(20_000)))
    pieces = list(open_input(p).read())
    assert len(pieces) == 3 and sum(x.n for x in pieces) == 20_000 and pieces[1].seq == 8192


def test_a_psychopy_data_file_is_a_marker_stream_of_its_components_starts_and_stops(tmp_path):
    """The trial-by-trial CSV PsychoPy writes beside its .log (no time column; ``<component>.started`` and
    ``.stopped`` in seconds on the same clock): before 2026-11-28 "no time column"."""
    p = tmp_path / "01_exp_2026-11-28.csv"
    p.write_text(
        "trials.thisN,sound_file,fixation.started,fixation.stopped,sound_1.started,sound_1.stopped,key_resp.rt\n"
        "0,a.wav,2.0165,2.5172,2.5178,3.0183,0.512\n"
        "1,b.wav,4.0201,4.5205,4.5210,None,0.498\n"
        ",,,,,,\n")
    inp = open_input(p)
    assert [s.key for s in inp.streams] == ["01_exp_2026-11-28"] and inp.streams[0].info.channel_format == "string"
    got = list(inp.read())
    assert got[0].device_ns.tolist() == [2_016_500_000, 2_517_200_000, 2_517_800_000, 3_018_300_000,
                                         4_020_100_000, 4_520_500_000, 4_521_000_000]
    assert got[0].data == ["fixation started", "fixation stopped", "sound_1 started", "sound_1 stopped",
                           "fixation started", "fixation stopped", "sound_1 started"]
    with_time = tmp_path / "t.csv"
    with_time.write_text("time,led.started\n1.0,2.0\n")  # a time column: an ordinary table
    assert open_input(with_time).streams[0].info.channel_format == "double64"


@pytest.mark.parametrize("tail, kept", [("10.12", None),  # cut inside its time: was joined to the entry before
                                        ("  and its third line", "a message\n  on two lines\n  and its third line")])
def test_a_log_cut_inside_its_last_entry(tmp_path, caplog, tail, kept):
    """PsychoPy stopped while it wrote an entry: '10.1234 \\tEXP \\t...' cut to '10.12' read as a line of the entry
    before it, unsaid.  A last line that is no entry and has no line end is left out, counted and said; a
    continuation line whose file only lacks its last line end is still joined."""
    p = tmp_path / "exp.log"
    p.write_text("8.0001 \tEXP \ta message\n  on two lines\n" + tail)
    r = open_input(p)
    got = [m for piece in r.read() for m in piece.data]
    assert got == (["a message\n  on two lines"] if kept is None else [kept])
    assert ("cut_last_line" in r.stats) == (kept is None)
    assert ("has no line end and is no entry" in caplog.text) == (kept is None)
