"""Marks: what a session read and spooled survives the process; a session that died gets agent_crash gaps for the
difference, and only for it (``Coverage`` waits for ranges that arrive ahead of the mark)."""

import os
import subprocess
import sys

from synchub.agent.transport.marks import Coverage, Marks, crash_gaps, load_marks, marks_path


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


def test_a_crashed_session_with_everything_acked_still_gets_its_crash_gaps(tmp_path):
    """A session whose spooled records were all acked (and saved) before the agent died loads with nothing pending;
    what it had read but not spooled must still become agent_crash gaps, numbered after the collector's ack (they
    used to be dropped with the session: its marks file was deleted as 'never sent anything')."""
    import numpy as np

    from synchub.agent.core.stream import Chunk
    from synchub.agent.transport import wire
    from synchub.agent.transport.restart import crashed_and_new_marks, sessions_from_spool
    from synchub.agent.transport.spool import KIND_DATA, Spool

    d = tmp_path / "sp"
    sp = Spool(d, max_bytes=1 << 20)
    sp.save_hello("old", wire.encode_hello("a", "old", [], "t", 0, 0))
    for mid in range(1, 4):
        c = Chunk("imu", (mid - 1) * 10, np.zeros((10, 1), np.float32), np.arange(10), np.arange(10))
        sp.append("old", mid, wire.encode_chunk("old", mid, c), KIND_DATA, "imu", (mid - 1) * 10, 10)
    m = Marks(marks_path(d, "old"), ["imu"])
    m.read("imu", 55)  # read up to seq 55, spooled (and acked) up to 30
    m.covered("imu", 0, 30)
    sp.ack("old", 3)
    sp.close()  # saves the acks, as the crashed process had
    m.close(remove=False)

    sp = Spool(d, max_bytes=1 << 20)
    sessions = sessions_from_spool(sp, "new", wire.encode_hello("a", "new", [], "t", 0, 0))
    assert "old" in sessions
    crashed_and_new_marks(sp, sessions, "new", ["imu"]).close(remove=True)
    gap = wire.decode(sp.get("old", 4))
    assert gap.kind == "gap"
    assert [(g.stream, g.seq, g.count, g.cause) for g in gap.gaps] == [("imu", 55, 25, "agent_crash")]
    sp.close()
