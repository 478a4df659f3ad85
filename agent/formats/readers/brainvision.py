"""BrainVision recordings (Brain Products' Recorder, and what MNE, pybv, EEGLAB and LSL's BrainVision tools write).

A recording is three files: the header ``.vhdr`` (INI-like: the data and marker files' names, the data format,
``SamplingInterval`` in microseconds, one ``Ch<n>=<name>,<reference>,<resolution>,<unit>`` line per channel), the
binary data ``.eeg`` (``INT_16``, ``UINT_16``, ``INT_32`` or ``IEEE_FLOAT_32``, little-endian; multiplexed or
vectorized) and the markers ``.vmrk`` (``Mk<n>=<type>,<description>,<position>,<size>,<channel>[,<date>]``, the
position a 1-based data point).  Either the header or the marker file may be given: the other two are found by the
names the header holds.

Two streams on the amplifier's sample clock: the channels (``<name>``, each value times its resolution, in the
channel's unit) and the markers (``<name>-markers``, one line ``<type>/<description>`` per marker, as MNE names its
annotations, at its data point's time).  Sample ``k`` (0-based) is at ``k * SamplingInterval`` from the start, exact
to the ns for any interval (``1953.125`` us at 512 Hz); where a ``New Segment`` marker carries its date
(``YYYYMMDDhhmmssuuuuuu``, read as UTC as MNE reads it), the segment's samples are at that date plus their distance
from its first point: a recording paused and resumed jumps forward by the pause.  ``New Segment`` markers are clock
facts, not events: counted, not in the marker stream (a later date after an undated first segment is ignored,
counted: the sample clock goes on).  A marker outside the data is dropped and counted, as MNE drops it; a marker file
the header names but that is gone is looked for under the header's own stem (renamed files), else the channels are
read alone (``marker_file_missing``).  A description holding an uncoded comma (pybv 0.8 writes them
so; MNE refuses the file) is read whole: the position, size and channel are the numbers at the line's end.

Refused in one line (``InputError``): a header that is not BrainVision's (V-Amp and Core headers are), a missing or
empty data file, ASCII data, an unknown binary format or orientation, a channel without its line or with a resolution
that is not a number, a data file that is not a whole number of samples, a marker whose position is not a number.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import numpy as np

from synchub.agent.core.stream import StreamInfo

from .base import (
    FileStream,
    InputError,
    InputOptions,
    Piece,
    marker_stream,
    modality_of_lsl,
    no_line_end,
    stem_of,
    text_head,
)

NS = 1_000_000_000
BLOCK = 1 << 15  # samples per piece
DTYPES = {"INT_16": "<i2", "UINT_16": "<u2", "INT_32": "<i4", "IEEE_FLOAT_32": "<f4"}
_MAGIC = re.compile(r"brain ?vision( core| v-amp)? data( exchange)? header file", re.IGNORECASE)  # as MNE's
log = logging.getLogger(__name__)
_MK = re.compile(r"^Mk(\d+)\s*=(.*)$", re.IGNORECASE)
_DATE = re.compile(r"^\d{20}$")


def _sections(path, lines: list[str]) -> dict[str, dict[str, str]]:
    """``{section: {key: value}}`` of an INI-like BrainVision file (``;`` comments; keys as written)."""
    out: dict[str, dict[str, str]] = {}
    cur: dict[str, str] | None = None
    for ln in lines[1:]:
        s = ln.strip()
        if not s or s.startswith(";"):
            continue
        if s.startswith("[") and s.endswith("]"):
            cur = out.setdefault(s[1:-1].strip().lower(), {})
        elif cur is not None and "=" in s:
            k, v = s.split("=", 1)
            cur[k.strip()] = v.strip()
    return out


def _text(path, what: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise InputError(path, f"the {what} is missing")
    enc, _ = text_head(p)
    with open(p, encoding=enc, errors="replace", newline="") as f:
        return f.read().splitlines()


def _date_ns(s: str) -> int | None:
    """ns since 1970 (UTC) of a marker date ``YYYYMMDDhhmmssuuuuuu``; None when empty, zero or not a date."""
    if not _DATE.match(s) or not s.strip("0"):
        return None
    try:
        d = datetime.strptime(s[:14], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return int(d.timestamp()) * NS + int(s[14:]) * 1000


def _num(x: str) -> bool:
    return x.strip().lstrip("-").isdigit()


def parse_marker(path, number: str, body: str) -> tuple[str, str, int, int, int, int | None]:
    """(type, description, position (1-based), size, channel, date ns or None) of one ``Mk<n>=`` line's value."""
    f = body.split(",")
    date = None
    if len(f) >= 6 and (_DATE.match(f[-1].strip()) or not f[-1].strip()) and all(_num(x) for x in f[-4:-1]):
        date, f = _date_ns(f[-1].strip()), f[:-1]
    if len(f) >= 5 and all(_num(x) for x in f[-3:]):
        head, pos, size, chan = f[:-3], int(f[-3]), int(f[-2]), int(f[-1])
    elif len(f) >= 3 and _num(f[2]):  # a short line: type, description, position[, size[, channel]]
        head, pos = f[:2], int(f[2])
        size = int(f[3]) if len(f) > 3 and _num(f[3]) else 1
        chan = int(f[4]) if len(f) > 4 and _num(f[4]) else 0
    else:
        raise InputError(path, f"marker Mk{number}: its position is not a number ({body[:60]!r})")
    mtype = head[0].replace("\\1", ",").strip() if head else ""
    desc = ",".join(head[1:]).replace("\\1", ",").strip()
    return mtype, desc, pos, size, chan, date


