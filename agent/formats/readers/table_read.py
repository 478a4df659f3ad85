"""Streaming CSV/TSV reader: a time column in seconds on the file's own clock, numeric channels, marker columns.

The delimiter is ``InputOptions.delimiter``, a tab for ``.tsv``, else sniffed from the first 64 KiB (``, \\t ; |``).
The first row names the columns (leading ``#`` comment lines are skipped; where the first row is data, the last
comment names them: MNE's annotation text files).  The time column is ``InputOptions.time_col`` (a name, any case,
or a 0-based index) or the one named ``time``, ``timestamp``, ``t`` (also ``time_s``, ``seconds``, ``onset``: BIDS
events, MNE annotations); its values are seconds, parsed exactly to int64 ns (``12.000000001`` keeps its last
digit; ``time_ms``, ``t (us)``, ``stamp[ns]``: in the unit its name ends with), or ISO 8601 dates and times (ns
since the epoch, UTC unless a zone is given).  ``n/a`` (BIDS), ``NA``, ``nan``, ``null`` and empty cells hold no
value: NaN in a numeric column, no marker in a text one (``n/a``, empty).
Every other column whose values in the first rows are all numbers (or no value) is a channel of one numeric stream
named after the file (``rig.csv`` -> ``rig``); every text column is a marker stream (``string``), one sample per
row where it has a value, named after the file when it is the file's only stream, else ``<stem>.<column>``.

PsychoPy's trial-by-trial data file (no time column; ``<component>.started`` / ``.stopped`` columns in seconds on
PsychoPy's clock) is one marker stream of "<component> started|stopped" lines at those times.

Rows whose time does not parse are skipped and counted (``stats``), as are text found later in a numeric column
(NaN).  A file without a time column, without data rows, or that is not text is a one-line ``InputError``.
Rows are read in batches (``BATCH``): memory is bounded whatever the file's length.
"""

from __future__ import annotations

import csv
import datetime
import itertools
import logging
import re
from collections.abc import Iterator

import numpy as np

from synchub.agent.core.stream import StreamInfo

from .base import (
    FileStream,
    InputError,
    InputOptions,
    Piece,
    counted_lines,
    marker_stream,
    no_line_end,
    stem_of,
    text_head,
)

log = logging.getLogger(__name__)
LOG_ROWS = 5  # skipped rows logged one by one; beyond, counted
NS = 1_000_000_000
BATCH = 8192
TYPE_ROWS = 2000  # rows that decide whether a column is numeric
TIME_NAMES = ("time", "timestamp", "t", "time_s", "timestamp_s", "times", "seconds", "secs", "onset")
#: a time column's unit from its name's last word (time_ms, "t (ms)", stamp[us]): ns per unit; else seconds
_UNIT = re.compile(r"(?:^|[\s_.\-(\[])(ms|msec|millis|milliseconds|us|usec|µs|micros|microseconds|ns|nsec|nanos|"
                   r"nanoseconds)[)\]]?$", re.IGNORECASE)
_PER_UNIT = {"ms": 1_000, "msec": 1_000, "millis": 1_000, "milliseconds": 1_000, "us": 1_000_000,
             "usec": 1_000_000, "µs": 1_000_000, "micros": 1_000_000, "microseconds": 1_000_000,
             "ns": 1_000_000_000, "nsec": 1_000_000_000, "nanos": 1_000_000_000, "nanoseconds": 1_000_000_000}
_DECIMAL = re.compile(r"^\s*([+-]?)(\d*)(?:\.(\d*))?\s*$")
#: cells that hold no value: NaN in a numeric column, no marker in a text one (BIDS writes n/a)
MISSING = frozenset({"", "n/a", "na", "nan", "none", "null"})
MISSING_TEXT = frozenset({"", "n/a"})
_COMMA_NUMBER = re.compile(r"^\s*[+-]?\d+,\d+\s*$")  # a number with a decimal comma
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
#: a date and time: YYYY-MM-DD, T or a space, hh:mm:ss, a fraction, a zone (the same on every Python version)
_ISO = re.compile(r"^\s*(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(\.\d+)?(Z|z|[+-]\d{2}:?\d{2})?\s*$")


