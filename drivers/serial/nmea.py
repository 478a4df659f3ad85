"""NMEA 0183 from a GPS receiver (GGA, RMC, ZDA) through ``pynmea2``: a pure incremental decoder.

Every sentence's checksum is checked (``pynmea2.parse(check=True)``); a bad or missing checksum, or a sentence
pynmea2 cannot parse, is a ``BadItem`` (counted, logged; no sample is assumed lost, since an epoch is several
sentences).  Other sentence types (GSV, GSA, VTG, ...) are counted once per type as a ``Note`` and ignored.

**Epochs.**  A receiver reports one fix (an *epoch*) in several sentences that carry the same UTC time of fix.
Sentences with the same time are merged into one sample; the sample is emitted when the sentence that ended the
previous epoch arrives again (learnt, as gpsd does), or when a sentence with a new time comes.  Its host receive
time is that of the epoch's first sentence (the closest to the fix).  Epochs missing from the ``rate_hz`` grid are
a ``Lost`` item (cause ``malformed`` when bad sentences came in between, else ``device_drop``).

**Device time** is the UTC time of fix in ns since the Unix epoch.  The date comes from RMC or ZDA; before one is
seen (a receiver that sends GGA only), from ``utc_hint()`` (the host's UTC clock): the date that puts the time of
day nearest to it.  Midnight rollover is followed from the last epoch.

**PPS.**  For each valid whole-second epoch a ``DeviceEdge`` at that second: the receiver's PPS pulse started it,
and the sentences announce it afterwards.  With the PPS line as the stream's trigger (``trigger = "pps"``, a
``[[trigger]]`` with ``role = "pps"``), the clock layer pairs each PPS edge on the reference clock with the second
announced after it (``agent.sync``), which gives the GPS stream's clock model its trigger pairs and the agent's
reference -> UTC mapping its numbered seconds.

Channels (NaN where the epoch's sentences lack the field, e.g. no fix): ``CHANNELS``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass

import pynmea2

from synchub.agent.core.settings import setting

from .records import BadItem, DeviceEdge, Lost, Note, Record, RecordSettings
from .textrecords import LineSplitter

NS = 1_000_000_000
DAY_NS = 86_400 * NS
KNOT_MS = 1852.0 / 3600.0
CHANNELS = ("lat", "lon", "alt", "speed", "course", "fix_quality", "satellites", "hdop")
UNITS = ("deg", "deg", "m", "m/s", "deg", "1", "1", "1")
SENTENCES = ("GGA", "RMC", "ZDA")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True, kw_only=True)
class NmeaSettings(RecordSettings):
    time: str = setting("utc", doc="(fixed) the UTC time of fix")
    time_unit: str = setting("ns", choices=("ns",), doc="(fixed)")
    channels: tuple[str, ...] = setting(CHANNELS, doc=f"channels recorded, any of {', '.join(CHANNELS)}")
    pps_edges: bool = setting(True, doc="report each valid whole second as a device edge (for a PPS trigger)")

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = [c for c in self.channels if c not in CHANNELS]
        if bad:
            raise ValueError(f"unknown NMEA channels {bad}; allowed: {', '.join(CHANNELS)}")
        if self.time != "utc" or self.text or self.seq or self.time_bits:
            raise ValueError("nmea: time, time_bits, text and seq are fixed by the format")

    def channel_names(self) -> tuple[str, ...]:
        return self.channels


def _f(value) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except (TypeError, ValueError):
        return math.nan


class NmeaDecoder:
    """``feed(data, host_ns) -> items`` (see the module docstring)."""

    def __init__(self, rate_hz: float = 0.0, utc_hint: Callable[[], int] | None = None, pps_edges: bool = True):
        self._lines = LineSplitter(max_line=128)  # NMEA 0183 allows 82 characters
        self.period_ns = int(round(NS / rate_hz)) if rate_hz > 0 else 0
        self.utc_hint = utc_hint
        self.pps_edges = pps_edges
        self.date: dt.date | None = None
        self._epoch: dict | None = None  # {"t": ns, "host": ns, "fields": {}, "valid": bool, "last": type}
        self._ender: str | None = None
        self._last_t: int | None = None
        self._bad_since = False
        self.ignored: dict[str, int] = {}
        self.sentences = 0
        self.bad = 0

    def feed(self, data: bytes, host_ns: int = 0) -> list:
        out: list = []
        for line in self._lines.split(data):
            if isinstance(line, BadItem):
                self._bad_item(BadItem(line.reason, line.nbytes, line.detail, lost=0), out)
            else:
                self._sentence(line, host_ns, out)
        return out

    def flush(self) -> list:
        """The epoch still open (the port is closing)."""
        out: list = []
        self._close_epoch(out)
        return out

    def _bad_item(self, item: BadItem, out: list) -> None:
        self.bad += 1
        self._bad_since = True
        out.append(item)

    def _sentence(self, line: str, host_ns: int, out: list) -> None:
        if not line.startswith(("$", "!")):
            self._bad_item(BadItem("not a sentence", len(line), line[:40], lost=0), out)
            return
        try:
            msg = pynmea2.parse(line, check=True)
        except pynmea2.ChecksumError as exc:
            self._bad_item(BadItem("checksum", len(line), f"{line[:60]} ({exc.args[0] if exc.args else ''})",
                                   lost=0), out)
            return
        except Exception as exc:  # pynmea2 raises ParseError, SentenceTypeError, ValueError...; never ours to raise
            self._bad_item(BadItem("unparseable", len(line), f"{line[:60]} ({type(exc).__name__})", lost=0), out)
            return
        kind = getattr(msg, "sentence_type", "")
        if kind not in SENTENCES:
            self.ignored[kind] = self.ignored.get(kind, 0) + 1
            if self.ignored[kind] == 1:
                out.append(Note("sentence ignored", f"{kind or line[:8]} (only {', '.join(SENTENCES)} are read)"))
            return
        self.sentences += 1
        try:
            fields, valid, date, tod = self._fields(kind, msg)
        except (AttributeError, TypeError, ValueError) as exc:
            self._bad_item(BadItem("bad field", len(line), f"{line[:60]} ({exc})", lost=0), out)
            return
        if tod is None:
            self._bad_item(BadItem("no time of fix", len(line), line[:60], lost=0), out)
            return
        ep = self._epoch
        if ep is not None and ep["tod"] != tod:
            self._ender = ep["last"]
            self._close_epoch(out)
            ep = None
        if ep is None:
            ep = self._epoch = {"tod": tod, "host": host_ns, "fields": {}, "valid": False, "last": kind, "date": None}
        ep["fields"].update({k: v for k, v in fields.items() if not math.isnan(v)})
        ep["valid"] = ep["valid"] or valid
        ep["last"] = kind
        ep["date"] = date or ep["date"]
        if kind == self._ender:
            self._close_epoch(out)

    @staticmethod
    def _fields(kind: str, msg) -> tuple[dict, bool, dt.date | None, int | None]:
        ts = msg.timestamp
        tod = None if ts is None else ((ts.hour * 60 + ts.minute) * 60 + ts.second) * NS + ts.microsecond * 1000
        f: dict[str, float] = {}
        date = None
        valid = False
        if kind in ("GGA", "RMC") and msg.lat and msg.lon:
            f["lat"], f["lon"] = float(msg.latitude), float(msg.longitude)
        if kind == "GGA":
            qual = int(msg.gps_qual or 0)
            f.update(alt=_f(msg.altitude), fix_quality=float(qual), satellites=_f(msg.num_sats),
                     hdop=_f(msg.horizontal_dil))
            valid = qual > 0
        elif kind == "RMC":
            f.update(speed=_f(msg.spd_over_grnd) * KNOT_MS, course=_f(msg.true_course))
            valid = msg.status == "A"
            date = msg.datestamp
        else:  # ZDA: a timing receiver's time message (valid when sent)
            if msg.year and msg.month and msg.day:
                date = dt.date(int(msg.year), int(msg.month), int(msg.day))
            valid = True
        return f, valid, date, tod

    def _utc_ns(self, tod: int) -> int | None:
        """Time of day -> UTC ns: on the date of the latest RMC/ZDA, else near the last epoch or the host's hint
        (a day's rollover either way)."""
        if self.date is not None:
            day0 = int((dt.datetime.combine(self.date, dt.time(), dt.timezone.utc) - _EPOCH).total_seconds()) * NS
            if self._last_t is None or abs(day0 + tod - self._last_t) < DAY_NS // 2:
                return day0 + tod
            ref = self._last_t  # a GGA just past midnight, before the RMC with the new date
        elif self._last_t is not None:
            ref = self._last_t
        elif self.utc_hint is not None:
            ref = int(self.utc_hint())
        else:
            return None
        day0 = ref - ref % DAY_NS
        return min((day0 + k * DAY_NS + tod for k in (-1, 0, 1)), key=lambda t: abs(t - ref))

    def _close_epoch(self, out: list) -> None:
        ep, self._epoch = self._epoch, None
        if ep is None:
            return
        if ep["date"] is not None:
            self.date = ep["date"]
        t = self._utc_ns(ep["tod"])
        if t is None:
            out.append(Lost(1, "malformed", "an epoch before any RMC/ZDA date and no host UTC hint"))
            return
        if self._last_t is not None and self.period_ns and t > self._last_t:
            missing = round((t - self._last_t) / self.period_ns) - 1
            if missing > 0:
                cause = "malformed" if self._bad_since else "device_drop"
                out.append(Lost(missing, cause, f"{missing} epochs missing before {t / NS:.3f} s UTC"))
        self._bad_since = False
        self._last_t = t
        if self.pps_edges and ep["valid"] and t % NS == 0:
            out.append(DeviceEdge(t, ep["host"]))
        out.append(Record({"utc": t, **ep["fields"]}, host_ns=ep["host"]))
