"""Streaming XDF reader: every stream of a LabRecorder (or synchub) file, a chunk at a time.

Format (https://github.com/sccn/xdf/wiki/Specifications; ``formats/xdf.py`` is our writer): the magic ``XDF:``, then chunks
``[NumLengthBytes: 1|4|8][Length][Tag: uint16][Content]`` (Length counts tag + content), little-endian.  Tags:
1 FileHeader (XML), 2 StreamHeader (uint32 id + XML), 3 Samples (id, varlen count, per sample ``[0|8][float64
stamp s][values]``: a missing stamp is the previous one plus 1/rate, as pyxdf deduces it), 4 ClockOffset (id,
float64 collection time on the stream's clock, float64 offset to the recorder's clock), 5 Boundary, 6 StreamFooter
(id + XML).  Numeric values follow the channel format; strings are varlen-prefixed UTF-8 per channel.

Unlike ``pyxdf.load_xdf`` (which loads the whole file), ``XdfInput.read()`` yields one ``Piece`` per Samples chunk
and one ``Offset`` per ClockOffset chunk, so memory is bounded by the largest chunk.  Opening scans the chunk
headers (seeking over contents) to list the streams and to find a truncated or corrupt file before anything is
written: a text file named ``.xdf``, a chunk that runs past the end, a bad length byte, samples of a stream with no
header are one-line ``InputError``s.  Times become int64 ns (``round(stamp * 1e9)``).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator
from xml.etree import ElementTree as ET

import numpy as np

from synchub.agent.core.stream import CHANNEL_FORMATS, StreamInfo

from .base import FileStream, InputError, InputOptions, Offset, Piece, modality_of_lsl

MAGIC = b"XDF:"
TAG_FILE_HEADER, TAG_STREAM_HEADER, TAG_SAMPLES, TAG_CLOCK_OFFSET, TAG_BOUNDARY, TAG_STREAM_FOOTER = 1, 2, 3, 4, 5, 6
_NUMERIC = {"float32": "<f4", "double64": "<f8", "int8": "<i1", "int16": "<i2", "int32": "<i4", "int64": "<i8"}


def _xml_dict(elem: ET.Element):
    """pyxdf-style: an element's children as {tag: [values]}, or its text."""
    kids = list(elem)
    if not kids:
        return elem.text
    out: dict = {}
    for k in kids:
        out.setdefault(k.tag, []).append(_xml_dict(k))
    return out


def _first(d, key, default=""):
    v = d.get(key) if isinstance(d, dict) else None
    return v[0] if v and v[0] is not None else default


def _chunks(f, path, size: int, full: bool) -> Iterator[tuple[int, int, int | None, bytes | None]]:
    """``(tag, position, stream id, content after the id)`` of every chunk; the content of samples and offsets is
    None (skipped) unless ``full``.  The stream id is None for chunks without one."""
    f.seek(len(MAGIC))
    while True:
        pos = f.tell()
        b = f.read(1)
        if not b:
            return
        nbytes = b[0]
        if nbytes not in (1, 4, 8):
            raise InputError(path, f"corrupt XDF: bad chunk length byte {nbytes} at byte {pos}")
        raw = f.read(nbytes)
        if len(raw) < nbytes:
            raise InputError(path, f"truncated XDF: the file ends inside the chunk header at byte {pos}")
        length = int.from_bytes(raw, "little")
        body = pos + 1 + nbytes
        if length < 2:
            raise InputError(path, f"corrupt XDF: chunk of length {length} at byte {pos}")
        if body + length > size:
            raise InputError(path, f"truncated XDF: the chunk at byte {pos} needs {length} bytes, "
                                   f"the file ends {size - body} bytes after its header")
        tag = struct.unpack("<H", f.read(2))[0]
        rest = length - 2
        sid = None
        if tag in (TAG_STREAM_HEADER, TAG_SAMPLES, TAG_CLOCK_OFFSET, TAG_STREAM_FOOTER):
            if rest < 4:
                raise InputError(path, f"corrupt XDF: chunk without a stream id at byte {pos}")
            sid = struct.unpack("<I", f.read(4))[0]
            rest -= 4
        if full or tag in (TAG_FILE_HEADER, TAG_STREAM_HEADER, TAG_STREAM_FOOTER):
            yield tag, pos, sid, f.read(rest)
        else:
            f.seek(rest, 1)
            yield tag, pos, sid, None


