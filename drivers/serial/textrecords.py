"""Generic text line formats: CSV, regex with named groups, key=value.  Pure incremental decoders.

Each decoder takes bytes in any split (``feed(data) -> items``), never raises on bad input and resynchronizes at
the next line end: a line is ended by ``\\n``, ``\\r\\n`` or a lone ``\\r``; blank lines are skipped; a line that
is not ASCII/UTF-8 text, too long, or does not fit the format comes back as a ``BadItem`` (counted by
``RecordStream``).  Good lines come back as ``Record`` items (field name -> text), which ``RecordStream`` turns into
samples (``synchub.drivers.serial.records``: device time, counters, channels, text).

``csv``
    ``columns`` names the fields in order, or (empty) the device's header line does: the first line whose fields
    are all non-numeric, and again whenever the device prints it (a reboot); data lines before any header are
    bad.  ``delimiter`` (default ``,``); fields may be quoted (``csv`` module rules); ``#`` comment lines skipped.
``regex``
    ``pattern``: a Python regular expression with named groups that must match the whole line; the group named by
    ``time`` (default ``t``, when the pattern has one) is the device time, the others are channels in order (or
    ``text``).
``keyvalue``
    ``t=123 ax=0.1 ay=-2`` or ``t:123, ax:0.1; ay:-2``: pairs split by blanks, commas or semicolons, key and value
    by ``=`` or ``:``.  ``channels`` names the keys recorded; a key missing from a line gives NaN (counted), a key
    not listed is counted once and ignored.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

from synchub.agent.core.settings import setting

from .records import BadItem, Note, Record, RecordSettings

MAX_LINE = 1024


class LineSplitter:
    """Bytes -> decoded text lines (``str``) or ``BadItem``; ends at ``\\n``, ``\\r\\n`` or ``\\r``."""

    def __init__(self, max_line: int = MAX_LINE):
        self._buf = bytearray()
        self._overlong = False
        self.max_line = max_line

    def split(self, data: bytes) -> list:
        self._buf += data
        out: list = []
        buf = self._buf
        start = 0
        n = len(buf)
        i = 0
        while i < n:
            c = buf[i]
            if c == 10 or c == 13:
                self._line(bytes(buf[start:i]), out)
                start = i + 1
            i += 1
        del buf[:start]
        if len(buf) > self.max_line:
            out.append(BadItem("line too long", len(buf), lost=1))
            buf.clear()
            self._overlong = True
        return out

    def _line(self, raw: bytes, out: list) -> None:
        if self._overlong:  # the tail of an over-long line: already counted
            self._overlong = False
            return
        if not raw.strip():
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            out.append(BadItem("not text", len(raw), raw[:40].decode("ascii", "replace")))
            return
        if any(ord(ch) < 32 and ch != "\t" for ch in text):
            out.append(BadItem("control characters", len(raw), text[:40].encode("unicode_escape").decode()))
            return
        out.append(text.strip())


class _LineFormat:
    def __init__(self) -> None:
        self._lines = LineSplitter()

    def feed(self, data: bytes) -> list:
        out = []
        for line in self._lines.split(data):
            if isinstance(line, BadItem):
                out.append(line)
            else:
                out.extend(self._parse(line))
        return out

    def _parse(self, line: str) -> list:  # pragma: no cover - abstract
        raise NotImplementedError


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- csv
@dataclass(frozen=True, kw_only=True)
class CsvSettings(RecordSettings):
    columns: tuple[str, ...] = setting((), doc="names of the columns in order (empty: read the device's header "
                                               "line; then channels must name the channel columns)")
    delimiter: str = setting(",", doc="column delimiter (one character; \"\\t\" for tabs)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.delimiter) != 1 or self.delimiter in "\r\n\"":
            raise ValueError(f"delimiter must be one character other than a quote or line end, got {self.delimiter!r}")
        if len(set(self.columns)) != len(self.columns):
            raise ValueError("columns has duplicate names")
        named = [n for n in (self.time, self.seq, self.text, *self.channels) if n]
        if self.columns:
            missing = [n for n in named if n not in self.columns]
            if missing:
                raise ValueError(f"{', '.join(map(repr, missing))} not in columns ({', '.join(self.columns)})")
        elif not self.channels and not self.text:
            raise ValueError("with a header line (no columns), name the channel columns in channels (or give "
                             "text): the stream's channels must be known before the device sends its header")

    def channel_names(self) -> tuple[str, ...]:
        if self.text:
            return ()
        if self.channels:
            return self.channels
        return tuple(c for c in self.columns if c not in (self.time, self.seq))


class CsvDecoder(_LineFormat):
    def __init__(self, settings: CsvSettings):
        super().__init__()
        self.s = settings
        self.columns: tuple[str, ...] = settings.columns
        self.header = not settings.columns
        self._needed = {n for n in (settings.time, settings.seq, settings.text, *settings.channel_names()) if n}

    def _parse(self, line: str) -> list:
        if line.startswith("#"):
            return []
        try:
            fields = next(csv.reader([line], delimiter=self.s.delimiter, skipinitialspace=True))
        except csv.Error as exc:
            return [BadItem("bad csv", len(line), f"{exc}: {line[:40]}")]
        fields = [f.strip() for f in fields]
        if self.header and fields and not any(_is_number(f) for f in fields if f):
            cols = tuple(fields)
            missing = sorted(self._needed - set(cols))
            if missing:
                return [BadItem("header lacks columns", len(line), f"{', '.join(missing)} not in {line[:60]}", lost=0)]
            changed = bool(self.columns) and cols != self.columns
            self.columns = cols
            return [Note("header changed" if changed else "header", line[:80])]
        if not self.columns:
            return [BadItem("no header yet", len(line), line[:40])]
        if len(fields) != len(self.columns):
            return [BadItem(f"expected {len(self.columns)} fields, got {len(fields)}", len(line), line[:40])]
        return [Record(dict(zip(self.columns, fields, strict=True)))]


# ---------------------------------------------------------------------------------------------- regex
@dataclass(frozen=True, kw_only=True)
class RegexSettings(RecordSettings):
    pattern: str = setting(doc="regular expression (Python syntax) with named groups, matching the whole line")
    time: str = setting("t", doc="group with the device's time (when the pattern has it; else none)")

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            rx = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        groups = tuple(rx.groupindex)
        if not groups:
            raise ValueError("pattern has no named groups: write (?P<name>...) for each field")
        if self.time != "t" and self.time and self.time not in groups:
            raise ValueError(f"pattern has no group {self.time!r}")
        for what, n in (("seq", self.seq), ("text", self.text), *(("channels", c) for c in self.channels)):
            if n and n not in groups:
                raise ValueError(f"{what}: pattern has no group {n!r}; groups: {', '.join(groups)}")
        if self.time == "t" and "t" not in groups:
            object.__setattr__(self, "time", "")  # the default group is absent: no device time

    def channel_names(self) -> tuple[str, ...]:
        if self.text:
            return ()
        if self.channels:
            return self.channels
        return tuple(g for g in re.compile(self.pattern).groupindex if g not in (self.time, self.seq))


class RegexDecoder(_LineFormat):
    def __init__(self, settings: RegexSettings):
        super().__init__()
        self.rx = re.compile(settings.pattern)

    def _parse(self, line: str) -> list:
        m = self.rx.fullmatch(line)
        if m is None:
            return [BadItem("no match", len(line), line[:40])]
        return [Record({k: v for k, v in m.groupdict().items() if v is not None})]


# ---------------------------------------------------------------------------------------------- key=value
@dataclass(frozen=True, kw_only=True)
class KeyValueSettings(RecordSettings):
    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.channels and not self.text:
            raise ValueError("name the keys recorded as channels in channels (or give text)")

    def channel_names(self) -> tuple[str, ...]:
        return () if self.text else self.channels


_PAIR_SEP = re.compile(r"[\s,;]+")
_KV = re.compile(r"([^=:\s]+)\s*[=:]\s*(.*)")


class KeyValueDecoder(_LineFormat):
    def __init__(self, settings: KeyValueSettings):
        super().__init__()
        self.s = settings
        self.wanted = {n for n in (settings.time, settings.seq, settings.text, *settings.channels) if n}
        self.unknown: set[str] = set()

    def _parse(self, line: str) -> list:
        if self.s.text:  # the text value may hold blanks: only the other keys are split off the front
            return self._parse_text(line)
        fields: dict[str, str] = {}
        out: list = []
        for part in _PAIR_SEP.split(line.replace(" = ", "=").replace(" : ", ":")):
            if not part:
                continue
            m = _KV.fullmatch(part)
            if m is None:
                return [BadItem("not key=value", len(line), line[:40])]
            fields[m.group(1)] = m.group(2)
        for key in fields.keys() - self.wanted - self.unknown:
            self.unknown.add(key)
            out.append(Note("unknown key", f"{key!r} ignored (not in channels)"))
        missing = [k for k in self.s.channels if k not in fields]
        if missing:
            out.append(Note("missing key", f"{', '.join(missing)} (recorded as NaN)"))
        if not fields.keys() & self.wanted:
            return [BadItem("no known key", len(line), line[:40])]
        out.append(Record(fields))
        return out

    def _parse_text(self, line: str) -> list:
        key = self.s.text
        m = re.search(rf"(?:^|[\s,;]){re.escape(key)}\s*[=:]\s*", line)
        if m is None:
            return [BadItem(f"no {key!r} key", len(line), line[:40])]
        head = line[: m.start()]
        fields = {key: line[m.end():].strip()}
        for part in _PAIR_SEP.split(head):
            kv = _KV.fullmatch(part) if part else None
            if kv is not None:
                fields[kv.group(1)] = kv.group(2)
        return [Record(fields)]
