"""EDF, EDF+ and BDF/BDF+ recordings (sleep and clinical EEG, polysomnography, BioSemi ActiveTwo; what MNE, edfio,
pyedflib and EDFbrowser write): the data channels and the annotations on the recorder's clock.

A file is a 256-byte header, 256 bytes more per signal (label, unit, physical and digital range, samples per data
record), then data records of a fixed duration, each holding every signal's samples of that record: 16-bit (EDF)
or 24-bit (BDF) little-endian integers, scaled to the physical range.  Signals with the same samples per record are
one stream (the first signal's group named after the file, the others ``<name>-<rate>Hz``); EDF+ ``EDF
Annotations`` signals are a marker stream ``<name>-annotations`` (each text of each time-stamped annotation list one
line at its onset; durations left out).  A BDF ``Status`` channel (BioSemi's trigger input) keeps its low 16 bits,
the trigger code, as ``--sync Status`` reads pulses in it.

Time: the header's start date and time (read as UTC, as MNE reads it; a two-digit year 85-99 is 19xx), to the
second, plus where the data record starts: ``record * duration``, or, in EDF+, the record's own time-keeping
annotation (its first), which puts an EDF+D (discontinuous) file's records after their gaps and a start's fraction
of a second; within a record, sample ``i`` at ``i * duration / samples``, exact to the ns.  Refused in one line
(``InputError``): not EDF/BDF, a header whose size or numbers are wrong, fewer data records than the header says,
times past what int64 ns hold (the year 2262).  An annotation onset out of that range is left out, counted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from fractions import Fraction

import numpy as np

from synchub.agent.core.stream import StreamInfo

from .base import FileStream, InputError, InputOptions, Piece, marker_stream, modality_of_lsl, stem_of

log = logging.getLogger(__name__)
FLOAT32_MAX = float(np.finfo(np.float32).max)
NS = 1_000_000_000
_LIMIT = 1 << 63  # ns since 1970 in int64: up to the year 2262
YEAR = 31_556_952 * NS
PIECE = 1 << 16  # about this many samples of a group per piece
_FIELDS = (("label", 16), ("transducer", 80), ("unit", 8), ("pmin", 8), ("pmax", 8), ("dmin", 8), ("dmax", 8),
           ("prefilter", 80), ("n", 8), ("reserved", 32))


def _start_ns(path, date: str, time: str, recording: str) -> int:
    try:
        d, m, y = date.strip().split(".")
        hh, mm, ss = (int(x) for x in time.strip().split("."))
        parts = recording.split()  # EDF+: "Startdate 02-JAN-2024 ..." has the four-digit year ("yy" after 2084)
        if len(parts) > 1 and parts[0] == "Startdate" and parts[1][-4:].isdigit():
            year = int(parts[1][-4:])
        else:
            year = int(y) + (1900 if int(y) >= 85 else 2000)
        t = datetime(year, int(m), int(d), hh, mm, ss, tzinfo=timezone.utc)
    except ValueError:
        raise InputError(path, f"the header's start date and time are not dd.mm.yy hh.mm.ss ({date!r} {time!r})") \
            from None
    return int(t.timestamp()) * NS


def _g(x: Fraction) -> str:
    try:
        return f"{float(x):g}"
    except OverflowError:
        return f"{'-' if x < 0 else ''}1e{len(str(abs(int(x)))) - 1}"


def _tals(raw: bytes) -> list[tuple[Fraction, list[str]]]:
    """The time-stamped annotation lists of one record's annotation bytes: (onset s, texts)."""
    out = []
    for tal in raw.split(b"\x00"):
        if not tal.strip(b"\x00") or not tal.startswith((b"+", b"-")):
            continue
        head, *texts = tal.decode("utf-8", errors="replace").split("\x14")
        try:
            onset = Fraction(head.split("\x15")[0])
        except (ValueError, ZeroDivisionError):
            continue
        out.append((onset, texts[:-1] if texts and texts[-1] == "" else texts))  # the list ends with \x14
    return out