def seconds_to_ns(text: str) -> int | None:
    """Exact ns of a decimal number of seconds (floats only for exponent forms); None when it is not a number."""
    m = _DECIMAL.match(text)
    if m and (m.group(2) or m.group(3)):
        frac = (m.group(3) or "")[:9].ljust(9, "0")
        v = int(m.group(2) or 0) * NS + int(frac)
        return -v if m.group(1) == "-" else v
    try:
        f = float(text)
    except ValueError:
        return None
    return int(round(f * NS)) if np.isfinite(f) else None


def time_to_ns(text: str, per_second: int = 1) -> int | None:
    """ns of a time cell: a decimal number of seconds (``seconds_to_ns``; of ms, us, ns with ``per_second`` 1000,
    10**6, 10**9), or an ISO 8601 date and time (MNE's annotation CSV: ``2002-12-03 19:01:11.720100``; ``T`` or a
    space, any fraction to the ns, ``Z`` or an offset, else UTC) as ns since the epoch; None when it is neither."""
    t = seconds_to_ns(text)
    if t is not None:
        return t // per_second if per_second > 1 else t
    m = _ISO.match(text)
    if m is None:
        return None
    date, frac, zone = m.group(1), (m.group(2) or "")[1:], m.group(3) or "+00:00"
    try:
        dt = datetime.datetime.fromisoformat(f"{date}+00:00" if zone in ("Z", "z") else f"{date}{zone}")
    except ValueError:
        return None
    d = dt - _EPOCH
    return (d.days * 86_400 + d.seconds) * NS + int(frac[:9].ljust(9, "0"))


def _is_number(text: str) -> bool:
    if text.strip().lower() in MISSING:
        return True
    try:
        float(text)
        return True
    except ValueError:
        return False


def _forms(name: str) -> tuple[str, str]:
    """A column's name as matched: in lower case, and without the unit it ends with (time_ms, "t (us)": time, t)."""
    return name.strip().lower(), _UNIT.sub("", name).strip(" _.-").lower()


def _time_index(names: list[str]) -> int | None:
    """The column named as a time (``TIME_NAMES`` in order; by its name, then by its name without its unit)."""
    forms = [_forms(c) for c in names]
    for name in TIME_NAMES:
        for k in (0, 1):
            for i, f in enumerate(forms):
                if f[k] == name:
                    return i
    return None


def _cell(text: str) -> str:
    v = text.strip()
    return "nan" if v.lower() in MISSING else v


