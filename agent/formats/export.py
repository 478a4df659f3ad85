"""A synchub session exported for the tools labs use: XDF (pyxdf, MNE through pyxdf), CSV, a folder of ``.npy``.

Each exporter takes the items of ``session_stream.iter_session`` one at a time (``start``, ``chunk``, ``gap``,
``evidence``, then ``close``), so memory stays bounded however long the session; ``export_session`` runs one pass.

* ``XdfExport``: one XDF stream per synchub stream, stamped with its corrected reference times (the agent's
  ``CLOCK_MONOTONIC`` timeline, in seconds; the host receive time where a chunk was not corrected, counted), and
  ClockOffset chunks from the agent's reference -> UTC samples (``UtcSample`` evidence: the system clock or NTP every
  10 s; the session's start pair where there are fewer than two of those): ``pyxdf.load_xdf(...,
  synchronize_clocks=True)`` then puts every stream on UTC by its own clock sync, in seconds since the whole UTC
  second the session started (the header's ``datetime`` and ``synchub_utc_epoch_ns``: float64 keeps nanoseconds
  there, not at 1.8e9 s) (each offset's collection time is on the stream's clock, so pyxdf's
  linear fit is exact however large the offset).  ``utc=False``, or fewer than two UTC samples, writes none: the
  stamps stay on the reference clock.  Metadata: channel labels and units, the synchub stream fields in ``desc``.
* ``CsvExport``: ``<stream>.csv`` per stream (``seq, ref_ns, unc_ns, device_ns, host_ns, segment`` then the
  channels, or ``text``) and ``_gaps.csv``.
* ``NpyExport``: ``<stream>/`` with ``seq``, ``ref_ns``, ``unc_ns``, ``device_ns``, ``host_ns``, ``segment`` and
  ``data`` as ``.npy`` (text streams: ``data.jsonl``), ``info.json``; ``_gaps.jsonl``.  Each ``.npy`` is appended
  to and its header rewritten with the final length at the end.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from synchub.agent.core.evidence import UtcSample
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.core.units import NS

from .session_stream import SESSION_START, ChunkRecord, EvidenceRecord, GapRecord, SessionReader, StreamStart
from .xdf import XdfWriter

TIME_FIELDS = ("seq", "ref_ns", "unc_ns", "device_ns", "host_ns", "segment")


def file_stem(key: str) -> str:
    """A stream key as a file name (``agent/stream`` -> ``agent_stream``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key)


def chunk_times(c: Chunk) -> tuple[np.ndarray, bool]:
    """The chunk's corrected reference times, or its host receive times (``False``) when it was not corrected."""
    return (c.ref_ns, True) if c.ref_ns is not None else (c.host_ns, False)


class _Export:
    def __init__(self):
        self.infos: dict[str, StreamInfo] = {}
        self.samples: dict[str, int] = {}
        self.uncorrected: dict[str, int] = {}
        self.gaps: dict[str, int] = {}

    def start(self, key: str, info: StreamInfo) -> None:
        self.infos[key] = info
        self.samples[key] = self.uncorrected[key] = self.gaps[key] = 0

    def chunk(self, key: str, c: Chunk) -> None:
        self.samples[key] += c.n
        if c.ref_ns is None:
            self.uncorrected[key] += c.n

    def gap(self, key: str, gap: dict) -> None:
        self.gaps[key] = self.gaps.get(key, 0) + int(gap.get("count", 0))

    def evidence(self, item) -> None:
        pass

    def summary(self) -> dict[str, Any]:
        return {k: {"samples": self.samples[k], "uncorrected": self.uncorrected[k], "gap_samples": self.gaps.get(k, 0)}
                for k in self.infos}


