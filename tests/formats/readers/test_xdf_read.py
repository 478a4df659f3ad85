"""The streaming XDF reader against pyxdf on LabRecorder's example files, our writer's files, and broken files."""

from __future__ import annotations

import glob
import os
import struct

import numpy as np
import pytest

from synchub.agent.core.stream import StreamInfo
from synchub.agent.formats.readers.base import InputError, Offset
from synchub.agent.formats.readers.opening import open_input
from synchub.agent.formats.readers.xdf_read import XdfInput
from synchub.agent.formats.xdf import XdfWriter

pyxdf = pytest.importorskip("pyxdf", reason="pyxdf is in the bench extra")
EXAMPLES = sorted(glob.glob("/work/shared/data/xdf-example-files/*.xdf"))
NS = 1_000_000_000


def _read_all(path):
    x = XdfInput(path)
    data, stamps, offsets = {}, {}, {}
    for item in x.read():
        if isinstance(item, Offset):
            offsets.setdefault(item.stream, []).append((item.collection_ns, item.offset_ns))
            continue
        stamps.setdefault(item.stream, []).append(item.device_ns)
        data.setdefault(item.stream, []).extend(item.data if isinstance(item.data, list) else list(item.data))
    return x, data, stamps, offsets


@pytest.mark.skipif(not EXAMPLES, reason="the XDF example files are not on this machine")
@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_every_stream_equals_pyxdf_unsynchronized(path):
    x, data, stamps, offsets = _read_all(path)
    streams, _ = pyxdf.load_xdf(path, synchronize_clocks=False, dejitter_timestamps=False)
    assert len(streams) == len(x.streams)
    for s in streams:
        key = x._by_id[int(s["info"]["stream_id"])].key
        want_t = np.rint(np.asarray(s["time_stamps"]) * 1e9).astype(np.int64)
        got_t = np.concatenate(stamps[key]) if key in stamps else np.zeros(0, np.int64)
        assert np.array_equal(got_t, want_t), key
        if s["info"]["channel_format"][0] == "string":
            assert data.get(key, []) == [v[0] for v in s["time_series"]]
        elif len(want_t):
            assert np.array_equal(np.asarray(data[key]), np.asarray(s["time_series"])), key
        want_o = [(round(t * 1e9), round(v * 1e9)) for t, v in zip(s["clock_times"], s["clock_values"], strict=True)]
        assert offsets.get(key, []) == want_o


def test_our_writer_deduced_stamps_and_strings_round_trip(tmp_path):
    path = tmp_path / "w.xdf"
    info = StreamInfo("eeg", "other", 100.0, 2, "int16")
    mk = StreamInfo("mk", "marker", 0.0, 1, "string")
    t = (np.arange(50) * 10_000_000 + 7 * NS).astype(np.int64)
    with XdfWriter(path) as w:
        a, b = w.add_stream(info), w.add_stream(mk)
        w.write_samples(a, t[:20], np.arange(40, dtype=np.int16).reshape(20, 2))
        w.write_samples(b, [8 * NS], ["héllo, wörld"])
        # a chunk whose samples carry no stamps (deduced: previous + 1/rate, as LSL writes them)
        body = b"".join(b"\x00" + struct.pack("<hh", i, -i) for i in range(30))
        w._chunk(3, struct.pack("<I", a) + bytes([1, 30]) + body)
    x, data, stamps, _ = _read_all(path)
    got = np.concatenate(stamps["eeg"])
    assert np.array_equal(got[:20], t[:20])
    assert np.allclose(got[20:], t[19] + np.arange(1, 31) * 10_000_000, atol=1)
    assert data["mk"] == ["héllo, wörld"]
    assert [s.info.type for s in x.streams] == ["other", "marker"]
    py, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)
    assert np.allclose(py[0]["time_stamps"] * 1e9, got, atol=2)


def test_a_text_file_named_xdf_is_one_line_error(tmp_path):
    p = tmp_path / "notes.xdf"
    p.write_text("these are my notes, not a recording\n")
    with pytest.raises(InputError, match=r"notes\.xdf: not an XDF file"):
        open_input(p)


@pytest.mark.skipif(not EXAMPLES, reason="the XDF example files are not on this machine")
def test_a_truncated_xdf_is_refused_before_anything_is_read(tmp_path):
    src = [e for e in EXAMPLES if e.endswith("clock_resets.xdf")][0]
    p = tmp_path / "cut.xdf"
    p.write_bytes(open(src, "rb").read()[: os.path.getsize(src) // 2])
    with pytest.raises(InputError, match=r"cut\.xdf: truncated XDF: the chunk at byte \d+ needs"):
        open_input(p)


def test_empty_missing_and_corrupt_files(tmp_path):
    empty = tmp_path / "e.xdf"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        open_input(empty)
    with pytest.raises(InputError, match="no such file"):
        open_input(tmp_path / "nope.xdf")
    bad = tmp_path / "b.xdf"
    bad.write_bytes(b"XDF:\x03\x05\x00")
    with pytest.raises(InputError, match="bad chunk length byte 3"):
        open_input(bad)
    headless = tmp_path / "h.xdf"
    headless.write_bytes(b"XDF:" + bytes([1, 7]) + struct.pack("<HIB", 3, 9, 0))
    with pytest.raises(InputError, match="stream id 9"):
        open_input(headless)
    (tmp_path / "d.xdf").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        open_input(tmp_path / "d.xdf")


@pytest.mark.parametrize("count", [10**9, 1 << 40, 1 << 62])
def test_a_samples_chunk_claiming_more_samples_than_its_bytes_is_one_line(tmp_path, count):
    """A garbled sample count: numpy was asked for 7.45 GiB (or 8 TiB: a MemoryError traceback; 2**62: numpy's
    'array is too big' without the file's name) before the chunk's 27 bytes ran out."""
    path = tmp_path / "c.xdf"
    with XdfWriter(path) as w:
        a = w.add_stream(StreamInfo("eeg", "other", 100.0, 2, "float32"))
        body = b"".join(b"\x00" + struct.pack("<ff", 1, 2) for _ in range(3))
        w._chunk(3, struct.pack("<I", a) + bytes([8]) + struct.pack("<Q", count) + body)
    with pytest.raises(InputError, match=rf"c\.xdf: corrupt XDF: the samples chunk at byte \d+ claims {count} "
                                         r"samples in 27 bytes"):
        list(open_input(path).read())
