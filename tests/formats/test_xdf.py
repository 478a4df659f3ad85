"""The XDF writer, read back with the real pyxdf, and compared with real LabRecorder files."""

from __future__ import annotations

import glob
import struct

import numpy as np
import pytest

from synchub.agent.core.stream import StreamInfo
from synchub.agent.core.units import NS
from synchub.agent.formats.xdf import XdfWriter

pyxdf = pytest.importorskip("pyxdf", reason="pyxdf is in the bench extra")
EXAMPLES = sorted(glob.glob("/work/shared/data/xdf-example-files/*.xdf"))


def _write(path):
    imu = StreamInfo("imu0", "imu", 100.0, 3, "float32", channel_labels=("x", "y", "z"), channel_units=("g",) * 3,
                     source_id="SN1", quality=(("timestamp_source", "device"),))
    log = StreamInfo("log0", "text", 0.0, 1, "string")
    vid = StreamInfo("cam0", "video", 30.0, 4, "uint8", shape=(2, 2))
    t = (np.arange(1000) * 10_000_000 + 50 * NS).astype(np.int64)
    data = np.random.default_rng(0).normal(size=(1000, 3)).astype(np.float32)
    with XdfWriter(path, hostname="pi") as w:
        a = w.add_stream(imu)
        b = w.add_stream(log)
        c = w.add_stream(vid)
        w.write_samples(a, t[:400], data[:400])
        w.write_clock_offset(a, 52 * NS, 2_000_000)
        w.write_boundary()
        w.write_samples(a, t[400:], data[400:])
        w.write_clock_offset(a, 58 * NS, 2_000_000)
        w.write_samples(b, [51 * NS, 52 * NS], ["héllo wörld", "x" * 300])
        w.write_samples(c, [50 * NS], np.array([[[0, 255], [7, 128]]], np.uint8))
    return t, data


def test_round_trip_with_pyxdf(tmp_path):
    p = tmp_path / "a.xdf"
    t, data = _write(p)
    streams, header = pyxdf.load_xdf(str(p), synchronize_clocks=False, dejitter_timestamps=False)
    by = {s["info"]["name"][0]: s for s in streams}
    imu = by["imu0"]
    assert np.array_equal(imu["time_series"], data)
    assert np.allclose(imu["time_stamps"], t / 1e9, rtol=0, atol=1e-9)
    assert imu["info"]["channel_format"] == ["float32"] and imu["info"]["nominal_srate"] == ["100.0"]
    labels = [c["label"][0] for c in imu["info"]["desc"][0]["channels"][0]["channel"]]
    assert labels == ["x", "y", "z"]
    assert by["log0"]["time_series"] == [["héllo wörld"], ["x" * 300]]
    assert by["cam0"]["time_series"].tolist() == [[0, 255, 7, 128]]  # uint8 written as int16
    assert list(imu["clock_values"]) == [0.002, 0.002]
    assert imu["footer"]["info"]["sample_count"] == ["1000"]
    synced, _ = pyxdf.load_xdf(str(p), synchronize_clocks=True, dejitter_timestamps=True)
    s2 = {s["info"]["name"][0]: s for s in synced}["imu0"]
    assert np.allclose(s2["time_stamps"], t / 1e9 + 0.002, atol=1e-6)  # the ClockOffset was applied


def test_chunk_layout(tmp_path):
    p = tmp_path / "b.xdf"
    _write(p)
    raw = p.read_bytes()
    assert raw[:4] == b"XDF:"
    tags, pos = [], 4
    while pos < len(raw):
        nb = raw[pos]
        length = int.from_bytes(raw[pos + 1 : pos + 1 + nb], "little")
        tag = struct.unpack("<H", raw[pos + 1 + nb : pos + 3 + nb])[0]
        tags.append(tag)
        pos += 1 + nb + length
    assert pos == len(raw)
    assert tags[0] == 1 and tags[1:4] == [2, 2, 2] and tags[-3:] == [6, 6, 6] and 5 in tags and tags.count(4) == 2


@pytest.mark.skipif(not EXAMPLES, reason="the XDF example files are not in /work/shared/data")
def test_same_structure_as_real_labrecorder_files(tmp_path):
    p = tmp_path / "c.xdf"
    _write(p)
    ours, _ = pyxdf.load_xdf(str(p))
    ours_info = set(ours[0]["info"]) - {"segments", "clock_segments", "effective_srate", "stream_id"}
    ours_footer = set(ours[0]["footer"]["info"])
    for f in EXAMPLES:
        theirs, _ = pyxdf.load_xdf(f)
        for s in theirs:
            # the v4*/v6* keys are the LSL outlet's network addresses: nothing an XDF file needs
            keys = {k for k in s["info"] if not k.startswith(("v4", "v6"))}
            keys -= {"segments", "clock_segments", "effective_srate", "stream_id", "desc"}
            assert keys <= ours_info | {"desc"}, (f, keys - ours_info)
            assert set(s["footer"]["info"]) - {"writer"} <= ours_footer
