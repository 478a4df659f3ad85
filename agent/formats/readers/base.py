"""What every file reader gives ``synchub align``: streams, pieces of samples, clock evidence, one-line errors.

A reader (``xdf_read``, ``audio_read``, ``table_read``, ``mcap_parts``) opens one input file, checks it (an
unreadable, empty, truncated or unsupported file raises ``InputError``: ``"<path>: <reason>"``, one line), lists its
streams (``FileStream``) and, each time ``read()`` is called, yields the file's content again from the start, in file
order, a bounded piece at a time:

* ``Piece``: consecutive samples of one stream: raw device times (int64 ns on that stream's own clock), data
  (``(n, *shape)`` array or a list of str), and, for synchub recordings, host receive times and sequence numbers;
* ``Offset``: an XDF ClockOffset (at ``collection_ns`` of the stream's clock, ``offset_ns`` to add to read the
  recorder's clock);
* ``Recorded``: a piece of evidence the agent recorded (``TriggerEdge``, ``Probe``, ``OffsetEstimate``); a
  ``device_reset`` gap (``Reset``); every gap record, whatever its cause (``GapRecord``, for the output).

Two ``read()`` passes see the same items (evidence first, then the corrected copy).  Memory is bounded by the
largest chunk of the file, whatever its length.

``InputOptions`` are per file (from flags or a manifest entry, ``manifest.py``); ``opening.open_input`` picks the
reader by ``options.format`` or the file's extension.
"""

from __future__ import annotations

import codecs
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synchub.agent.core.stream import StreamInfo

#: Extensions of each format (``--format`` takes the key).
FORMATS: dict[str, tuple[str, ...]] = {
    "xdf": (".xdf",),
    "mcap": (".mcap",),
    "audio": (".wav", ".flac", ".wave", ".bwf", ".rf64", ".ogg", ".oga", ".opus", ".mp3", ".aiff",
               ".aif"),
    "table": (".csv", ".tsv", ".txt"),
    "psychopy": (".log",),
    "brainvision": (".vhdr", ".vmrk"),
    "edf": (".edf", ".bdf", ".rec"),
    "spikeglx": (".bin", ".meta"),
    "openephys": (".oebin",),
    "media": (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".m4a"),
}
TIME_UNITS = ("", "s", "ms", "us", "ns")  # a table's time column: its unit ("": seconds, or its name's last word)
SYNC_KINDS = ("auto", "ttl", "photodiode", "click", "tone")
ALIGN_MODES = ("auto", "edges", "hybrid", "neural", "classical", "none")


