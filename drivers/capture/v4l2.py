"""A USB/UVC webcam (V4L2), read as small grayscale frames through a capture program's stdout (``ffmpeg`` by default).

The capture machinery of ``base.CaptureDriver`` (which the ALSA driver uses too) with a frame of ``height * width``
uint8 pixels in place of a PCM frame: one frame's worth of bytes per read, every frame stamped with the host receive
time of the read that completed it.  Device time is the frame counter at the nominal frame rate, ``origin + k / fps``: the camera's own
clock as far as a pipe shows it, so the stream's quality metadata says
``timestamp_source = "frame-counter+arrival"``.  Frames the program or the camera dropped are not visible here
(the counter goes on); the clock model sees them as arrival jitter.

When the program exits or stalls (camera unplugged) the driver reports a ``disconnect`` problem, restarts it every
``restart_s`` and, when frames flow again, records a ``disconnect`` gap and a clock reset with a new clock segment
(``base``).  A missing ``ffmpeg`` is a clear ``FileNotFoundError`` naming the Debian package ffmpeg.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synchub.agent.core.options import StreamCommon
from synchub.agent.core.settings import setting
from synchub.agent.core.stream import StreamInfo
from synchub.drivers.base import DriverContext

from .base import STALL_S, CaptureDriver, capture_rate, fill_command, find_program

FFMPEG = ("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "v4l2", "-framerate", "{fps}",
          "-video_size", "{cap_w}x{cap_h}", "-i", "{device}", "-vf", "scale={width}:{height}",
          "-pix_fmt", "gray", "-f", "rawvideo", "-")


@dataclass(frozen=True)
class V4l2Settings:
    device: str = setting("/dev/video0", doc="V4L2 device (/dev/video0, or a stable /dev/v4l/by-id/... link)")
    width: int = setting(32, min=1, max=4096, doc="width of the grayscale frames the stream carries")
    height: int = setting(24, min=1, max=4096, doc="height of the grayscale frames the stream carries")
    fps: float = setting(0.0, min=0.0, max=1000.0, doc="frame rate in Hz (0: the stream's nominal_rate)")
    cap_width: int = setting(640, min=1, max=8192, doc="capture size asked of the camera (scaled to width)")
    cap_height: int = setting(480, min=1, max=8192, doc="capture size asked of the camera (scaled to height)")
    command: tuple[str, ...] = setting((), doc="capture program and arguments writing raw gray frames to stdout; "
                                                "{device} {fps} {width} {height} {cap_w} {cap_h} are filled in "
                                                "(empty: ffmpeg)")
    restart_s: float = setting(1.0, min=0.05, max=60.0, doc="wait before restarting a capture program that exited")


def resolve_fps(common: StreamCommon, settings: V4l2Settings) -> float:
    return capture_rate(common.nominal_rate, settings.fps, "fps", "a V4L2 stream needs a frame rate")


def build_stream_info(common: StreamCommon, settings: V4l2Settings, fps: float) -> StreamInfo:
    if common.type not in ("video", "image"):
        raise ValueError(f"a V4L2 stream has type 'video' or 'image', not {common.type!r}")
    if common.channel_format != "uint8":
        raise ValueError(f"V4L2 frames are 8-bit gray: channel_format must be 'uint8', not {common.channel_format!r}")
    h, w = settings.height, settings.width
    return StreamInfo(
        name=common.name, type=common.type, nominal_srate=fps, channel_count=h * w, channel_format="uint8",
        channel_units=common.channel_units, source_id=common.source_id or settings.device, shape=(h, w),
        quality=(("timestamp_source", "frame-counter+arrival"), ("v4l2_device", settings.device)),
    )


def capture_command(settings: V4l2Settings, fps: float) -> list[str]:
    """The argv of the capture program with the placeholders filled in."""
    fields = {"device": settings.device, "fps": f"{fps:g}", "width": str(settings.width),
              "height": str(settings.height), "cap_w": str(settings.cap_width), "cap_h": str(settings.cap_height)}
    return fill_command(settings.command or FFMPEG, fields)


class V4l2CaptureDriver(CaptureDriver):
    """The capture machinery of ``base``; only the frame layout and the settings are the camera's."""

    thread_prefix = "v4l2"

    def __init__(self, common: StreamCommon, settings: V4l2Settings, context: DriverContext | None = None):
        self.rate = resolve_fps(common, settings)
        super().__init__(build_stream_info(common, settings, self.rate))
        self.name = common.name
        self.settings = settings
        self.argv = capture_command(settings, self.rate)
        find_program(self.argv)
        self.frame_bytes = self.read_bytes = settings.width * settings.height  # a read completes at most one frame
        self.stall_s = max(STALL_S, 10 / self.rate)
        self._init_run_state()

    def _samples(self, raw: bytes, n: int) -> np.ndarray:
        return np.frombuffer(raw, dtype=np.uint8).reshape(n, self.settings.height, self.settings.width).copy()
