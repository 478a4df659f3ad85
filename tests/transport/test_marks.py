"""Marks: what a session read and spooled survives the process; a session that died gets agent_crash gaps for the
difference, and only for it (``Coverage`` waits for ranges that arrive ahead of the mark)."""

import os
import subprocess
import sys

from synchub.agent.transport.marks import Coverage, Marks, crash_gaps, load_marks


def test_coverage_advances_through_contiguous_ranges_only():
    c = Coverage()
    assert c.add(0, 10) == 10
    assert c.add(20, 30) == 10  # a queue_full gap ahead of chunks still held
    assert c.add(30, 35) == 10
    assert c.add(10, 20) == 35  # the held chunks arrive: the mark runs through what waited
    assert c.add(5, 8) == 35 and c.ahead == {}


def test_marks_survive_a_killed_process(tmp_path):
    path = tmp_path / "marks-s.bin"
    code = ("import os, sys\nfrom synchub.agent.transport.marks import Marks\n"
            f"m = Marks({str(path)!r}, ['imu', 'mic'])\n"
            "m.read('imu', 500); m.covered('imu', 0, 300); m.read('mic', 16000); m.covered('mic', 0, 16000)\n"
            "m.read('nope', 5)\nos.kill(os.getpid(), 9)\n")
    r = subprocess.run([sys.executable, "-c", code])
    assert r.returncode == -9
    assert load_marks(path) == {"imu": (500, 300), "mic": (16000, 16000)}


def test_crash_gaps_count_what_was_read_and_not_spooled():
    marks = {"imu": (500, 300), "mic": (16000, 16000), "tlm": (40, 30)}
    # tlm: the kill fell between the spool append of [30, 36) and the covered mark
    gaps = crash_gaps(marks, {"tlm": [(30, 6)], "imu": [(100, 50)]})
    assert [(g.stream, g.seq, g.count, g.cause) for g in gaps] == [("imu", 500, 200, "agent_crash"),
                                                                  ("tlm", 40, 4, "agent_crash")]


def test_a_clean_close_removes_the_file_and_garbage_is_ignored(tmp_path):
    m = Marks(tmp_path / "marks-a.bin", ["x"])
    m.close(remove=True)
    assert not (tmp_path / "marks-a.bin").exists()
    (tmp_path / "marks-b.bin").write_bytes(os.urandom(64))
    assert load_marks(tmp_path / "marks-b.bin") == {}
    assert load_marks(tmp_path / "none.bin") == {}