class TableInput:
    """One CSV/TSV file (see the module docstring)."""

    kind = "table"

    def __init__(self, path, options: InputOptions | None = None):
        self.path = str(path)
        self.options = options or InputOptions()
        self.stats: dict[str, int] = {}
        self.columns: list[str] = []  # named by the header row, read next (no row is "cut" before it)
        self._logged_rows: set[int] = set()  # skipped rows logged so far (``_log_row``), over both reads
        self._said_cut = False
        self.encoding, sample = text_head(self.path)
        self.delimiter = self._delimiter(sample)
        self.decimal_comma = self._decimal_comma(sample)
        rows = self._rows()
        header = next(rows, None)
        if header is None or not any(h.strip() for h in header):
            raise InputError(self.path, "no header row (the first row must name the columns)")
        named = self._comment_header(sample, header)
        if named is None and self._headerless(header):
            named = [f"c{i}" for i in range(len(header))]
        self.header_rows = 0 if named else 1  # rows before the data (none: the names are in a comment)
        if named:
            rows = itertools.chain([header], rows)
            header = named
        self.columns = [h.strip() for h in header]
        # PsychoPy's trial-by-trial data file: no time column; each component's start and stop in its own
        self.phases = [i for i, c in enumerate(self.columns) if c.endswith((".started", ".stopped"))]
        if self.phases and not self.options.time_col and _time_index(self.columns) is None:
            self._psychopy_data(rows)
            return
        self.phases = []
        self.time_index = self._time_column()
        unit = _UNIT.search(self.columns[self.time_index])
        # the column's units per second (the micro sign and the Greek mu alike); the time_unit option first
        named = unit.group(1).lower().replace("\u03bc", "\u00b5") if unit else "s"
        self.time_divisor = _PER_UNIT.get(self.options.time_unit or named, 1)
        first = list(itertools.islice(rows, TYPE_ROWS))
        if not first:
            raise InputError(self.path, "no data rows after the header")
        self.numeric = [i for i in range(len(self.columns)) if i != self.time_index
                        and all(_is_number(r[i]) for r in first if i < len(r))
                        and any(i < len(r) and r[i].strip().lower() not in MISSING for r in first)]
        self.text = [i for i in range(len(self.columns)) if i != self.time_index and i not in self.numeric
                     and any(i < len(r) and r[i].strip().lower() not in MISSING_TEXT for r in first)]
        if not self.numeric and not self.text:
            raise InputError(self.path, "no columns besides the time column")
        stem = self.options.name or stem_of(self.path)
        self.streams: list[FileStream] = []
        if self.numeric:
            labels = tuple(self.columns[i] or f"c{i}" for i in self.numeric)
            typ = self.options.type or "other"
            info = StreamInfo(name=stem, type=typ, nominal_srate=float(self.options.rate_hz),
                              channel_count=len(self.numeric), channel_format="double64", channel_labels=labels)
            self.streams.append(FileStream(key=stem, info=info, local=("numeric", tuple(self.numeric))))
        for i in self.text:
            name = stem if not self.numeric and len(self.text) == 1 else f"{stem}.{self.columns[i] or f'c{i}'}"
            self.streams.append(marker_stream(name, self.columns[i] or f"c{i}", ("text", i)))

    def _psychopy_data(self, rows) -> None:
        """A PsychoPy data file (one row per trial; ``<component>.started`` / ``.stopped`` in seconds on PsychoPy's
        clock, as its ``.log``): one marker stream of "<component> started|stopped" lines at those times."""
        if next(rows, None) is None:
            raise InputError(self.path, "no data rows after the header")
        name = self.options.name or stem_of(self.path)
        self.streams = [marker_stream(name, "component", ("phases", tuple(self.phases)), "psychopy data file")]
        self.time_index, self.time_divisor, self.numeric, self.text = -1, 1, [], []

    def _phases(self, batch: list[list[str]], seq: int) -> Piece | None:
        """The components' starts and stops of some trial rows, in time order."""
        out = []
        for r in batch:
            for i in self.phases:
                cell = r[i].strip() if i < len(r) else ""
                if cell.lower() in MISSING:
                    continue
                t = seconds_to_ns(cell)
                if t is None:
                    self._count("bad_time")
                    continue
                comp, _, what = self.columns[i].rpartition(".")
                out.append((t, f"{comp} {what}"))
        out.sort(key=lambda x: x[0])
        if not out:
            return None
        return Piece(self.streams[0].key, seq, np.array([t for t, _ in out], dtype=np.int64), [m for _, m in out])

    def _delimiter(self, sample: str) -> str:
        if self.options.delimiter:
            return {"tab": "\t", "\\t": "\t"}.get(self.options.delimiter, self.options.delimiter)
        if self.path.lower().endswith(".tsv"):
            return "\t"
        body = "\n".join(ln for ln in sample.splitlines() if not ln.startswith("#"))
        try:
            return csv.Sniffer().sniff(body[:16384], delimiters=",\t;|").delimiter
        except csv.Error:
            return ","

    def _comment_header(self, sample: str, first: list[str]) -> list[str] | None:
        """The column names a comment gives when the first row is data (MNE's annotation text files:
        ``# onset, duration, description`` above rows of numbers), else None."""
        if not any(c.strip() and _is_number(c) and c.strip().lower() not in MISSING for c in first):
            return None
        want = self.options.time_col.lower()
        if _time_index(first) is not None or want and want in {f for c in first for f in _forms(c)}:
            return None  # a header with numbers among its names ("time,1,2"), under a comment about the file
        comments = [ln.lstrip("#").strip() for ln in itertools.takewhile(
            lambda ln: ln.startswith("#") or not ln.strip(), sample.splitlines()) if ln.strip()]
        if not comments:
            return None
        names = next(csv.reader([comments[-1]], delimiter=self.delimiter))
        return names if len(names) == len(first) and not any(_is_number(c) for c in names) else None

    def _decimal_comma(self, sample: str) -> bool:
        """Numbers written with a decimal comma (``2,3365``: Excel's CSV in a German or French locale, ``;`` between
        the fields): any such cell in the first rows, where the comma does not separate the fields."""
        if self.delimiter == ",":
            return False
        body = [ln for ln in sample.splitlines()[:200] if ln.strip() and not ln.startswith("#")]
        return any(_COMMA_NUMBER.match(c) for row in csv.reader(body, delimiter=self.delimiter) for c in row)

    def _headerless(self, first: list[str]) -> bool:
        """A file without column names, on the user's word: ``time_col`` a 0-based index, a time there in row 1."""
        want = self.options.time_col.strip()
        return want.isdigit() and int(want) < len(first) and time_to_ns(first[int(want)]) is not None

    def _rows(self) -> Iterator[list[str]]:
        f = open(self.path, encoding=self.encoding, newline="")  # noqa: SIM115 - closed when the generator ends
        self.fraction = 0.0
        try:
            lines = itertools.dropwhile(lambda ln: ln.startswith("#") or not ln.strip(), counted_lines(self, f))
            rows = csv.reader(lines, delimiter=self.delimiter)
            if self.decimal_comma:  # 2,5 -> 2.5 in the cells that are numbers (text keeps its commas)
                rows = ([c.replace(",", ".") if _COMMA_NUMBER.match(c) else c for c in row] for row in rows)
            last = next(rows, None)
            for row in rows:
                yield last
                last = row
            if last is not None and not self._cut(last):
                yield last
        except (UnicodeError, csv.Error) as exc:
            raise InputError(self.path, f"unreadable text ({exc})") from None
        finally:
            f.close()

    def _cut(self, row: list[str]) -> bool:
        """Whether the file's last row was cut while it was written: no line end after it, and fewer fields than the
        header's (a cut inside its time would read as another time).  Counted and said once; a last row whole but
        for its line end (an editor's way) is kept."""
        header = self.columns
        if not header or len(row) >= len(header) or not row or not any(c.strip() for c in row):
            return False
        if not no_line_end(self.path):
            return False
        self._count("cut_last_row")
        if not self._said_cut:
            self._said_cut = True
            log.warning("%s: its last row has %d of %d fields and no line end (cut while it was written?): left "
                        "out", self.path, len(row), len(header))
        return True

    def _time_column(self) -> int:
        want = self.options.time_col
        lower = [c.lower() for c in self.columns]
        if want:
            if want.lower() in lower:
                return lower.index(want.lower())
            if want.isdigit() and int(want) < len(self.columns):
                return int(want)
            raise InputError(self.path, f"no column {want!r} (columns: {', '.join(self.columns)})")
        found = _time_index(self.columns)
        if found is not None:
            return found
        if any(c.strip() and _is_number(c) for c in self.columns):
            raise InputError(self.path, f"no column names: the first row is data ({', '.join(self.columns)[:60]}); "
                                        "name the columns in a first row, or give the time column's 0-based index "
                                        "(--time-col 0; time_col in a manifest)")
        raise InputError(self.path, f"no time column: none is named {', '.join(TIME_NAMES)}, with or without a unit "
                                    f"(time_ms; give it with --time-col, time_col in a manifest; columns: "
                                    f"{', '.join(self.columns)})")

    def _count(self, why: str, n: int = 1) -> None:
        self.stats[why] = self.stats.get(why, 0) + n

    def _log_row(self, row: int, why: str, *args) -> None:
        """A skipped row at WARNING: the first ``LOG_ROWS`` of the file, once each however often it is read (the
        file engine reads it twice); the rest are counted (``stats``, the report's warnings), not logged."""
        logged = self._logged_rows
        if row in logged or len(logged) > LOG_ROWS:
            return
        logged.add(row)
        if len(logged) > LOG_ROWS:
            log.warning("%s: more rows skipped: counted in the report, not logged each", self.path)
            return
        log.warning("%s: row %d skipped: " + why, self.path, row, *args)

    def read(self, evidence: bool = True, streams: set[str] | None = None) -> Iterator[Piece]:
        rows = self._rows()
        if self.header_rows:
            next(rows, None)
        seqs = {s.key: 0 for s in self.streams}
        self.stats = {}
        self._dated: bool | None = None  # whether the time column holds dates and times (its first row says)
        line = 1
        while True:
            batch = list(itertools.islice(rows, BATCH))
            if not batch:
                break
            if self.phases:
                piece = self._phases(batch, seqs[self.streams[0].key])
                if piece is not None and (streams is None or piece.stream in streams):
                    seqs[piece.stream] += piece.n
                    yield piece
                continue
            yield from self._batch(batch, seqs, streams, line)
            line += len(batch)

    def _batch(self, batch: list[list[str]], seqs: dict, streams: set[str] | None, line: int) -> Iterator[Piece]:
        ti = self.time_index
        times, keep = [], []
        for k, r in enumerate(batch):
            t = time_to_ns(r[ti], self.time_divisor) if ti < len(r) else None
            if t is None:
                if any(c.strip() for c in r):
                    self._count("bad_time")
                    self._log_row(line + k + 1, "no time in column %r", self.columns[ti])
                continue
            dated = _ISO.match(r[ti]) is not None  # a date and time, not a number of seconds
            if self._dated is None:
                self._dated = dated
            elif dated != self._dated:  # the column's first time decides what its times are
                self._count("time_in_another_form")
                self._log_row(line + k + 1, "its time %r is %s, the column's first was %s", r[ti],
                              *(("a date", "a number") if dated else ("a number", "a date")))
                continue
            times.append(t)
            keep.append(r)
        if not keep:
            return
        t = np.asarray(times, dtype=np.int64)
        for s in self.streams:
            if streams is not None and s.key not in streams:
                continue
            kind, cols = s.local
            if kind == "numeric":
                data = np.full((len(keep), len(cols)), np.nan)
                for j, c in enumerate(cols):
                    cells = [_cell(r[c]) if c < len(r) else "nan" for r in keep]
                    try:
                        data[:, j] = np.asarray(cells).astype(np.float64)
                    except ValueError:  # text among the numbers: NaN there, counted
                        for k, cell in enumerate(cells):
                            try:
                                data[k, j] = float(cell)
                            except ValueError:
                                self._count("text_in_numeric_column")
                yield Piece(s.key, seqs[s.key], t, data)
                seqs[s.key] += len(keep)
            else:
                rows = [(k, r[cols].strip()) for k, r in enumerate(keep)
                        if cols < len(r) and r[cols].strip().lower() not in MISSING_TEXT]
                if rows:
                    idx = np.array([k for k, _ in rows])
                    yield Piece(s.key, seqs[s.key], t[idx], [v for _, v in rows])
                    seqs[s.key] += len(rows)

