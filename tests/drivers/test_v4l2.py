"""The V4L2 capture driver against real subprocesses.  This machine has no camera, so the "camera" is a small Python
program started as the capture command in place of ffmpeg: it writes numbered raw gray frames to stdout at the
real-time pace, in pieces that split frames, and can die mid-stream like ffmpeg when the webcam is unplugged."""

import shutil
import sys

import numpy as np
import pytest
from support.sinks import run_capture

from synchub.agent.clock.model import ClockModel
from synchub.agent.core.options import StreamCommon
from synchub.drivers.capture.base import SEGMENT_JUMP_NS
from synchub.drivers.capture.v4l2 import V4l2CaptureDriver, V4l2Settings, capture_command
from synchub.drivers.registry import DRIVERS

# argv: fps width height piece_bytes frames die_once_file ("" never dies) die_after_frames
CAMERA = r"""
import os, sys, time
fps, w, h, piece, frames, once, die_after = sys.argv[1:8]
fps, w, h, piece, frames, die_after = float(fps), int(w), int(h), int(piece), int(frames), int(die_after)
dies = bool(once) and not os.path.exists(once)
if dies:
    open(once, "w").close()
    frames = die_after
fb = w * h
data = b"".join(bytes((i + j) % 256 for j in range(fb)) for i in range(frames))
sys.stderr.write("fake-camera: capturing\n"); sys.stderr.flush()
t0 = time.monotonic()
for at in range(0, len(data), piece):
    wait = t0 + (at // fb) / fps - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    os.write(1, data[at:at + piece])
if dies:
    sys.stderr.write("[video4linux2,v4l2 @ 0x55] ioctl(VIDIOC_DQBUF): No such device\n"); sys.stderr.flush()
    os.write(1, data[:fb - 1])  # a partial frame, then the camera is gone
    sys.exit(1)
time.sleep(60)  # a healthy camera keeps the stream open until it is stopped
"""

W, H, FPS = 8, 6, 100.0


def frame(i):
    return ((np.arange(W * H) + i) % 256).astype(np.uint8).reshape(H, W)


def common(rate=FPS, type="video", fmt="uint8"):
    return StreamCommon(name="cam0", type=type, driver="v4l2", nominal_rate=rate, channel_format=fmt)


def camera_settings(piece=W * H, frames=60, once="", die_after=0, **kw):
    cmd = (sys.executable, "-c", CAMERA, "{fps}", "{width}", "{height}", str(piece), str(frames), once, str(die_after))
    return V4l2Settings(device="fake", width=W, height=H, command=cmd, **kw)


def test_every_frame_once_in_order_with_frame_counter_device_times():
    d = V4l2CaptureDriver(common(), camera_settings(frames=50))  # 0.5 s at 100 fps
    assert d.argv[3:6] == ["100", "8", "6"]
    sink = run_capture(d, 50)
    data = np.concatenate([c[0] for c in sink.chunks])
    dev = np.concatenate([c[1] for c in sink.chunks])
    host = np.concatenate([c[2] for c in sink.chunks])
    assert data.dtype == np.uint8 and data.shape == (50, H, W)
    assert all(np.array_equal(data[i], frame(i)) for i in range(50))  # each frame once, in order, intact
    assert np.array_equal(dev, np.arange(50) * 10_000_000)  # 100 fps: 10 ms apart
    assert np.all(np.diff(host) > 0)  # one host stamp per frame, as each arrived
    assert host[-1] - host[0] > 0.35e9  # paced: the camera took ~0.5 s, the driver read it as it came
    assert sink.gaps == [] and sink.problems == [] and d.stats.samples == 50
    assert d.info.quality_dict()["timestamp_source"] == "frame-counter+arrival"
    assert d.info.type == "video" and d.info.shape == (H, W) and d.info.channel_format == "uint8"
    assert d.info.nominal_srate == 100.0
    assert V4l2CaptureDriver(common(type="image"), camera_settings()).info.type == "image"


def test_frames_split_across_reads_are_reassembled():
    d = V4l2CaptureDriver(common(), camera_settings(piece=7, frames=40))  # 48-byte frames in 7-byte writes
    sink = run_capture(d, 40)
    data = np.concatenate([c[0] for c in sink.chunks])
    assert d.split_reads > 10  # the case under test really happened
    assert data.shape == (40, H, W) and all(np.array_equal(data[i], frame(i)) for i in range(40))
    assert np.all(np.diff(np.concatenate([c[1] for c in sink.chunks])) == 10_000_000)
    assert sink.problems == []


