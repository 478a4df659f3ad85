"""MCAP files other tools wrote (JSON channels, as Foxglove's and ROS 2 bridges' loggers write them): streams per
channel, times from log_time or a named time field, text channels as markers, other encodings skipped with a
warning; read by the real ``mcap`` writer's files, and through ``synchub align``/``inspect``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from mcap.writer import Writer
from support.paths import ROOT

from synchub.agent.formats.readers.base import InputError, Piece
from synchub.agent.formats.readers.mcap_json import JsonMcapInput, is_synchub_mcap, stamp_ns
from synchub.agent.formats.readers.opening import open_input

NS = 1_000_000_000


def write_foreign(path, n: int = 500, protobuf: bool = True, text: bool = True) -> None:
    """100 Hz IMU messages (ROS 2 style header stamp 0.25 s behind log_time), a log channel, a protobuf channel."""
    with open(path, "wb") as f:
        w = Writer(f)
        w.start(profile="", library="a foreign logger")
        js = w.register_schema("sensor_msgs/Imu", "jsonschema", b"{}")
        imu = w.register_channel("/robot/imu", "json", js)
        log = w.register_channel("/rosout", "json", w.register_schema("Log", "jsonschema", b"{}"))
        pb = w.register_channel("/camera", "protobuf", w.register_schema("foxglove.Image", "protobuf", b"x"))
        for i in range(n):
            t = 5 * NS + i * 10_000_000
            s = t - 250_000_000
            body = {"header": {"stamp": {"sec": s // NS, "nanosec": s % NS}, "frame_id": "imu"},
                    "linear_acceleration": {"x": float(i), "y": 0.5, "z": 9.81}, "ok": True}
            w.add_message(imu, log_time=t, publish_time=t, data=json.dumps(body).encode())
            if text and i % 100 == 0:
                w.add_message(log, log_time=t, publish_time=t, data=json.dumps({"level": 2, "msg": f"tick {i}"}).encode())
            if protobuf and i % 50 == 0:
                w.add_message(pb, log_time=t, publish_time=t, data=b"\x08\x01")
        w.finish()


def _pieces(reader) -> dict[str, list[Piece]]:
    out: dict[str, list[Piece]] = {}
    for p in reader.read():
        out.setdefault(p.stream, []).append(p)
    return out


def test_json_channels_become_streams_timed_by_log_time(tmp_path):
    p = tmp_path / "robot.mcap"
    write_foreign(p)
    assert not is_synchub_mcap(p)
    r = open_input(p)
    assert isinstance(r, JsonMcapInput)
    by = {s.key: s for s in r.streams}
    assert set(by) == {"robot.imu", "rosout"}
    imu = by["robot.imu"].info
    assert imu.channel_labels == ("linear_acceleration.x", "linear_acceleration.y", "linear_acceleration.z")
    assert by["rosout"].info.channel_format == "string" and by["rosout"].info.channel_labels == ("msg",)
    assert any("/camera (protobuf messages) not read" in w for w in r.warnings)
    got = _pieces(r)
    t = np.concatenate([x.device_ns for x in got["robot.imu"]])
    assert np.array_equal(t, 5 * NS + np.arange(500) * 10_000_000)
    data = np.concatenate([x.data for x in got["robot.imu"]])
    assert data.shape == (500, 3) and np.array_equal(data[:, 0], np.arange(500.0))
    assert [x for piece in got["rosout"] for x in piece.data] == [f"tick {i}" for i in range(0, 500, 100)]
    assert [x.seq for x in got["robot.imu"]] == [0]  # one piece under the batch size, numbered from 0


def test_a_named_time_field_is_the_publishers_clock(tmp_path):
    from synchub.agent.formats.readers.base import InputOptions

    p = tmp_path / "robot.mcap"
    write_foreign(p, protobuf=False, text=False)
    r = open_input(p, InputOptions(time_col="header.stamp"))
    t = np.concatenate([x.device_ns for x in _pieces(r)["robot.imu"]])
    assert np.array_equal(t, 5 * NS - 250_000_000 + np.arange(500) * 10_000_000)
    assert stamp_ns({"sec": 2, "nsec": 5}) == 2 * NS + 5 and stamp_ns(1.5) == 1_500_000_000
    assert stamp_ns("soon") is None and stamp_ns(float("nan")) is None


def test_an_mcap_with_nothing_readable_is_one_line(tmp_path):
    p = tmp_path / "cam.mcap"
    with open(p, "wb") as f:
        w = Writer(f)
        w.start()
        c = w.register_channel("/camera", "protobuf", w.register_schema("foxglove.Image", "protobuf", b"x"))
        w.add_message(c, log_time=1, publish_time=1, data=b"\x08\x01")
        w.finish()
    with pytest.raises(InputError, match=r"cam\.mcap: no channel synchub can read .*skipped: protobuf"):
        open_input(p)


def test_align_and_inspect_take_a_foreign_mcap(tmp_path):
    pyxdf = pytest.importorskip("pyxdf", reason="pyxdf is in the bench extra")
    p = tmp_path / "robot.mcap"
    write_foreign(p)

    def synchub(*args):
        return subprocess.run([sys.executable, "-m", "synchub.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)

    r = synchub("inspect", p)
    assert r.returncode == 0, r.stderr
    assert "robot.imu" in r.stdout and "mcap-json" in r.stdout and "protobuf" in r.stdout
    r = synchub("align", p, "-o", tmp_path / "out.xdf")
    assert r.returncode == 0, r.stderr
    streams, _ = pyxdf.load_xdf(str(tmp_path / "out.xdf"), synchronize_clocks=False, dejitter_timestamps=False)
    by = {s["info"]["name"][0]: s for s in streams}
    assert np.allclose(by["robot.imu"]["time_stamps"][:3], [5.0, 5.01, 5.02])  # the reference: its own clock
    assert [row[0] for row in by["rosout"]["time_series"][:2]] == ["tick 0", "tick 100"]  # a string stream