class InputError(ValueError):
    """An input the user must fix: one line, ``"<path>: <reason>"``."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class InputOptions:
    """Per-file options (flags or a manifest entry).

    ``name``: stream name of a single-stream file (default: the file's stem). ``time_col``/``delimiter``: CSV/TSV
    (the time column in seconds on the file's own clock; detected as time/timestamp/t); ``time_unit``: that column's
    unit where its name does not end with it (``ms``: an Arduino's millis() in a column named "time").
    ``rate_hz``/``type``: a table's numeric stream (0: irregular; LSL type). ``sync``: the channel (label or 0-based
    index, ``stream:chan`` in a multi-stream file) carrying sync pulses; ``sync_kind`` how to find them;
    ``sync_min_width_s`` / ``sync_max_width_s`` the pulse-width rule; ``sync_threshold`` a fixed level instead of
    the automatic one; ``sync_bit``: the pulses are this bit (0 = least significant) of the sync channel's integer
    values (a digital word: a SpikeGLX ``SY0``/``XD0``, a BDF ``Status``); ``barcode`` decode 32-bit barcodes in it.
    ``offset_s``: a guess of reference minus this file's clock (what picks among a periodic train's pairings, and
    the aligner's search centre; default: the files started together, as TPrime assumes, or, for the aligner, the
    same clock where their times overlap). ``align``: how this file is tied to the reference when it is not the
    reference (``auto``: sync edges, else the aligner's ``hybrid``). ``dejitter``: replace a regular stream's stamps
    by a line per segment (pyxdf's jitter removal). ``markers``: what a marker log's lines mean, as the agent's
    ``[[stream]] markers`` (``align.markers.rules_from``'s dictionaries, checked by the engine's ``InputSpec``);
    empty: the default words.
    """

    format: str = ""
    name: str = ""
    time_col: str = ""
    time_unit: str = ""
    delimiter: str = ""
    rate_hz: float = 0.0
    type: str = ""
    sync: str = ""
    sync_kind: str = "auto"
    sync_min_width_s: float = 0.0
    sync_max_width_s: float = 0.0
    sync_threshold: float | None = None
    sync_bit: int | None = None
    barcode: bool = False
    offset_s: float | None = None
    align: str = "auto"
    dejitter: bool = True
    markers: tuple = ()

    def __post_init__(self) -> None:
        if not isinstance(self.markers, (list, tuple)):
            raise ValueError("markers: a list of marker rules ({pattern, senses, ...} tables)")
        object.__setattr__(self, "markers", tuple(self.markers))
        if self.format and self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; allowed: {', '.join(FORMATS)}")
        if self.time_unit not in TIME_UNITS:
            raise ValueError(f"unknown time_unit {self.time_unit!r}; allowed: {', '.join(u for u in TIME_UNITS if u)}")
        if self.sync_kind not in SYNC_KINDS:
            raise ValueError(f"unknown sync_kind {self.sync_kind!r}; allowed: {', '.join(SYNC_KINDS)}")
        if self.align not in ALIGN_MODES:
            raise ValueError(f"unknown align {self.align!r}; allowed: {', '.join(ALIGN_MODES)}")
        if self.rate_hz < 0 or self.sync_min_width_s < 0 or self.sync_max_width_s < 0:
            raise ValueError("rates and widths must be >= 0")
        bit = self.sync_bit
        if bit is not None and (isinstance(bit, bool) or not isinstance(bit, int) or not 0 <= bit <= 62):
            raise ValueError(f"sync_bit {self.sync_bit}: a bit of an integer word, 0..62")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        return cls(**d)


@dataclass
class FileStream:
    """One stream of an input.  ``key`` is its name across all inputs (``--ref`` takes it); ``local`` is the
    reader's own handle (an XDF stream id, a topic, a column group).  ``on_file_clock``: its device times are
    already on the file's clock (a WAV, a CSV, an XDF stream without ClockOffsets)."""

    key: str
    info: StreamInfo
    local: Any = None
    on_file_clock: bool = True
    sync_channel: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def marker_stream(name: str, label: str, local: Any = None, source: str = "") -> FileStream:
    """A stream of text markers (one string channel ``label``, irregular), ``source`` saying what made it."""
    info = StreamInfo(name=name, type="marker", nominal_srate=0.0, channel_count=1, channel_format="string",
                      channel_labels=(label,), quality=(("source", source),) if source else ())
    return FileStream(key=name, info=info, local=local)


@dataclass
class Piece:
    """Consecutive samples of one stream (``seq``: index of the first within the stream, over the whole file)."""

    stream: str
    seq: int
    device_ns: np.ndarray
    data: Any
    host_ns: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.device_ns)


@dataclass(frozen=True)
class Offset:
    """An XDF ClockOffset chunk: at ``collection_ns`` (the stream's clock) the stream needed ``offset_ns`` added."""

    stream: str
    collection_ns: int
    offset_ns: int


@dataclass(frozen=True)
class Reset:
    """A driver-reported device clock reset: sample ``seq`` of ``stream`` starts a new timeline."""

    stream: str
    seq: int


@dataclass(frozen=True)
class GapRecord:
    """A synchub recording's gap record (``Gap.to_dict()``): samples lost, and why; carried to the output."""

    stream: str
    record: dict


@dataclass(frozen=True)
class Recorded:
    """A piece of clock evidence a synchub recording holds (``TriggerEdge``, ``Probe``, ``OffsetEstimate``)."""

    item: Any


def stem_of(path) -> str:
    return Path(path).name.split(".")[0] or Path(path).name


def check_readable(path) -> int:
    """The file's size; ``InputError`` for a missing, unreadable or empty file, or a directory."""
    p = Path(path)
    if not p.exists():
        raise InputError(path, "no such file")
    if p.is_dir():
        raise InputError(path, "is a directory, not a file")
    try:
        with open(p, "rb") as f:
            f.read(1)
        size = os.path.getsize(p)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    if size == 0:
        raise InputError(path, "empty file (0 bytes)")
    return size


def text_head(path) -> tuple[str, str]:
    """(encoding, the first 64 KiB as text) of a text file users bring: UTF-16 with its BOM (Excel's "Unicode
    text"), UTF-8 with or without one (Excel's "CSV UTF-8" writes one), else Windows-1252 (Excel's plain CSV on
    Western systems) or, where that has no character for a byte, Latin-1.  A file of NUL bytes (binary) or that its
    BOM's encoding cannot read is a one-line ``InputError``."""
    with open(path, "rb") as f:
        head = f.read(65536)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ("utf-16",)
    else:
        encodings = ("utf-8-sig", "cp1252", "latin-1")
    for enc in encodings:
        try:  # a character cut at 64 KiB is fine
            text = codecs.getincrementaldecoder(enc)().decode(head, final=False)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise InputError(path, f"not a text file (not {encodings[0]})")
    if "\x00" in text:
        raise InputError(path, "not a text file (it holds NUL bytes)")
    return enc, text


def no_line_end(path) -> bool:
    """Whether a text file's last line has no line end: written only in part (a logger cut off), or an editor's way
    with a last line; what the line holds tells which."""
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            return False
        f.seek(-1, 2)
        return f.read(1) not in (b"\n", b"\r")


def counted_lines(reader, f) -> Iterator[str]:
    """The lines of ``reader``'s open text file, keeping ``reader.fraction`` (characters read / bytes in the file:
    about the share read)."""
    size, done = max(os.path.getsize(reader.path), 1), 0
    for ln in f:
        done += len(ln)
        reader.fraction = min(done / size, 1.0)
        yield ln


def format_of(path, options: InputOptions) -> str:
    if options.format:
        return options.format
    name = Path(path).name.lower()
    for fmt, exts in FORMATS.items():
        if any(name.endswith(e) for e in exts):
            return fmt
    allowed = ", ".join(e for exts in FORMATS.values() for e in exts)
    raise InputError(path, f"unsupported file type (known: {allowed}; or give its format)")


def modality_of_lsl(lsl_type: str, channel_format: str) -> str:
    """synchub's stream type for an LSL content type (the LSL type is kept in the stream's quality facts)."""
    t = (lsl_type or "").strip().lower()
    if channel_format == "string":
        return "marker"
    table = {"audio": "audio", "video": "video", "mocap": "imu", "imu": "imu", "accelerometer": "imu",
             "gyroscope": "imu", "markers": "marker", "marker": "marker", "trigger": "trigger",
             "telemetry": "telemetry", "gaze": "other", "eeg": "other"}
    return table.get(t, "other")


#: channel labels that name a sync channel, and the pulses it carries
SYNC_LABELS = {"sync": "ttl", "ttl": "ttl", "trigger": "ttl", "trig": "ttl", "din": "ttl", "digital": "ttl",
               "photodiode": "photodiode", "pd": "photodiode", "photo": "photodiode"}


def sync_channel(fs: FileStream, options: InputOptions, single: bool) -> tuple[int, str, int | None] | None:
    """(channel index, pulse kind, bit) of this stream's sync channel, or None.  ``bit``: the pulses are that bit of
    the channel's integer values (``--sync-bit``, or the line the file itself declares: SpikeGLX)."""
    found = _sync_channel(fs, options, single)
    if found is None:
        return None
    ch, kind = found
    bit = options.sync_bit
    declared = fs.meta.get("sync")
    if bit is None and declared and fs.info.channel_labels and fs.info.channel_labels[ch] == declared[0]:
        bit = declared[1]
    return ch, ("ttl" if bit is not None else kind), bit


def _sync_channel(fs: FileStream, options: InputOptions, single: bool) -> tuple[int, str] | None:
    info = fs.info
    if info.channel_format == "string":
        return None
    want = options.sync
    if want and ":" in want:
        stream, want = want.rsplit(":", 1)
        if stream != fs.key:
            return None
    elif want and not single and want not in info.channel_labels and not want.isdigit():
        return None
    kind = options.sync_kind
    if want:
        if want in info.channel_labels:
            ch = info.channel_labels.index(want)
        elif want.isdigit() and int(want) < info.channel_count:
            ch = int(want)
        elif single:
            raise InputError(fs.key, f"no sync channel {want!r} (channels: "
                                     f"{', '.join(info.channel_labels) or info.channel_count})")
        else:
            return None
        if kind == "auto":
            kind = "click" if info.type == "audio" else SYNC_LABELS.get(info.channel_labels[ch].lower()
                                                                          if info.channel_labels else "", "ttl")
        return ch, kind
    if kind in ("click", "tone") and info.type == "audio":
        return 0, kind
    if kind == "auto":
        declared = fs.meta.get("sync")  # the sync line the file's own header names (SpikeGLX)
        if declared and declared[0] in info.channel_labels:
            return info.channel_labels.index(declared[0]), "ttl"
        for i, lab in enumerate(info.channel_labels):
            if lab.lower() in SYNC_LABELS:
                return i, SYNC_LABELS[lab.lower()]
    return None
