"""The serial protocol, pure: bytes in (with the host time they arrived), samples, gaps, clock resets and evidence
out to a ``DriverSink`` (pyserial's ``serial.threaded.Protocol`` split: ``port.SerialStreamDriver`` does the I/O).

``SerialProtocol.data_received`` parses with the format's incremental decoder (``frames``: imu-bin, ``lines``:
tlm-nmea, log-text), unwraps the device's tick counter (``synchub.agent.clock.unwrap``) and reports:

* samples (one ``samples`` call per read), with raw device and host receive times;
* device-counter gaps as ``gap(cause="device_drop")`` (``"malformed"`` when unparseable bytes came in between,
  ``"disconnect"`` across a reconnect), counter resets with ``reset`` (a ``ClockReset`` in the recording);
* malformed input as ``problem(stream, "malformed", detail)``, counted in ``stats.malformed``;
* trigger edges the device stamped on its own input as ``TriggerEdge(clock="device")``;
* answers to the probes ``ping`` made (a pong with the device tick at receipt) as ``Probe`` evidence.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from synchub.agent.clock.unwrap import Unwrapper
from synchub.agent.core.evidence import Probe, TriggerEdge
from synchub.agent.core.options import StreamCommon
from synchub.agent.core.settings import setting
from synchub.agent.core.stream import StreamInfo, StreamStats
from synchub.drivers.base import DriverSink

from . import formats as G
from . import frames as F
from . import lines as L
from .binframes import FrameSettings
from .harp import HarpSettings
from .nmea import NmeaSettings
from .textrecords import CsvSettings, KeyValueSettings, RegexSettings

log = logging.getLogger("synchub.serial")

FORMATS = ("imu-bin", "tlm-nmea", "log-text")


def decoder_for(fmt: str, channels: int = 0):
    if fmt == "imu-bin":
        return F.ImuDecoder()
    if fmt == "tlm-nmea":
        return L.TlmDecoder(channels)
    if fmt == "log-text":
        return L.LogDecoder()
    raise ValueError(f"unknown wire format {fmt!r}; allowed: {', '.join(FORMATS)}")


def encode_ping(fmt: str, token: int) -> bytes:
    """The host's ping for a device speaking ``fmt``."""
    return F.encode_bin_ping(token) if fmt == "imu-bin" else L.encode_text_ping(token)


DEFAULT_TICK_HZ = {"imu-bin": 1e6, "tlm-nmea": 1000.0, "log-text": 1e6}
DEFAULT_CHANNELS = {
    "imu-bin": (6, "float32", ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z"),
                ("m/s^2",) * 3 + ("rad/s",) * 3),
    "tlm-nmea": (5, "float32", ("temperature", "speed", "light", "sound_level", "accel_rms"),
                 ("degC", "m/s", "lux", "1", "m/s^2")),
    "log-text": (1, "string", ("message",), ()),
}


@dataclass(frozen=True)
class SerialSettings:
    port: str = setting(doc="serial device (/dev/ttyUSB0, /dev/serial/by-id/...), a pyserial URL, or sim:NAME")
    format: str = setting(choices=FORMATS + tuple(G.FORMATS), doc="wire format: synchub's own (imu-bin, tlm-nmea, "
                          "log-text) or a generic one, set up by its table (csv, regex, keyvalue, nmea, frames, harp)")
    baudrate: int = setting(115200, min=50, doc="baud rate")
    tick_hz: float = setting(0.0, min=0.0, doc="device tick counter rate (0: the format's: imu-bin and log-text "
                                                "1 MHz, tlm-nmea 1 kHz)")
    counter_bits: int = setting(32, min=8, max=64, doc="width of the device's tick counter (it wraps)")
    probe_interval_s: float = setting(1.0, min=0.0, doc="seconds between round-trip probes (0: none; the "
                                                                 "driver then never writes to the device)")
    reconnect_s: float = setting(1.0, min=0.05, max=60.0, doc="retry period when the port is missing")
    read_size: int = setting(4096, min=1, max=1 << 20, doc="largest read")
    text_level: bool = setting(False, doc="log-text: prefix each text sample with its level")
    csv: CsvSettings | None = setting(None, doc="format = \"csv\": [stream.csv]")
    regex: RegexSettings | None = setting(None, doc="format = \"regex\": [stream.regex]")
    keyvalue: KeyValueSettings | None = setting(None, doc="format = \"keyvalue\": [stream.keyvalue]")
    nmea: NmeaSettings | None = setting(None, doc="format = \"nmea\": [stream.nmea]")
    frames: FrameSettings | None = setting(None, doc="format = \"frames\": [stream.frames]")
    harp: HarpSettings | None = setting(None, doc="format = \"harp\": [stream.harp]")

    def __post_init__(self) -> None:
        G.check_tables(self.format, {k: getattr(self, k) for k in G.FORMATS})

    @property
    def generic(self):
        """The generic format's table (its defaults when the table is absent), or None for synchub's formats."""
        return G.check_tables(self.format, {k: getattr(self, k) for k in G.FORMATS})

    @property
    def ticks_per_s(self) -> float:
        return self.tick_hz or DEFAULT_TICK_HZ.get(self.format, 1e9)


