"""The generic serial formats (``format = "csv" | "regex" | "keyvalue" | "nmea" | "frames"``) behind the serial
driver: each format's settings table, decoder and stream metadata, and the handler that turns its items into
samples (``RecordStream``).  The serial driver (``synchub.drivers.serial.port``) does the port I/O, reconnects
and host receive times, and hands each read to ``GenericFormat.feed``.  These devices are never pinged: the driver
writes nothing to them.

Config: the format's own table sits in the stream's table, e.g.::

    [[stream]]
    name = "ard0"
    type = "imu"
    driver = "serial"
    port = "/dev/ttyACM0"
    format = "csv"
    [stream.csv]
    columns = ["ms", "ax", "ay", "az"]
    time = "ms"
    time_unit = "ms"
    time_bits = 32          # Arduino millis() wraps after 49.7 days
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from synchub.agent.core.stream import StreamInfo, StreamStats

from .binframes import FrameDecoder, FrameSettings
from .harp import HarpMessageDecoder, HarpSettings
from .nmea import UNITS as NMEA_UNITS
from .nmea import NmeaDecoder, NmeaSettings
from .records import RecordSettings, RecordStream, stream_info
from .textrecords import (
    CsvDecoder,
    CsvSettings,
    KeyValueDecoder,
    KeyValueSettings,
    RegexDecoder,
    RegexSettings,
)


@dataclass(frozen=True)
class FormatSpec:
    settings: type
    decoder: Callable
    doc: str


FORMATS: dict[str, FormatSpec] = {
    "csv": FormatSpec(CsvSettings, lambda s, common: CsvDecoder(s), "comma (or other) separated values"),
    "regex": FormatSpec(RegexSettings, lambda s, common: RegexDecoder(s), "lines matched by a regular expression"),
    "keyvalue": FormatSpec(KeyValueSettings, lambda s, common: KeyValueDecoder(s), "key=value lines"),
    "nmea": FormatSpec(NmeaSettings, lambda s, common: NmeaDecoder(common.nominal_rate, time.time_ns, s.pps_edges),
                       "NMEA 0183 GPS sentences (GGA, RMC, ZDA)"),
    "frames": FormatSpec(FrameSettings, lambda s, common: FrameDecoder(s),
                         "binary frames described by a struct format (COBS or length prefix, CRC)"),
    "harp": FormatSpec(HarpSettings, lambda s, common: HarpMessageDecoder(s),
                       "a Harp device's binary messages of one register, in Harp time"),
}


def table_of(settings, fmt: str) -> RecordSettings | None:
    """The format's table from the serial settings (None when not given)."""
    return getattr(settings, fmt, None)


def check_tables(fmt: str, tables: dict[str, object]) -> RecordSettings | None:
    """Validate which format tables a serial stream has: only its own format's.  Returns that table, its defaults
    when absent and the format has none required, raising ValueError otherwise."""
    for name, table in tables.items():
        if table is not None and name != fmt:
            raise ValueError(f"a [stream.{name}] table is only for format = {name!r} (this stream has format = "
                             f"{fmt!r})")
    if fmt not in FORMATS:
        return None
    table = tables.get(fmt)
    if table is None:
        try:
            table = FORMATS[fmt].settings()
        except TypeError:
            raise ValueError(f"format {fmt!r} needs a [stream.{fmt}] table") from None
    return table


class GenericFormat:
    """One stream's decoder + converter: ``feed(data, host_ns, sink)`` per read, ``reconnected(sink)`` after a
    reconnect (the port's bytes before and after do not join), ``flush(sink)`` when the port closes."""

    def __init__(self, name: str, fmt: str, table: RecordSettings, common, info: StreamInfo,
                 stats: StreamStats | None = None):
        self.fmt = fmt
        self.table = table
        self.common = common
        self.stream = RecordStream(name, table, table.channel_names(), info.dtype or float, stats)
        self.decoder = FORMATS[fmt].decoder(table, common)

    @property
    def stats(self):
        return self.stream.stats

    def feed(self, data: bytes, host_ns: int, sink) -> None:
        items = self.decoder.feed(data, host_ns) if self.fmt == "nmea" else self.decoder.feed(data)
        self.stream.handle(items, host_ns, sink)

    def flush(self, sink) -> None:
        """The port closed: what the decoder still holds (an NMEA epoch) goes out now."""
        if hasattr(self.decoder, "flush"):
            self.stream.handle(self.decoder.flush(), 0, sink)

    def reconnected(self, sink) -> None:
        self.flush(sink)
        self.decoder = FORMATS[self.fmt].decoder(self.table, self.common)
        self.stream.reconnected = True


def build_info(common, fmt: str, table: RecordSettings, port: str) -> StreamInfo:
    info = stream_info(common, table, table.channel_names(), fmt, port)
    if fmt == "nmea" and not common.channel_units:
        units = dict(zip(("lat", "lon", "alt", "speed", "course", "fix_quality", "satellites", "hdop"),
                         NMEA_UNITS, strict=True))
        info = StreamInfo.from_dict({**info.to_dict(), "channel_units": [units[c] for c in table.channel_names()],
                                     "quality": {**info.quality_dict(), "device_clock": "utc"}})
    if fmt == "harp":  # Harp devices share the Harp clock: a harp-clock trigger line numbers its seconds
        info = info.with_quality(device_clock="harp")
    return info