def test_program_dying_gives_disconnect_gap_restart_and_new_segment(tmp_path, caplog):
    d = V4l2CaptureDriver(common(), camera_settings(frames=200, once=str(tmp_path / "died"), die_after=30,
                                                    restart_s=0.2))
    with caplog.at_level("INFO"):
        sink = run_capture(d, 30 + 20)
    assert d.starts == 2 and d.exits == 1
    reasons = [r for r, _ in sink.problems]
    assert reasons.count("disconnect") == 1 and reasons.count("malformed") == 1  # the partial frame
    disconnect = next(detail for r, detail in sink.problems if r == "disconnect")
    assert "exit status 1" in disconnect and "No such device" in disconnect
    assert any("capture from fake stopped" in r.message for r in caplog.records)

    data = np.concatenate([c[0] for c in sink.chunks])
    dev = np.concatenate([c[1] for c in sink.chunks])
    host = np.concatenate([c[2] for c in sink.chunks])
    assert all(np.array_equal(data[i], frame(i)) for i in range(30))  # every frame the first run gave
    assert all(np.array_equal(data[30 + i], frame(i)) for i in range(len(data) - 30))  # restarted from its first

    (lost, cause, d_from, d_to, detail, at), = sink.gaps
    (r_from, r_to, _, at2), = sink.resets
    assert cause == "disconnect"
    assert at == at2 == 30  # both recorded before the first frame of the new run
    assert d_from == r_from == dev[29] and d_to == r_to == dev[30]
    outage_s = (host[30] - host[29]) / 1e9
    assert 0.2 <= outage_s < 2.0
    assert abs(lost - (outage_s * FPS - 1)) < 2  # the outage at 100 fps, less the first new frame
    assert np.all(np.diff(dev[:30]) == 10_000_000) and np.all(np.diff(dev[30:]) == 10_000_000)
    assert dev[30] - dev[29] > SEGMENT_JUMP_NS
    assert d.stats.resets == 1 and d.stats.dropped == lost

    model = ClockModel("cam0", nominal_period_ns=10_000_000)  # the real clock model starts a new segment there
    segs = np.concatenate([model.add_arrivals(c[1], c[2]) for c in sink.chunks])
    assert len(model.segments) == 2 and np.all(segs[:30] == 0) and np.all(segs[30:] == 1)


def test_missing_program_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg on this PATH, whether or not the machine has one
    with pytest.raises(FileNotFoundError, match="Debian package ffmpeg"):
        V4l2CaptureDriver(common(), V4l2Settings())
    with pytest.raises(FileNotFoundError, match="no-such-grabber"):
        V4l2CaptureDriver(common(), V4l2Settings(command=("no-such-grabber", "{device}")))


def test_settings_errors_name_the_problem():
    with pytest.raises(ValueError, match="nominal_rate"):
        V4l2CaptureDriver(common(rate=0.0), camera_settings())
    with pytest.raises(ValueError, match="does not match"):
        V4l2CaptureDriver(common(), camera_settings(fps=30.0))
    with pytest.raises(ValueError, match="uint8"):
        V4l2CaptureDriver(common(fmt="float32"), camera_settings())
    with pytest.raises(ValueError, match="'video' or 'image'"):
        V4l2CaptureDriver(common(type="audio"), camera_settings())


def test_default_command_is_ffmpeg_with_the_settings():
    assert "v4l2" in DRIVERS
    argv = capture_command(V4l2Settings(device="/dev/v4l/by-id/usb-cam-video-index0"), 30.0)
    assert argv == ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "v4l2", "-framerate", "30",
                    "-video_size", "640x480", "-i", "/dev/v4l/by-id/usb-cam-video-index0", "-vf", "scale=32:24",
                    "-pix_fmt", "gray", "-f", "rawvideo", "-"]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed on this machine")
def test_real_ffmpeg_test_pattern():
    # no camera here: ffmpeg's own test source stands in for -f v4l2, through the same raw gray output
    cmd = ("ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
           "testsrc=size=64x48:rate={fps}", "-vf", "scale={width}:{height}", "-pix_fmt", "gray", "-f", "rawvideo",
           "-")
    d = V4l2CaptureDriver(common(rate=25.0), V4l2Settings(device="lavfi", command=cmd))
    sink = run_capture(d, 10)
    data = np.concatenate([c[0] for c in sink.chunks])
    assert data.shape[1:] == (24, 32) and data.std() > 0


def test_a_config_stream_builds_the_driver():
    from synchub.agent.config.loader import parse_config
    from synchub.agent.core.settings import ConfigError

    table = {"name": "cam0", "type": "video", "driver": "v4l2", "nominal_rate": 100.0, "channel_format": "uint8",
             "width": W, "height": H, "command": list(camera_settings().command)}
    stream = parse_config({"stream": [table]}, "c.toml").stream("cam0")
    assert isinstance(stream.driver, V4l2Settings) and stream.driver.width == W
    d = V4l2CaptureDriver(stream.common, stream.driver)
    assert d.info.shape == (H, W) and d.argv[3:6] == ["100", "8", "6"]
    with pytest.raises(ConfigError, match="widht"):
        parse_config({"stream": [dict(table, widht=3)]}, "c.toml")
