"""Audio/video devices of the in-process simulated rig, read like ALSA periods or V4L2 buffers.

Device time is the device's own sample/frame counter on its drifting clock (sample ``k`` at ``k / rate``),
host time is when the period/buffer was delivered (``time.monotonic_ns()`` right after the read returns), so
the clock layer sees the same evidence as from a real USB microphone or camera.  A skipped period/frame index
(the device dropped it, or the reader fell behind and the source overran) is recorded as a ``device_drop`` gap;
a device clock reset with ``reset`` (a ``ClockReset`` in the recording).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from synchub.agent.core.options import StreamCommon
from synchub.agent.core.settings import setting
from synchub.agent.core.stream import StreamInfo
from synchub.drivers.base import Driver, DriverContext, DriverSink

from .render import VIDEO_SHAPE

log = logging.getLogger("synchub.sim.capture")


@dataclass(frozen=True)
class SimCaptureSettings:
    device: str = setting(doc="name of the simulated capture device (mic0, cam0)")
    read_timeout_s: float = setting(1.0, min=0.01, max=60.0, doc="longest wait for one period/frame")


def build_stream_info(common: StreamCommon, settings: SimCaptureSettings, modality: str) -> StreamInfo:
    if modality == "audio":
        if common.channel_format not in ("float32", "int16"):
            raise ValueError("a simulated microphone gives float32 or int16 samples")
        return StreamInfo(name=common.name, type=common.type, nominal_srate=common.nominal_rate, channel_count=1,
                          channel_format=common.channel_format, channel_labels=common.channel_labels or ("mic",),
                          channel_units=common.channel_units or ("1",), source_id=common.source_id or settings.device,
                          quality=(("timestamp_source", "period-delivery+sample-counter"),))
    if common.channel_format != "uint8":
        raise ValueError("a simulated camera gives uint8 frames: set channel_format = \"uint8\"")
    h, w = VIDEO_SHAPE
    return StreamInfo(name=common.name, type=common.type, nominal_srate=common.nominal_rate, channel_count=h * w,
                      channel_format="uint8", source_id=common.source_id or settings.device, shape=(h, w),
                      quality=(("timestamp_source", "buffer-delivery+frame-counter"),))


class SimCaptureDriver(Driver):
    def __init__(self, common: StreamCommon, settings: SimCaptureSettings, context: DriverContext | None = None):
        rig = context.rig if context is not None else None
        if rig is None:
            raise ValueError(f"driver 'sim' reads the in-process simulated rig: add a [sim] table with a device "
                             f"named {settings.device!r}")
        self.source = rig.capture_source(settings.device)  # LookupError names the allowed devices
        super().__init__(build_stream_info(common, settings, self.source.spec.modality))
        if common.nominal_rate and abs(common.nominal_rate - self.source.rate_hz) > 1e-6 * self.source.rate_hz:
            raise ValueError(f"nominal_rate {common.nominal_rate} does not match sim device {settings.device!r} "
                             f"({self.source.rate_hz} Hz)")
        self.name = common.name
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_index: int | None = None
        self._last_seg: int | None = None
        self._last_dev = 0

    def start(self, sink: DriverSink) -> None:
        self.sink = sink
        self.source.open()
        self._thread = threading.Thread(target=self._run, name=f"sim-capture-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.source.close()

    def health(self) -> dict[str, Any]:
        h = super().health()
        h["overruns"] = self.source.overruns
        return h

    def _run(self) -> None:
        while not self._stop.is_set():
            p = self.source.read(self.settings.read_timeout_s)
            host_ns = time.monotonic_ns()
            if p is None:
                if not self.source.rig.running:
                    break
                continue
            self._deliver(p, host_ns)

    def _deliver(self, p, host_ns: int) -> None:
        n = len(p.true_ns)
        seg = int(p.segment[0])
        if self._last_seg is not None and seg != self._last_seg:
            self.stats.resets += 1
            self.sink.reset(self.name, int(p.device_ns[0]), self._last_dev, "device clock reset")
        elif self._last_index is not None and p.index != self._last_index + 1:
            missing = (p.index - self._last_index - 1) * n
            self.stats.gaps += 1
            self.stats.dropped += missing
            self.sink.gap(self.name, missing, "device_drop", self._last_dev, int(p.device_ns[0]),
                          f"period index jumped from {self._last_index} to {p.index} (device drop or overrun)")
        self._last_index, self._last_seg, self._last_dev = p.index, seg, int(p.device_ns[-1])
        data = p.data
        if self.info.type == "audio" or data.dtype == np.int16:
            data = data.astype(np.float32) / 32768.0 if self.info.channel_format == "float32" else data
        self.stats.samples += n
        self.stats.chunks += 1
        self.sink.samples(self.name, data, p.device_ns.copy(), np.full(n, host_ns, dtype=np.int64))