def _varlen(buf: bytes, i: int, path, pos: int) -> tuple[int, int]:
    n = buf[i] if i < len(buf) else 0
    if n not in (1, 4, 8) or i + 1 + n > len(buf):
        raise InputError(path, f"corrupt XDF: bad sample count in the chunk at byte {pos}")
    return int.from_bytes(buf[i + 1:i + 1 + n], "little"), i + 1 + n


class _StreamState:
    def __init__(self, info: StreamInfo, key: str):
        self.info = info
        self.key = key
        self.nch = info.channel_count
        self.tdiff = 1.0 / info.nominal_srate if info.nominal_srate > 0 else 0.0
        self.last = 0.0
        self.seq = 0


def decode_samples(content: bytes, st: _StreamState, path, pos: int) -> tuple[np.ndarray, object]:
    """Stamps (float64 s) and values of one Samples chunk's content (after the stream id)."""
    n, i = _varlen(content, 0, path, pos)
    body = memoryview(content)[i:]
    fmt = st.info.channel_format
    least = 1 + st.nch * (np.dtype(_NUMERIC[fmt]).itemsize if fmt != "string" else 2)  # bytes a sample takes
    if n * least > len(body):  # a garbled count: refused before anything is allocated for it
        raise InputError(path, f"corrupt XDF: the samples chunk at byte {pos} claims {n} samples in {len(body)} "
                               f"bytes")
    if fmt != "string":
        vdt = np.dtype((_NUMERIC[fmt], (st.nch,)))
        for tsb in (8, 0):  # every sample stamped (LabRecorder), or none: one vectorized read
            rec = np.dtype([("n", "u1"), ("t", "<f8", (1,) if tsb else (0,)), ("v", vdt)], align=False)
            if len(body) == n * rec.itemsize:
                r = np.frombuffer(body, dtype=rec, count=n)
                if np.all(r["n"] == tsb):
                    stamps = r["t"][:, 0].copy() if tsb else st.last + st.tdiff * np.arange(1, n + 1)
                    if n:
                        st.last = float(stamps[-1])
                    return stamps, r["v"].astype(CHANNEL_FORMATS[fmt])
    stamps = np.empty(n)
    values: list = []
    j = 0
    size = vdt.itemsize if fmt != "string" else 0
    try:
        for k in range(n):
            tsb = body[j]
            j += 1
            if tsb == 8:
                stamps[k] = struct.unpack_from("<d", body, j)[0]
                j += 8
            elif tsb == 0:
                stamps[k] = st.last + st.tdiff
            else:
                raise InputError(path, f"corrupt XDF: bad stamp length {tsb} in the chunk at byte {pos}")
            st.last = stamps[k]
            if fmt == "string":
                row = []
                for _ in range(st.nch):
                    m, j = _varlen(body, j, path, pos)
                    row.append(bytes(body[j:j + m]).decode("utf-8", "replace"))
                    j += m
                values.append(row[0] if st.nch == 1 else "\t".join(row))
            else:
                values.append(np.frombuffer(body, dtype=vdt, count=1, offset=j)[0])
                j += size
    except (IndexError, struct.error):
        raise InputError(path, f"corrupt XDF: the samples chunk at byte {pos} is shorter than its count") from None
    if fmt == "string":
        return stamps, values
    return stamps, np.asarray(values, dtype=CHANNEL_FORMATS[fmt]).reshape(n, st.nch)


def stream_info_of(xml: bytes, path, pos: int) -> tuple[StreamInfo, dict]:
    try:
        root = ET.fromstring(xml.decode("utf-8", "replace"))
    except ET.ParseError as exc:
        raise InputError(path, f"corrupt XDF: unreadable stream header at byte {pos} ({exc})") from None
    d = _xml_dict(root) or {}
    if not isinstance(d, dict):
        d = {}
    fmt = _first(d, "channel_format", "float32")
    if fmt not in _NUMERIC and fmt != "string":
        raise InputError(path, f"unsupported XDF channel format {fmt!r} in the stream header at byte {pos}")
    try:
        nch = int(_first(d, "channel_count", "1"))
        rate = float(_first(d, "nominal_srate", "0") or 0)
    except ValueError:
        raise InputError(path, f"corrupt XDF: bad channel count or rate in the stream header at byte {pos}") from None
    labels: tuple[str, ...] = ()
    desc = _first(d, "desc", None)
    chans = _first(desc, "channels", None) if isinstance(desc, dict) else None
    if isinstance(chans, dict):
        labs = [(_first(c, "label", "") if isinstance(c, dict) else "") for c in chans.get("channel", [])]
        if len(labs) == nch and all(labs):
            labels = tuple(labs)
    lsl_type = _first(d, "type", "")
    name = _first(d, "name", "") or "stream"
    info = StreamInfo(name=name, type=modality_of_lsl(lsl_type, fmt), nominal_srate=max(rate, 0.0),
                      channel_count=max(nch, 1), channel_format=fmt, channel_labels=labels,
                      source_id=_first(d, "source_id", ""),
                      quality=(("lsl_type", lsl_type),) if lsl_type else ())
    return info, d