class EdfInput:
    """One EDF/BDF file (see the module docstring)."""

    kind = "edf"

    def __init__(self, path, options: InputOptions | None = None):
        self.path = str(path)
        self.options = options or InputOptions()
        self.fraction = 0.0
        self.stats: dict[str, int] = {}
        size = os.path.getsize(self.path)
        with open(self.path, "rb") as f:
            h = f.read(256)
            if len(h) < 256 or not (h[:8] == b"0       " or h[:8] == b"\xffBIOSEMI"):
                raise InputError(self.path, "not an EDF or BDF file (its first 8 bytes are not '0' or BIOSEMI)")
            self.bdf = h[:8] == b"\xffBIOSEMI"
            text = h[8:].decode("latin-1")
            try:
                hdr_bytes, n_rec = int(text[176:184]), int(text[228:236])
                self.dur = Fraction(text[236:244].strip())
                nsig = int(text[244:248])
            except (ValueError, ZeroDivisionError):
                raise InputError(self.path, "the header's sizes are not numbers") from None
            if nsig <= 0 or hdr_bytes != 256 * (nsig + 1):
                raise InputError(self.path, f"header of {hdr_bytes} bytes for {nsig} signals (256 each + 256)")
            sig = f.read(256 * nsig).decode("latin-1")
        if len(sig) < 256 * nsig:
            raise InputError(self.path, "truncated header")
        cols, at = {}, 0
        for name, w in _FIELDS:
            cols[name] = [sig[at + i * w: at + (i + 1) * w].strip() for i in range(nsig)]
            at += w * nsig
        try:
            self.nsamp = [int(x) for x in cols["n"]]
            pmin, pmax = np.array(cols["pmin"], float), np.array(cols["pmax"], float)
            dmin, dmax = np.array(cols["dmin"], float), np.array(cols["dmax"], float)
        except ValueError:
            raise InputError(self.path, "a signal's range or samples per record is not a number") from None
        if min(self.nsamp) < 0 or not all(np.isfinite(v).all() for v in (pmin, pmax, dmin, dmax)):
            raise InputError(self.path, "a signal's samples per record is negative or its range not a number")
        if max(np.abs(pmin).max(), np.abs(pmax).max()) > FLOAT32_MAX:
            raise InputError(self.path, "a signal's physical range does not fit 32-bit floats (its values would be inf)")
        self.width = 3 if self.bdf else 2
        self.rec_bytes = sum(self.nsamp) * self.width
        self.hdr = hdr_bytes
        have = (size - hdr_bytes) // self.rec_bytes if self.rec_bytes else 0
        self.n_rec = have if n_rec < 0 else n_rec
        if have < self.n_rec:
            raise InputError(self.path, f"truncated: {have} of {self.n_rec} data records")
        self.warnings: list[str] = []
        extra = size - hdr_bytes - self.n_rec * self.rec_bytes
        if extra > 0:  # more than the header's records, or a last record cut short: not read, but not unsaid
            self.warnings.append(f"{self.path}: {extra} bytes after its {self.n_rec} data records "
                                 f"({extra / max(self.rec_bytes, 1):.2f} records' worth) not read: "
                                 + ("its header says fewer records" if extra >= self.rec_bytes and n_rec >= 0
                                    else "a last record cut short"))
            log.warning("%s", self.warnings[-1])
        self.gain = np.where(dmax > dmin, (pmax - pmin) / np.where(dmax > dmin, dmax - dmin, 1.0), 1.0)
        self.base = pmin - self.gain * dmin
        self.labels = cols["label"]
        ann = [i for i, lab in enumerate(self.labels) if lab in ("EDF Annotations", "BDF Annotations")]
        self.start = _start_ns(self.path, text[160:168], text[168:176], text[80:160])
        if self.start + max(self.n_rec * self.dur * NS, 0) >= _LIMIT:
            raise InputError(self.path, f"its times run past the year 2262 (start in {1970 + self.start // YEAR}, "
                                        f"{self.n_rec} records of {_g(self.dur)} s)")
        self.offsets = np.concatenate([[0], np.cumsum(self.nsamp)]) * self.width
        self.rec_start, self.notes = self._annotations(ann)
        name = self.options.name or stem_of(self.path)
        groups: dict[int, list[int]] = {}
        for i, n in enumerate(self.nsamp):
            if i not in ann and n > 0:
                groups.setdefault(n, []).append(i)
        if groups and self.dur <= 0:
            raise InputError(self.path, f"data record duration {self.dur} s: signals need one > 0")
        self.streams, self.groups = [], []
        for k, (n, idx) in enumerate(groups.items()):
            rate = float(n / self.dur)
            key = name if k == 0 else f"{name}-{rate:g}Hz"
            si = StreamInfo(name=key, type=modality_of_lsl("EEG", "float32"), nominal_srate=rate,
                            channel_count=len(idx), channel_format="float32",
                            channel_labels=tuple(self.labels[i] or f"ch{i + 1}" for i in idx),
                            quality=(("lsl_type", "EEG"), ("clock", "record start + sample index"),
                                     ("source", "bdf" if self.bdf else "edf")))
            self.streams.append(FileStream(key=key, info=si, local=n,
                                           meta={"units": [cols["unit"][i] for i in idx], "records": self.n_rec}))
            self.groups.append((key, n, idx))
        if self.notes:
            self.streams.append(marker_stream(f"{name}-annotations", "annotation", "annotations", "edf+ annotations"))
        if not self.streams:
            raise InputError(self.path, "no signals and no annotations")

    def _annotations(self, ann: list[int]) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """(each record's start, ns from the file's start; the annotations: (ns from the start, text)).  Records
        start at ``record * duration`` unless an annotation signal's first list stamps them (EDF+)."""
        starts = np.array([(r * self.dur * NS).__floor__() for r in range(self.n_rec)], dtype=np.int64)
        notes: list[tuple[int, str]] = []
        if not ann:
            return starts, notes
        with open(self.path, "rb") as f:
            for r in range(self.n_rec):
                for j, i in enumerate(ann):
                    f.seek(self.hdr + r * self.rec_bytes + int(self.offsets[i]))
                    tals = _tals(f.read(self.nsamp[i] * self.width))
                    bad = [x for x in tals if abs(self.start + x[0] * NS) >= _LIMIT]
                    if bad:  # an onset no clock reads (a garbled list): left out, counted
                        self.stats["annotation_onsets_out_of_range"] = \
                            self.stats.get("annotation_onsets_out_of_range", 0) + len(bad)
                        log.warning("%s: record %d: annotation onset(s) %s s out of range: left out", self.path,
                                    r + 1, ", ".join(_g(x[0]) for x in bad[:3]))
                        tals = [x for x in tals if x not in bad]
                    if j == 0 and tals and tals[0][1][:1] == [""]:  # the record's time-keeping list: its first
                        starts[r] = (tals[0][0] * NS).__floor__()  # text is empty (others may follow it)
                        tals[0] = (tals[0][0], tals[0][1][1:])
                    notes += [((on * NS).__floor__(), t) for on, texts in tals for t in texts if t.strip()]
        notes.sort(key=lambda x: x[0])
        return starts, notes

    def _values(self, raw: np.ndarray, i: int) -> np.ndarray:
        """Physical values of signal ``i``'s samples from its bytes (records x samples x width)."""
        b = raw.reshape(-1, self.width).astype(np.int32)
        dig = b[:, 0] | (b[:, 1] << 8)
        if self.bdf:
            dig = dig | (b[:, 2] << 16)
            dig = np.where(dig >= 1 << 23, dig - (1 << 24), dig)
            if self.labels[i] == "Status":
                return (dig & 0xFFFF).astype(np.float32)  # the trigger code
        else:
            dig = np.where(dig >= 1 << 15, dig - (1 << 16), dig)
        return (dig * self.gain[i] + self.base[i]).astype(np.float32)

    def read(self, evidence: bool = True, streams: set[str] | None = None) -> Iterator[Piece]:
        want = {fs.key for fs in self.streams} if streams is None else set(streams)
        if self.notes and self.streams[-1].key in want:
            t = np.array([self.start + t for t, _ in self.notes], dtype=np.int64)
            yield Piece(self.streams[-1].key, 0, t, [x for _, x in self.notes])
        groups = [g for g in self.groups if g[0] in want]
        if not groups or self.n_rec == 0:
            return
        per = max(1, min(PIECE // max(n for _, n, _ in groups), (16 << 20) // max(self.rec_bytes, 1)))  # <= 16 MiB
        dur_ns = self.dur * NS
        with open(self.path, "rb") as f:
            f.seek(self.hdr)
            for r0 in range(0, self.n_rec, per):
                k = min(per, self.n_rec - r0)
                block = np.frombuffer(f.read(k * self.rec_bytes), dtype=np.uint8).reshape(k, self.rec_bytes)
                for key, n, idx in groups:
                    data = np.stack([self._values(block[:, self.offsets[i]:self.offsets[i + 1]], i) for i in idx], 1)
                    step = (np.arange(n, dtype=np.int64) * dur_ns.numerator) // (n * dur_ns.denominator)
                    t = (self.start + self.rec_start[r0:r0 + k, None] + step[None, :]).ravel()
                    yield Piece(key, r0 * n, t, data)
                self.fraction = (r0 + k) / self.n_rec