class XdfExport(_Export):
    def __init__(self, dest, *, utc: bool = True, hostname: str = ""):
        super().__init__()
        self.dest = dest
        self.hostname = hostname
        self.w: XdfWriter | None = None  # opened at the first stream, once the session's UTC start is known
        self.utc = utc
        self.epoch_ns = 0
        self.ids: dict[str, int] = {}
        self.utc_samples: list[tuple[int, int]] = []  # (reference time, UTC) pairs
        self.session_utc: list[tuple[int, int]] = []  # the session's start pair: used only when too few others

    def _open(self) -> XdfWriter:
        if self.w is None:
            first = (self.session_utc + self.utc_samples)[:1]
            # UTC is written as seconds since a whole second near the start: float64 keeps ns there, not at 1.8e9 s
            self.epoch_ns = (first[0][1] // NS) * NS if first and self.utc else 0
            header = {"datetime": _iso(self.epoch_ns) if self.epoch_ns else "", "synchub_utc_epoch_ns": self.epoch_ns,
                      "synchub": "exported by synchub export"}
            self.w = XdfWriter(self.dest, header=header, hostname=self.hostname)
        return self.w

    def start(self, key: str, info: StreamInfo) -> None:
        super().start(key, info)
        desc = {"synchub": {"stream": key, "modality": info.type, "utc_epoch_ns": self.epoch_ns,
                            "timestamps": "corrected reference time (agent CLOCK_MONOTONIC), s; ClockOffsets map it "
                                          "to UTC - utc_epoch_ns (the file header's)"}}
        self.ids[key] = self._open().add_stream(info, desc=desc)

    def chunk(self, key: str, c: Chunk) -> None:
        super().chunk(key, c)
        t, _ = chunk_times(c)
        data = c.data if isinstance(c.data, list) else np.asarray(c.data).reshape(c.n, -1)
        self.w.write_samples(self.ids[key], t, data)

    def evidence(self, item) -> None:
        if isinstance(item, UtcSample):
            pair = (int(item.mono_ns), int(item.utc_ns))
            (self.session_utc if item.source == SESSION_START else self.utc_samples).append(pair)

    def close(self) -> dict[str, Any]:
        w = self._open()
        pairs = sorted(set(self.utc_samples)) if self.utc else []
        if self.utc and len(pairs) < 2:
            pairs = sorted(set(pairs + self.session_utc))
        if len(pairs) >= 2:
            for sid in self.ids.values():
                for mono, utc in pairs:
                    w.write_clock_offset(sid, mono, utc - self.epoch_ns - mono)
        self.w.close()
        synced = len(pairs) >= 2
        return {"streams": self.summary(), "clock_offsets": len(pairs) if synced else 0,
                "utc_epoch_ns": self.epoch_ns if synced else 0,
                "time": f"UTC - {_iso(self.epoch_ns)} after pyxdf's synchronize_clocks" if synced else
                "reference clock (no UTC mapping)"}


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // NS, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class CsvExport(_Export):
    def __init__(self, folder):
        super().__init__()
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, Any] = {}
        self._gaps_file = open(self.dir / "_gaps.csv", "w", newline="")  # noqa: SIM115 - closed in close()
        self._gaps = csv.writer(self._gaps_file)
        self._gaps.writerow(["stream", "seq", "count", "cause", "device_ns_from", "device_ns_to", "detail"])

    def start(self, key: str, info: StreamInfo) -> None:
        super().start(key, info)
        f = open(self.dir / f"{file_stem(key)}.csv", "w", newline="")  # noqa: SIM115 - closed in close()
        self.files[key] = f
        n = info.channel_count
        names = ["text"] if info.channel_format == "string" else list(info.channel_labels or
                                                                      [f"ch{i}" for i in range(n)])
        csv.writer(f).writerow([*TIME_FIELDS, *names])

    def chunk(self, key: str, c: Chunk) -> None:
        super().chunk(key, c)
        cols = _time_columns(c)
        f = self.files[key]
        if isinstance(c.data, list):
            csv.writer(f).writerows([*(int(x) for x in row[:6]), text] for row, text in zip(cols, c.data, strict=True))
            return
        values = np.asarray(c.data).reshape(c.n, -1)
        # float32 with 9 significant digits and float64 with 17 read back to the same value
        fmt = ("%.9g" if values.dtype.itemsize == 4 else "%.17g") if values.dtype.kind == "f" else "%d"
        lines = [",".join(map(str, t)) + "," + ",".join(fmt % v for v in row)
                 for t, row in zip(cols.tolist(), values.tolist(), strict=True)]
        f.write("\n".join(lines) + "\n")

    def gap(self, key: str, gap: dict) -> None:
        super().gap(key, gap)
        self._gaps.writerow([key, gap.get("seq", ""), gap.get("count", ""), gap.get("cause", ""),
                             gap.get("device_ns_from", ""), gap.get("device_ns_to", ""), gap.get("detail", "")])

    def close(self) -> dict[str, Any]:
        for f in self.files.values():
            f.close()
        self._gaps_file.close()
        return {"streams": self.summary(), "folder": str(self.dir)}