class BrainVisionInput:
    """One BrainVision recording (see the module docstring)."""

    kind = "brainvision"

    def __init__(self, path, options: InputOptions | None = None):
        self.path = str(path)
        self.options = options or InputOptions()
        self.fraction = 0.0
        self.stats: dict[str, int] = {}
        self.missing_markers = 0
        self.cut_markers = 0
        header = self._header_path(Path(path))
        lines = _text(header, "header (.vhdr)")
        if not lines or not _MAGIC.match(lines[0].strip()):
            raise InputError(header, "not a BrainVision header (its first line is not 'Brain Vision Data Exchange "
                                     "Header File ...')")
        sec = _sections(header, lines)
        common, binary = sec.get("common infos", {}), sec.get("binary infos", {})
        if common.get("DataFormat", "BINARY").upper() != "BINARY":
            raise InputError(header, f"BrainVision {common.get('DataFormat')} data is not supported (BINARY only)")
        fmt = binary.get("BinaryFormat", "INT_16").upper()
        if fmt not in DTYPES:
            raise InputError(header, f"unknown BinaryFormat {fmt!r} (known: {', '.join(DTYPES)})")
        self.dtype = np.dtype(DTYPES[fmt])
        orient = common.get("DataOrientation", "MULTIPLEXED").upper()
        if orient not in ("MULTIPLEXED", "VECTORIZED"):
            raise InputError(header, f"unknown DataOrientation {orient!r} (MULTIPLEXED or VECTORIZED)")
        self.vectorized = orient == "VECTORIZED"
        try:
            self.nch = int(common["NumberOfChannels"])
            # pybv writes 1e6 / rate as Python prints it (1666.6666666666667 at 600 Hz): the rate's own fraction
            interval_us = Fraction(common["SamplingInterval"]).limit_denominator(10_000)
        except (KeyError, ValueError, ZeroDivisionError):
            raise InputError(header, "NumberOfChannels and SamplingInterval (us) must be numbers") from None
        if self.nch <= 0 or interval_us <= 0:
            raise InputError(header, "NumberOfChannels and SamplingInterval must be > 0")
        self.interval_ns = interval_us * 1000
        self.data_path = header.parent / common.get("DataFile", header.stem + ".eeg")
        if not self.data_path.is_file():
            raise InputError(header, f"the data file {self.data_path.name} it names is missing")
        size = os.path.getsize(self.data_path)
        frame = self.nch * self.dtype.itemsize
        if size % frame:
            raise InputError(self.data_path, f"truncated: {size} bytes is not a whole number of samples of "
                                             f"{self.nch} channels ({frame} bytes each)")
        self.n = size // frame
        if self.n == 0:
            raise InputError(self.data_path, "empty: no samples")
        labels, self.scale, units = [], np.ones(self.nch, dtype=np.float64), []
        chans = sec.get("channel infos", {})
        for i in range(self.nch):
            if f"Ch{i + 1}" not in chans:
                raise InputError(header, f"no Ch{i + 1} line under [Channel Infos] for {self.nch} channels")
            parts = [p.replace("\\1", ",") for p in chans[f"Ch{i + 1}"].split(",")]
            labels.append(parts[0].strip() or f"ch{i + 1}")
            try:
                self.scale[i] = float(parts[2]) if len(parts) > 2 and parts[2].strip() else 1.0
            except ValueError:
                raise InputError(header, f"Ch{i + 1}: resolution {parts[2].strip()!r} is not a number") from None
            if not np.isfinite(self.scale[i]):
                raise InputError(header, f"Ch{i + 1}: resolution {parts[2].strip()!r} is not a number")
            units.append(parts[3].strip() if len(parts) > 3 and parts[3].strip() else "µV")
        self.markers = self._markers(self._marker_path(header, common.get("MarkerFile")))
        name = self.options.name or stem_of(header)
        rate = float(NS / self.interval_ns)
        si = StreamInfo(name=name, type=modality_of_lsl("EEG", "float32"), nominal_srate=rate, channel_count=self.nch,
                        channel_format="float32", channel_labels=tuple(labels),
                        quality=(("lsl_type", "EEG"), ("clock", "sample index"), ("source", "brainvision")))
        self.streams = [FileStream(key=name, info=si, local="data", meta={"samples": self.n, "units": units,
                                                                           "format": fmt})]
        if any(r[0].lower() != "new segment" for r in self.markers):
            self.streams.append(marker_stream(f"{name}-markers", "marker", "markers", "brainvision markers"))

    def _header_path(self, p: Path) -> Path:
        """The header of a recording given by its header or its marker file (the ``.vhdr`` beside it naming it,
        else the one of the same stem)."""
        if p.suffix.lower() != ".vmrk":
            return p
        for h in sorted(p.parent.glob("*.vhdr")) + sorted(p.parent.glob("*.VHDR")):
            try:
                sec = _sections(h, _text(h, "header (.vhdr)"))
            except InputError:
                continue
            if sec.get("common infos", {}).get("MarkerFile", "") == p.name:
                return h
        same = p.with_suffix(".vhdr")
        if same.is_file():
            return same
        raise InputError(p, "a BrainVision marker file needs its header (.vhdr) beside it, for the sampling "
                            "interval: none names it")

    def _marker_path(self, header: Path, named: str | None) -> Path | None:
        """The marker file the header names, else (renamed, as after a BIDS rename) the one of the header's stem;
        neither: the channels alone, counted (``marker_file_missing``)."""
        for p in ([header.parent / named] if named else []) + [header.with_suffix(".vmrk")]:
            if p.is_file():
                return p
        if named:
            self.missing_markers = 1
        return None

    def _markers(self, path: Path | None) -> list[tuple[str, str, int, int, int, int | None]]:
        out: list = []
        if path is None:
            return out
        in_markers = False
        lines = _text(path, "marker file (.vmrk)")
        cut = no_line_end(path)
        last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
        for i, ln in enumerate(lines[1:], 1):
            s = ln.strip()
            if s.startswith("["):
                in_markers = s.lower() == "[marker infos]"
                continue
            m = _MK.match(s) if in_markers else None
            if m and cut and i == last and len(m.group(2).split(",")) < 5:  # a cut inside its position reads as
                self.cut_markers = 1  # another position: left out, said
                log.warning("%s: its last marker line has no line end and %d of 5 fields (cut while it was "
                            "written?): left out", path, len(m.group(2).split(",")))
            elif m:
                out.append(parse_marker(path, m.group(1), m.group(2)))
        out.sort(key=lambda r: r[2])
        return out

    def _segments(self) -> list[tuple[int, int]]:
        """(first 0-based sample, its device ns) of each segment: a ``New Segment`` marker's date starts its own
        where it is later than the samples before it; the first segment at 0 without a date."""
        segs = [(0, 0)]
        for mtype, _, pos, _, _, date in self.markers:
            if mtype.lower() != "new segment":
                continue
            self.stats["new_segments"] = self.stats.get("new_segments", 0) + 1
            k = max(pos - 1, 0)
            if date is None:
                continue
            if not segs[0][1] and k > 0:  # the first segment has no date: the sample clock goes on (no 1970 jump)
                self.stats["segment_dates_ignored"] = self.stats.get("segment_dates_ignored", 0) + 1
                continue
            if k == 0:
                segs = [(0, date)]
            elif date > self.times(np.array([k], dtype=np.int64), segs)[0]:
                segs.append((k, date))
            else:
                self.stats["segment_dates_back"] = self.stats.get("segment_dates_back", 0) + 1
        return segs

    def times(self, k: np.ndarray, segs: list[tuple[int, int]]) -> np.ndarray:
        """Exact device ns of 0-based samples ``k`` (sorted) on ``segs``."""
        q, r = divmod(self.interval_ns.numerator, self.interval_ns.denominator)  # k * r stays small: no overflow
        starts = np.array([s for s, _ in segs], dtype=np.int64)
        i = np.searchsorted(starts, k, side="right") - 1
        base = np.array([t for _, t in segs], dtype=np.int64)[i]
        dk = k - starts[i]
        return base + dk * q + (dk * r) // self.interval_ns.denominator

    def read(self, evidence: bool = True, streams: set[str] | None = None) -> Iterator[Piece]:
        self.stats = {"marker_file_missing": 1} if self.missing_markers else {}
        if self.cut_markers:
            self.stats["cut_last_marker"] = 1
        segs = self._segments()
        want = {fs.key for fs in self.streams} if streams is None else set(streams)
        data_key = self.streams[0].key
        if len(self.streams) > 1 and self.streams[1].key in want:
            events = [r for r in self.markers if r[0].lower() != "new segment"]
            inside = [r for r in events if 1 <= r[2] <= self.n]  # as MNE: a marker outside the data is dropped
            if len(inside) < len(events):
                self.stats["markers_outside_data"] = len(events) - len(inside)
            events = inside
            self.stats["markers"] = len(events)
            if events:
                k = np.array([max(r[2] - 1, 0) for r in events], dtype=np.int64)
                text = [f"{r[0]}/{r[1]}" for r in events]
                yield Piece(self.streams[1].key, 0, self.times(k, segs), text)
        if data_key not in want:
            return
        mm = np.memmap(self.data_path, dtype=self.dtype, mode="r",
                       shape=(self.nch, self.n) if self.vectorized else (self.n, self.nch))
        for k0 in range(0, self.n, BLOCK):
            k1 = min(self.n, k0 + BLOCK)
            raw = mm[:, k0:k1].T if self.vectorized else mm[k0:k1]
            block = (np.asarray(raw, dtype=np.float64) * self.scale).astype(np.float32)
            yield Piece(data_key, k0, self.times(np.arange(k0, k1, dtype=np.int64), segs), block)
            self.fraction = k1 / max(self.n, 1)
        del mm