def build_stream_info(common: StreamCommon, settings: SerialSettings) -> StreamInfo:
    if settings.generic is not None:
        return G.build_info(common, settings.format, settings.generic, settings.port)
    n, fmt, labels, units = DEFAULT_CHANNELS[settings.format]
    if settings.format != "log-text" and common.channel_labels:
        n = len(common.channel_labels)
    if settings.format == "log-text" and common.channel_format != "string":
        raise ValueError("format 'log-text' gives text samples: set channel_format = \"string\"")
    if settings.format != "log-text" and common.channel_format not in ("float32", "double64"):
        raise ValueError(f"format {settings.format!r} gives numbers: channel_format must be float32 or double64")
    return StreamInfo(
        name=common.name,
        type=common.type,
        nominal_srate=common.nominal_rate,
        channel_count=n,
        channel_format=common.channel_format if settings.format != "log-text" else fmt,
        channel_labels=common.channel_labels or (labels if len(labels) == n else ()),
        channel_units=common.channel_units or (units if len(units) == n else ()),
        source_id=common.source_id or settings.port,
        quality=(("timestamp_source", "serial-arrival+device-ticks"), ("wire", settings.format)),
    )


class SerialProtocol:
    """See the module docstring.  ``stats`` is the driver's (counts samples, gaps, resets, malformed input)."""

    def __init__(self, info: StreamInfo, common: StreamCommon, settings: SerialSettings, sink: DriverSink,
                 stats: StreamStats):
        self.info = info
        self.name = common.name
        self.common = common
        self.settings = settings
        self.sink = sink
        self.stats = stats
        self.unwrapper = Unwrapper(settings.counter_bits, settings.ticks_per_s)
        table = settings.generic
        # a generic device (csv, nmea, frames, ...) is parsed by its format and never written to
        self.generic = G.GenericFormat(self.name, settings.format, table, common, info, stats) if table else None
        self.decoder = decoder_for(settings.format, info.channel_count) if table is None else None
        self._token = random.getrandbits(31)
        self._pending: dict[int, int] = {}  # probe token -> host send time
        self._last_counter: int | None = None
        self._last_dev: int | None = None
        self._last_rise_dev: int | None = None
        self._bad_since_sample = False
        self._reconnected = False
        self.probes_sent = 0
        self.probes_answered = 0
        self.edges = 0

    def connection_made(self, reconnected: bool) -> None:
        """A port was opened: a fresh decoder (bytes from before are gone); after a reconnect the next counter jump
        is recorded as a ``disconnect`` gap."""
        if self.generic is not None:
            if reconnected:
                self.generic.reconnected(self.sink)
            return
        self.decoder = decoder_for(self.settings.format, self.info.channel_count)
        if reconnected:
            self._reconnected = True

    def data_received(self, data: bytes, host_ns: int) -> None:
        if self.generic is not None:
            self.generic.feed(data, host_ns, self.sink)
        else:
            self._handle(self.decoder.feed(data), host_ns)

    def connection_lost(self) -> None:
        """The port closed: what a generic decoder still holds (an NMEA epoch) goes out now."""
        if self.generic is not None and self.sink is not None:
            self.generic.flush(self.sink)

    @property
    def writes(self) -> bool:
        """Whether the driver may write to the device (probes): synchub's own formats only."""
        return self.generic is None

    def ping(self, send_ns: int) -> bytes:
        """A round-trip probe to send now (the host's clock reads ``send_ns``)."""
        self._token = (self._token + 1) & 0x7FFFFFFF
        self.probes_sent += 1
        self._pending[self._token] = send_ns
        if len(self._pending) > 64:  # unanswered probes: forget the oldest
            self._pending.pop(next(iter(self._pending)))
        return encode_ping(self.settings.format, self._token)

    def _handle(self, items: list, host_ns: int) -> None:
        fmt = self.settings.format
        ticks: list[int] = []
        counters: list[int] = []
        values: list = []
        for item in items:
            if isinstance(item, (F.ImuSample, L.TlmSample)):
                ticks.append(item.tick)
                counters.append(item.counter if isinstance(item, F.ImuSample) else item.seq)
                values.append(item.raw if isinstance(item, F.ImuSample) else item.values)
            elif isinstance(item, L.LogLine):
                ticks.append(item.tick)
                values.append(f"{item.level} {item.message}" if self.settings.text_level else item.message)
            elif isinstance(item, F.Malformed):
                self._flush(fmt, ticks, counters, values, host_ns)
                ticks, counters, values = [], [], []
                self.stats.malformed += 1
                self._bad_since_sample = True
                self.sink.problem(self.name, "malformed", f"{item.reason}: {item.nbytes} bytes {item.detail}".strip())
            else:
                self._flush(fmt, ticks, counters, values, host_ns)
                ticks, counters, values = [], [], []
                if isinstance(item, F.EdgeFrame):
                    self._edge(item, host_ns)
                elif isinstance(item, F.Pong):
                    self._pong(item, host_ns)
                else:  # a Ping from the device side: not expected on this link
                    self.sink.problem(self.name, "unexpected frame", type(item).__name__)
        self._flush(fmt, ticks, counters, values, host_ns)

    def _flush(self, fmt: str, ticks: list, counters: list, values: list, host_ns: int) -> None:
        if not ticks:
            return
        n = len(ticks)
        host = np.full(n, host_ns, dtype=np.int64)
        un = self.unwrapper.unwrap(np.asarray(ticks, dtype=np.int64), host)
        dev = un.device_ns
        resets = set(un.resets)
        start = 0
        for i in range(n):
            if i in resets:
                self._emit(fmt, values, dev, host, counters, start, i)
                start = i
                self.stats.resets += 1
                log.warning("%s: device clock reset (device time jumped from %s ns to %d ns; counter now %d ticks)",
                            self.name, self._last_dev, int(dev[i]), ticks[i])
                self.sink.reset(self.name, int(dev[i]), int(self._last_dev or 0), "device tick counter jumped")
                self._last_counter = None
                self._last_dev = None
            elif counters:
                self._check_counter(counters[i], int(dev[i]), fmt)
            if counters:
                self._last_counter = counters[i]
            self._last_dev = int(dev[i])
        self._emit(fmt, values, dev, host, counters, start, n)

    def _check_counter(self, counter: int, dev_ns: int, fmt: str) -> None:
        if self._last_counter is None:
            self._reconnected = False
            return
        missing = (counter - self._last_counter - 1) & 0xFFFF
        rate = self.common.nominal_rate
        if rate > 0 and self._last_dev is not None:  # a 16-bit counter wraps; device time says how often
            est = round((dev_ns - self._last_dev) * rate / 1e9) - 1
            if est > 0x8000:
                missing += 0x10000 * max(0, round((est - missing) / 0x10000))
        if missing == 0:
            self._bad_since_sample = False
            self._reconnected = False
            return
        cause = "disconnect" if self._reconnected else "malformed" if self._bad_since_sample else "device_drop"
        self.stats.gaps += 1
        self.stats.dropped += missing
        self.sink.gap(self.name, missing, cause, int(self._last_dev or 0), dev_ns,
                      f"device counter jumped from {self._last_counter} to {counter}")
        self._bad_since_sample = False
        self._reconnected = False

    def _emit(self, fmt: str, values: list, dev: np.ndarray, host: np.ndarray, counters, a: int, b: int) -> None:
        if b <= a:
            return
        if fmt == "log-text":
            data: Any = list(values[a:b])
        elif fmt == "imu-bin":
            data = (np.asarray(values[a:b], dtype=np.float64) * F.IMU_SCALE).astype(self.info.dtype)
        else:
            data = np.asarray(values[a:b], dtype=self.info.dtype)
        self.stats.samples += b - a
        self.stats.chunks += 1
        self.sink.samples(self.name, data, dev[a:b].copy(), host[a:b].copy())

    def _edge(self, item: F.EdgeFrame, host_ns: int) -> None:
        dev = self.unwrapper.peek(item.tick)
        width = 0
        if item.level:
            self._last_rise_dev = dev
        elif self._last_rise_dev is not None and 0 < dev - self._last_rise_dev < 10 * 10**9:
            width = dev - self._last_rise_dev
        self.edges += 1
        self.sink.evidence(TriggerEdge(source=self.name, t_ns=dev, clock="device", polarity=1 if item.level else -1,
                                       width_ns=width, seq=item.counter, host_ns=host_ns))

    def _pong(self, item: F.Pong, host_ns: int) -> None:
        send_ns = self._pending.pop(item.token, None)
        if send_ns is None:
            self.sink.problem(self.name, "unknown pong", f"token {item.token}")
            return
        self.probes_answered += 1
        self.sink.evidence(Probe(stream=self.name, host_send_ns=send_ns, device_ns=self.unwrapper.peek(item.tick),
                                 host_recv_ns=host_ns))