def _time_columns(c: Chunk) -> np.ndarray:
    minus = np.full(c.n, -1, np.int64)
    return np.column_stack([np.arange(c.seq, c.seq + c.n, dtype=np.int64),
                            c.ref_ns if c.ref_ns is not None else minus, c.unc_ns if c.unc_ns is not None else minus,
                            c.device_ns, c.host_ns,
                            c.segment.astype(np.int64) if c.segment is not None else np.zeros(c.n, np.int64)])


class NpyAppender:
    """A ``.npy`` file written a block at a time: a fixed-size header, rewritten with the final length at close."""

    HEADER = 128

    def __init__(self, path, dtype, tail: tuple[int, ...] = ()):
        self.f = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.dtype = np.dtype(dtype)
        self.tail = tuple(tail)
        self.n = 0
        self._header(0)

    def _header(self, n: int) -> None:
        d = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (  # noqa: UP031 - numpy's own header format
            np.lib.format.dtype_to_descr(self.dtype), (n, *self.tail))
        body = d.ljust(self.HEADER - 10 - 1) + "\n"
        self.f.seek(0)
        self.f.write(b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1"))

    def append(self, arr) -> None:
        a = np.ascontiguousarray(arr, dtype=self.dtype)
        self.f.write(a.tobytes())
        self.n += len(a)

    def close(self) -> None:
        self._header(self.n)
        self.f.close()


class NpyExport(_Export):
    def __init__(self, folder):
        super().__init__()
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.out: dict[str, dict[str, Any]] = {}
        self._gaps = open(self.dir / "_gaps.jsonl", "w")  # noqa: SIM115 - closed in close()

    def start(self, key: str, info: StreamInfo) -> None:
        super().start(key, info)
        d = self.dir / file_stem(key)
        d.mkdir(exist_ok=True)
        (d / "info.json").write_text(json.dumps(info.to_dict(), indent=1) + "\n")
        files: dict[str, Any] = {f: NpyAppender(d / f"{f}.npy", np.int32 if f == "segment" else np.int64)
                                 for f in TIME_FIELDS}
        if info.channel_format == "string":
            files["data"] = open(d / "data.jsonl", "w")  # noqa: SIM115 - closed in close()
        else:
            files["data"] = NpyAppender(d / "data.npy", info.dtype, info.sample_shape)
        self.out[key] = files

    def chunk(self, key: str, c: Chunk) -> None:
        super().chunk(key, c)
        files = self.out[key]
        cols = _time_columns(c)
        for i, name in enumerate(TIME_FIELDS):
            files[name].append(cols[:, i])
        if isinstance(c.data, list):
            files["data"].write("".join(json.dumps(s) + "\n" for s in c.data))
        else:
            files["data"].append(np.asarray(c.data).reshape(c.n, *self.infos[key].sample_shape))

    def gap(self, key: str, gap: dict) -> None:
        super().gap(key, gap)
        self._gaps.write(json.dumps({"stream": key, **{k: v for k, v in gap.items() if k != "mid"}}) + "\n")

    def close(self) -> dict[str, Any]:
        for files in self.out.values():
            for f in files.values():
                f.close()
        self._gaps.close()
        return {"streams": self.summary(), "folder": str(self.dir)}


def export_session(paths, exporters: list) -> tuple[list[dict], Any]:
    """One pass over the session's parts feeding every exporter; returns their summaries and the reader's counts."""
    reader = SessionReader(paths)
    for item in reader:
        if isinstance(item, ChunkRecord):
            for e in exporters:
                e.chunk(item.key, item.chunk)
        elif isinstance(item, StreamStart):
            for e in exporters:
                e.start(item.key, item.info)
        elif isinstance(item, GapRecord):
            for e in exporters:
                e.gap(item.key, item.gap)
        elif isinstance(item, EvidenceRecord):
            for e in exporters:
                e.evidence(item.item)
    return [e.close() for e in exporters], reader.counts