class XdfInput:
    """One XDF file (see the module docstring)."""

    kind = "xdf"

    def __init__(self, path, options: InputOptions | None = None):
        self.path = str(path)
        self.options = options or InputOptions()
        with open(self.path, "rb") as f:
            head = f.read(len(MAGIC))
            f.seek(0, 2)
            self.size = f.tell()
            if head != MAGIC:
                raise InputError(self.path, "not an XDF file (it does not start with 'XDF:')")
            self.header: dict = {}
            self.footers: dict[int, dict] = {}
            self._infos: dict[int, tuple[StreamInfo, dict]] = {}
            for tag, pos, sid, content in _chunks(f, self.path, self.size, full=False):
                if tag == TAG_FILE_HEADER:
                    try:
                        self.header = _xml_dict(ET.fromstring(content.decode("utf-8", "replace"))) or {}
                    except ET.ParseError:
                        self.header = {}
                elif tag == TAG_STREAM_HEADER:
                    self._infos[sid] = stream_info_of(content, self.path, pos)
                elif tag == TAG_STREAM_FOOTER:
                    try:
                        self.footers[sid] = _xml_dict(ET.fromstring(content.decode("utf-8", "replace")))
                    except ET.ParseError:
                        self.footers[sid] = {}
                elif tag in (TAG_SAMPLES, TAG_CLOCK_OFFSET) and sid not in self._infos:
                    raise InputError(self.path, f"corrupt XDF: data of stream id {sid} (byte {pos}) before or "
                                                f"without its stream header")
        if not self._infos:
            raise InputError(self.path, "no streams in this XDF file (no stream header)")
        self.streams: list[FileStream] = []
        names = [info.name for info, _ in self._infos.values()]
        for sid, (info, hdr) in self._infos.items():
            key = info.name if names.count(info.name) == 1 else f"{info.name}#{sid}"
            if key != info.name:
                info = dataclasses.replace(info, name=key)
            self.streams.append(FileStream(key=key, info=info, local=sid, on_file_clock=True,
                                           meta={"xdf_stream_id": sid, "header": hdr}))
        self._by_id = {s.local: s for s in self.streams}

    def stream(self, key: str) -> FileStream:
        return next(s for s in self.streams if s.key == key)

    def read(self, evidence: bool = True, streams: set[str] | None = None) -> Iterator[Piece | Offset]:
        """Pieces (one per Samples chunk) and, with ``evidence``, ClockOffsets, in file order.  ``streams`` limits
        the pieces to those keys (offsets of every stream still come with ``evidence``)."""
        states = {s.local: _StreamState(s.info, s.key) for s in self.streams}
        self.fraction = 0.0
        with open(self.path, "rb") as f:
            for tag, pos, sid, content in _chunks(f, self.path, self.size, full=True):
                self.fraction = pos / self.size
                if tag not in (TAG_SAMPLES, TAG_CLOCK_OFFSET):
                    continue
                st = states[sid]
                if tag == TAG_CLOCK_OFFSET:
                    if len(content) < 16:
                        raise InputError(self.path, f"corrupt XDF: short ClockOffset chunk at byte {pos}")
                    if evidence:
                        t, v = struct.unpack_from("<dd", content)
                        yield Offset(st.key, int(round(t * 1e9)), int(round(v * 1e9)))
                    continue
                if streams is not None and st.key not in streams:
                    # the stamps still advance the deduced-stamp state of the stream
                    decode_samples(content, st, self.path, pos)
                    continue
                stamps, values = decode_samples(content, st, self.path, pos)
                if len(stamps) == 0:
                    continue
                if not np.all(np.isfinite(stamps)):
                    raise InputError(self.path, f"corrupt XDF: a non-finite time stamp in the chunk at byte {pos}")
                piece = Piece(st.key, st.seq, np.rint(stamps * 1e9).astype(np.int64), values)
                st.seq += len(stamps)
                yield piece
