"""A USB microphone or other ALSA capture device, read through a capture program's stdout (``arecord`` by default).

The driver starts the capture program as a subprocess (no shell), reads raw interleaved PCM from its stdout on its
own thread in period-sized reads, stamps the host receive time (``time.monotonic_ns()`` right after each read) and
gives every sample a device time from the sample counter at the nominal rate: sample ``k`` of a segment is at
``origin + k / rate``.  That is the sound card's own clock, so the clock model learns its drift against the host
(as LSL/ALSA users expect); the stream's quality metadata says ``timestamp_source = "sample-counter+period-arrival"``.
A read that ends inside a frame keeps the partial frame for the next read: no frame is ever split or lost.

Restarts, outages, gaps and the new clock segment after a restart: ``base.CaptureDriver``.  ``overrun`` lines on
arecord's stderr (samples the card dropped while the counter went on) are counted and reported as problems.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synchub.agent.core.options import StreamCommon
from synchub.agent.core.settings import setting
from synchub.agent.core.stream import StreamInfo
from synchub.drivers.base import DriverContext

from .base import STALL_S, CaptureDriver, capture_rate, fill_command, find_program

#: sample format -> (little-endian numpy dtype, native channel_format, full scale for float output)
SAMPLE_FORMATS = {
    "S16_LE": ("<i2", "int16", 32768.0),
    "S32_LE": ("<i4", "int32", 2147483648.0),
    "FLOAT_LE": ("<f4", "float32", 1.0),
}
ARECORD = ("arecord", "-q", "-D", "{device}", "-t", "raw", "-f", "{format}", "-r", "{rate}", "-c", "{channels}",
           "-F", "{period_us}")


@dataclass(frozen=True)
class AlsaSettings:
    device: str = setting("default", doc="ALSA capture device (hw:1,0, plughw:CARD=Device; `arecord -L` lists them)")
    rate: int = setting(0, min=0, max=768000, doc="sample rate in Hz (0: the stream's nominal_rate)")
    channels: int = setting(1, min=1, max=64, doc="channels per frame (interleaved)")
    sample_format: str = setting("S16_LE", choices=tuple(SAMPLE_FORMATS), doc="PCM sample format")
    period_ms: float = setting(20.0, min=1.0, max=1000.0, doc="ALSA period: the size of one read")
    command: tuple[str, ...] = setting((), doc="capture program and arguments writing raw PCM to stdout; "
                                                "{device} {rate} {channels} {format} {period_us} are filled in "
                                                "(empty: arecord from alsa-utils)")
    restart_s: float = setting(1.0, min=0.05, max=60.0, doc="wait before restarting a capture program that exited")


def resolve_rate(common: StreamCommon, settings: AlsaSettings) -> int:
    rate = capture_rate(common.nominal_rate, settings.rate, "rate", "an ALSA stream needs a sample rate")
    if rate != int(rate):
        raise ValueError(f"ALSA sample rates are whole Hz, got nominal_rate {common.nominal_rate}")
    return int(rate)


def build_stream_info(common: StreamCommon, settings: AlsaSettings, rate: int) -> StreamInfo:
    native = SAMPLE_FORMATS[settings.sample_format][1]
    allowed = {native, "float32", "double64"}
    if common.channel_format not in allowed:
        raise ValueError(f"sample_format {settings.sample_format} gives {native} samples (or scaled float32/double64)"
                         f"; channel_format {common.channel_format!r} is not one of {', '.join(sorted(allowed))}")
    n = settings.channels
    return StreamInfo(
        name=common.name, type=common.type, nominal_srate=float(rate), channel_count=n,
        channel_format=common.channel_format,
        channel_labels=common.channel_labels or (("mic",) if n == 1 else tuple(f"ch{i}" for i in range(n))),
        channel_units=common.channel_units, source_id=common.source_id or settings.device,
        quality=(("alsa_device", settings.device), ("period_ms", f"{settings.period_ms:g}"),
                 ("sample_format", settings.sample_format), ("timestamp_source", "sample-counter+period-arrival")),
    )


def capture_command(settings: AlsaSettings, rate: int) -> list[str]:
    """The argv of the capture program with the placeholders filled in."""
    fields = {"device": settings.device, "rate": str(rate), "channels": str(settings.channels),
              "format": settings.sample_format, "period_us": str(int(round(settings.period_ms * 1000)))}
    return fill_command(settings.command or ARECORD, fields)


class AlsaCaptureDriver(CaptureDriver):
    thread_prefix = "alsa"

    def __init__(self, common: StreamCommon, settings: AlsaSettings, context: DriverContext | None = None):
        self.rate = resolve_rate(common, settings)
        super().__init__(build_stream_info(common, settings, self.rate))
        self.name = common.name
        self.settings = settings
        self.argv = capture_command(settings, self.rate)
        find_program(self.argv)
        dtype, _, self.scale = SAMPLE_FORMATS[settings.sample_format]
        self.wire_dtype = np.dtype(dtype)
        self.frame_bytes = self.wire_dtype.itemsize * settings.channels
        self.period_frames = max(1, int(round(settings.period_ms * self.rate / 1000)))
        self.read_bytes = self.period_frames * self.frame_bytes
        self.stall_s = max(STALL_S, 10 * settings.period_ms / 1000)
        self._init_run_state()

    def _samples(self, raw: bytes, n: int) -> np.ndarray:
        data = np.frombuffer(raw, dtype=self.wire_dtype).reshape(n, self.settings.channels)
        if self.info.channel_format == SAMPLE_FORMATS[self.settings.sample_format][1]:
            return data.astype(self.info.dtype)  # native byte order, own memory
        return (data.astype(np.float64) / self.scale).astype(self.info.dtype)
