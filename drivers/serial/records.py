"""Named records -> samples: what the generic serial formats (CSV, regex, key=value, NMEA, binary frames) share.

A format's pure decoder turns bytes into items (``Record``, ``BadItem``, ``DeviceEdge``, ``Note``); ``RecordStream``
(pure apart from calling the ``DriverSink`` it is handed) turns them into samples with raw device and host receive
times, gaps and problems:

* **device time**: the record's ``time`` field in ``time_unit`` (``s``, ``ms``, ``us``, ``ns``, or ``ticks`` at
  ``tick_hz``); a counter that wraps (``time_bits`` > 0, integers only) and clock resets go through the one
  unwrapper (``synchub.agent.clock.unwrap``); a reset is reported with ``reset`` (a ``ClockReset``).  Text in s/ms/us is converted
  exactly (``Decimal``), never through a float.  With no ``time`` field a sample's device time is its host receive
  time and the stream's metadata says so (``device_time = "none: host receive time"``).
* **losses**: with a ``seq`` field, a counter skip is a gap of that many samples (cause ``malformed`` when bad input
  came in between, else ``device_drop``); without one, an unparseable line is a gap of one sample (cause
  ``malformed``): the line most likely was a sample.  Every bad item is counted and reported as a problem.
* **values**: the ``channels`` fields as numbers, or the ``text`` field as a marker string.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from synchub.agent.clock.unwrap import Unwrapper
from synchub.agent.core.evidence import TriggerEdge
from synchub.agent.core.settings import setting
from synchub.agent.core.stream import StreamInfo, StreamStats

log = logging.getLogger("synchub.serial")

NS = 1_000_000_000
TIME_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9, "ticks": 0.0}
_EXP = {"s": 9, "ms": 6, "us": 3, "ns": 0}
NO_DEVICE_TIME = "none: host receive time"


# ---------------------------------------------------------------------------------------------- items
@dataclass(frozen=True)
class Record:
    """One parsed line or frame: field name -> value (text as sent, or a number for binary fields).
    ``host_ns`` > 0 overrides the read's host receive time (NMEA: the epoch's first sentence)."""

    fields: dict[str, Any]
    host_ns: int = 0


@dataclass(frozen=True)
class BadItem:
    """Bytes that could not be parsed.  ``lost``: samples this most likely was (1 for a line, 0 for junk bytes)."""

    reason: str
    nbytes: int
    detail: str = ""
    lost: int = 1


@dataclass(frozen=True)
class DeviceEdge:
    """An instant the device marks on its own clock (NMEA: the UTC second its PPS pulse started), raw units."""

    t: Any
    host_ns: int = 0


@dataclass(frozen=True)
class Note:
    """Something worth counting that lost nothing (a header line, a sentence type not recorded)."""

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Lost:
    """Samples the decoder knows were lost (NMEA: epochs missing from the time grid)."""

    count: int
    cause: str
    detail: str = ""


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True, kw_only=True)
class RecordSettings:
    """Keys every generic format has (each format's table adds its own)."""

    time: str = setting("", doc="field with the device's time ('': none; samples then carry the host receive time "
                                "only, and the stream's metadata says so)")
    time_unit: str = setting("ms", choices=tuple(TIME_UNITS), doc="unit of the time field (ticks: at tick_hz)")
    tick_hz: float = setting(0.0, min=0.0, doc="ticks per second when time_unit = 'ticks'")
    time_bits: int = setting(0, min=0, max=64, doc="width of the device's time counter, which wraps (0: it never "
                                                   "wraps); needs integer times")
    seq: str = setting("", doc="field with a sample counter: skips are recorded as gaps ('': none)")
    seq_bits: int = setting(16, min=1, max=64, doc="width of the sample counter")
    channels: tuple[str, ...] = setting((), doc="fields recorded as channels, in order (empty: the format's own "
                                                "list)")
    text: str = setting("", doc="field with text: the stream is a marker stream of it (channel_format = "
                                "\"string\")")

    def __post_init__(self) -> None:
        if self.time_unit == "ticks" and self.tick_hz <= 0:
            raise ValueError("time_unit = 'ticks' needs tick_hz > 0")
        if self.tick_hz > 0 and self.time_unit != "ticks":
            raise ValueError("tick_hz is only for time_unit = 'ticks'")
        if self.text and self.channels:
            raise ValueError("a text (marker) stream has no numeric channels: give text or channels, not both")
        names = [n for n in (self.time, self.seq, self.text) if n]
        if len(set(names)) != len(names) or set(names) & set(self.channels):
            raise ValueError("time, seq, text and channels must name different fields")

    @property
    def ticks_per_s(self) -> float:
        return self.tick_hz if self.time_unit == "ticks" else TIME_UNITS[self.time_unit]


def stream_info(common, settings: RecordSettings, channels: tuple[str, ...], wire: str,
                port: str = "") -> StreamInfo:
    """The stream's metadata: numeric channels named after their fields, or one text channel."""
    quality = [("wire", wire), ("device_time", f"{settings.time} ({settings.time_unit})" if settings.time
                                else NO_DEVICE_TIME)]
    if settings.text:
        if common.channel_format != "string":
            raise ValueError(f"format {wire!r} with text = {settings.text!r} gives text samples: set "
                             "channel_format = \"string\"")
        return StreamInfo(name=common.name, type=common.type, nominal_srate=common.nominal_rate, channel_count=1,
                          channel_format="string", channel_labels=(settings.text,),
                          source_id=common.source_id or port, quality=tuple(quality))
    if not channels:
        raise ValueError(f"format {wire!r}: no channels (name them in channels, or give text)")
    if common.channel_format not in ("float32", "double64"):
        raise ValueError(f"format {wire!r} gives numbers: channel_format must be float32 or double64")
    if common.channel_labels and len(common.channel_labels) != len(channels):
        raise ValueError(f"channel_labels has {len(common.channel_labels)} entries, the format gives "
                         f"{len(channels)} channels ({', '.join(channels)})")
    return StreamInfo(name=common.name, type=common.type, nominal_srate=common.nominal_rate,
                      channel_count=len(channels), channel_format=common.channel_format,
                      channel_labels=common.channel_labels or channels, channel_units=common.channel_units,
                      source_id=common.source_id or port, quality=tuple(quality))


def time_to_ns(value: Any, unit: str, tick_hz: float = 0.0) -> int:
    """A device time in ``unit`` (text or number) as int ns; ``ValueError`` when it is not a finite number."""
    if isinstance(value, (int, np.integer)) and unit != "ticks":
        return int(value) * 10 ** _EXP[unit]
    try:
        d = Decimal(value.strip() if isinstance(value, str) else repr(float(value)))
    except (InvalidOperation, ValueError, TypeError):
        raise ValueError(f"not a number: {str(value)[:20]!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite time: {value!r}")
    if unit == "ticks":
        return int((d * NS / Decimal(repr(tick_hz))).to_integral_value())
    return int(d.scaleb(_EXP[unit]).to_integral_value())


def _int(value: Any) -> int:
    if isinstance(value, (int, np.integer)):
        return int(value)
    text = str(value).strip()
    if not text.lstrip("-").isdigit():
        raise ValueError(f"not an integer: {text[:20]!r}")
    return int(text)


# ---------------------------------------------------------------------------------------------- the converter
@dataclass
class _Batch:
    values: list = field(default_factory=list)
    raw_t: list = field(default_factory=list)
    host: list = field(default_factory=list)


class RecordStream:
    """Items of one stream -> ``DriverSink`` calls (see the module docstring)."""

    def __init__(self, name: str, settings: RecordSettings, channels: tuple[str, ...], dtype=np.float32,
                 stats: StreamStats | None = None):
        self.name = name
        self.s = settings
        self.channels = channels
        self.dtype = dtype
        self.stats = StreamStats() if stats is None else stats
        if settings.time and settings.time_bits:
            self.unwrapper = Unwrapper(settings.time_bits, settings.ticks_per_s)
        else:  # times already in ns: 64 bits never wrap; resets (time going back or leaping ahead) still found
            self.unwrapper = Unwrapper(64, 1e9)
        self._last_seq: int | None = None
        self._last_dev: int | None = None
        self._bad_since = False
        self.reconnected = False  # set by the driver after a reconnect: the next counter gap is a disconnect

    # ---- per item
    def _device_raw(self, rec: Record, host_ns: int) -> int:
        s = self.s
        if not s.time:
            return host_ns
        if s.time not in rec.fields:
            raise ValueError(f"no {s.time!r} field")
        value = rec.fields[s.time]
        if s.time_bits:
            raw = _int(value)
            if raw < 0:
                raise ValueError(f"negative counter {raw}")
            return raw
        t = time_to_ns(value, s.time_unit, s.tick_hz)
        if t < 0:
            raise ValueError(f"negative time {t} ns")
        return t

    def _sample(self, rec: Record):
        if self.s.text:
            if self.s.text not in rec.fields:
                raise ValueError(f"no {self.s.text!r} field")
            return str(rec.fields[self.s.text])
        out = []
        for ch in self.channels:
            v = rec.fields.get(ch)
            if v is None or v == "":
                out.append(math.nan)  # a field the line left empty (NMEA without a fix): NaN, not a lost sample
                continue
            try:
                out.append(float(v))
            except (TypeError, ValueError):
                raise ValueError(f"{ch}: not a number: {str(v)[:20]!r}") from None
        return out

    def handle(self, items: list, host_ns: int, sink) -> None:
        batch = _Batch()
        for item in items:
            if isinstance(item, Record):
                h = item.host_ns or host_ns
                try:
                    raw = self._device_raw(item, h)
                    value = self._sample(item)
                    seq = _int(item.fields[self.s.seq]) if self.s.seq else None
                except KeyError as exc:
                    self._flush(batch, sink)
                    self._bad(BadItem("bad field", 0, f"no {exc} field"), sink)
                    continue
                except ValueError as exc:
                    self._flush(batch, sink)
                    self._bad(BadItem("bad field", 0, str(exc)), sink)
                    continue
                if seq is not None:
                    self._flush(batch, sink)
                    self._check_seq(seq, sink)
                batch.values.append(value)
                batch.raw_t.append(raw)
                batch.host.append(h)
            else:
                self._flush(batch, sink)
                if isinstance(item, BadItem):
                    self._bad(item, sink)
                elif isinstance(item, DeviceEdge):
                    self._edge(item, host_ns, sink)
                elif isinstance(item, Lost):
                    self.stats.gaps += 1
                    self.stats.dropped += item.count
                    sink.gap(self.name, item.count, item.cause, int(self._last_dev or 0), 0, item.detail)
                elif isinstance(item, Note):
                    self.stats.count(item.reason)
                    sink.problem(self.name, item.reason, item.detail)
        self._flush(batch, sink)

    def _bad(self, item: BadItem, sink) -> None:
        self.stats.malformed += 1
        self.stats.count(item.reason)
        size = f"{item.nbytes} bytes " if item.nbytes else ""
        sink.problem(self.name, "malformed", f"{item.reason}: {size}{item.detail}".strip())
        if self.s.seq:
            self._bad_since = True  # the counter will say how many samples it was
        else:
            self.stats.gaps += 1
            self.stats.dropped += item.lost
            sink.gap(self.name, item.lost, "malformed", int(self._last_dev or 0), 0,
                     f"{item.reason} {item.detail}".strip())

    def _check_seq(self, seq: int, sink) -> None:
        last, self._last_seq = self._last_seq, seq
        bits = self.s.seq_bits
        if last is None:
            self._bad_since = self.reconnected = False
            return
        missing = (seq - last - 1) % (1 << bits)
        if missing >= 1 << (bits - 1):  # far back: the device restarted its counter
            self.stats.count("seq_restart")
            sink.problem(self.name, "seq_restart", f"sample counter went from {last} to {seq}")
        elif missing:
            cause = "disconnect" if self.reconnected else "malformed" if self._bad_since else "device_drop"
            self.stats.gaps += 1
            self.stats.dropped += missing
            sink.gap(self.name, missing, cause, int(self._last_dev or 0), 0,
                     f"sample counter jumped from {last} to {seq}")
        self._bad_since = self.reconnected = False

    def _edge(self, item: DeviceEdge, host_ns: int, sink) -> None:
        try:
            raw = time_to_ns(item.t, self.s.time_unit, self.s.tick_hz) if not self.s.time_bits else _int(item.t)
        except ValueError:
            return
        dev = self.unwrapper.peek(raw) if self.s.time_bits else raw
        sink.evidence(TriggerEdge(source=self.name, t_ns=int(dev), clock="device", polarity=1,
                                  host_ns=item.host_ns or host_ns))

    def _flush(self, batch: _Batch, sink) -> None:
        n = len(batch.raw_t)
        if not n:
            return
        host = np.asarray(batch.host, dtype=np.int64)
        un = self.unwrapper.unwrap(np.asarray(batch.raw_t, dtype=np.uint64 if self.s.time_bits == 64 else np.int64),
                                   host)
        dev = un.device_ns
        start = 0
        for i in un.resets:
            self._emit(batch.values, dev, host, start, i, sink)
            start = i
            self.stats.resets += 1
            before = int(dev[i - 1]) if i > 0 else self._last_dev  # the batch's own sample before, else the last
            log.warning("%s: device clock reset (device time went from %s to %d ns)", self.name, before, int(dev[i]))
            sink.reset(self.name, int(dev[i]), int(before or 0), "device time jumped: clock reset")
            self._last_dev = None
        self._emit(batch.values, dev, host, start, n, sink)
        self._last_dev = int(dev[-1])
        batch.values.clear()
        batch.raw_t.clear()
        batch.host.clear()

    def _emit(self, values: list, dev: np.ndarray, host: np.ndarray, a: int, b: int, sink) -> None:
        if b <= a:
            return
        data: Any = list(values[a:b]) if self.s.text else np.asarray(values[a:b], dtype=self.dtype)
        self.stats.samples += b - a
        self.stats.chunks += 1
        sink.samples(self.name, data, dev[a:b].copy(), host[a:b].copy())
