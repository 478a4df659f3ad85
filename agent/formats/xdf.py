"""XDF writer (the format LabRecorder writes and pyxdf reads), for export and for the sync benchmark's pyxdf baseline.

Format (https://github.com/sccn/xdf/wiki/Specifications): the magic ``XDF:``, then chunks
``[NumLengthBytes: 1|4|8][Length][Tag: uint16][Content]`` where Length counts tag + content.  Tags used here:
1 FileHeader (XML), 2 StreamHeader (uint32 stream id + XML), 3 Samples (stream id, varlen sample count, samples each
``[8][float64 timestamp s][values]``), 4 ClockOffset (stream id, float64 collection time, float64 offset: add to the
stream's timestamps to get the recorder's clock), 5 Boundary (a fixed 16-byte UUID), 6 StreamFooter (stream id +
XML with first/last timestamp, sample count and the clock offsets).  Everything little-endian.  Values follow the
stream's channel format; XDF has no uint8, so uint8 streams (video) are written as int16; strings are varlen-prefixed
UTF-8 per channel.  Times go in as int64 ns and are written as seconds (float64), as LSL does.

Not I/O-free by nature, but small: ``XdfWriter`` writes to a binary file object or path.
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path
from typing import BinaryIO
from xml.sax.saxutils import escape

import numpy as np

from synchub.agent.core.stream import StreamInfo

TAG_FILE_HEADER, TAG_STREAM_HEADER, TAG_SAMPLES, TAG_CLOCK_OFFSET, TAG_BOUNDARY, TAG_STREAM_FOOTER = 1, 2, 3, 4, 5, 6
BOUNDARY_UUID = bytes([0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F, 0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4])
XDF_FORMATS = {"float32": "<f4", "double64": "<f8", "int8": "<i1", "int16": "<i2", "int32": "<i4", "int64": "<i8",
               "uint8": "<i2"}


def _varlen(n: int) -> bytes:
    if n < 256:
        return bytes([1, n])
    if n < 1 << 32:
        return b"\x04" + struct.pack("<I", n)
    return b"\x08" + struct.pack("<Q", n)


def _xml(tag: str, fields: dict) -> str:
    parts = []
    for k, v in fields.items():
        if isinstance(v, dict):
            parts.append(_xml(k, v))
        elif isinstance(v, list):
            parts.append(f"<{k}>" + "".join(_xml(tag_i, val) for tag_i, val in v) + f"</{k}>")
        else:
            parts.append(f"<{k}>{escape(str(v))}</{k}>")
    return f"<{tag}>" + "".join(parts) + f"</{tag}>"


class XdfWriter:
    """Writes one XDF file.  ``add_stream`` -> id; ``write_samples``; ``write_clock_offset``; ``close``."""

    def __init__(self, dest: str | Path | BinaryIO, header: dict | None = None, hostname: str = "",
                 session_id: str = "default"):
        self.hostname = hostname
        self.session_id = session_id
        if isinstance(dest, (str, Path)):
            self._f: BinaryIO = open(dest, "wb")  # noqa: SIM115 - closed in close()
            self._own = True
        else:
            self._f, self._own = dest, False
        self._f.write(b"XDF:")
        hdr = {"version": "1.0"}
        hdr.update(header or {})
        self._chunk(TAG_FILE_HEADER, ('<?xml version="1.0"?>' + _xml("info", hdr)).encode())
        self._streams: dict[int, dict] = {}

    def _chunk(self, tag: int, content: bytes) -> None:
        self._f.write(_varlen(len(content) + 2) + struct.pack("<H", tag) + content)

    def add_stream(self, info: StreamInfo, stream_id: int | None = None, desc: dict | None = None) -> int:
        sid = stream_id if stream_id is not None else len(self._streams) + 1
        if sid in self._streams:
            raise ValueError(f"XDF stream id {sid} already used")
        fmt = "int16" if info.channel_format == "uint8" else info.channel_format
        d = {"name": info.name, "type": info.type, "channel_count": info.channel_count,
             "nominal_srate": repr(float(info.nominal_srate)), "channel_format": fmt, "source_id": info.source_id,
             "version": "1.1", "created_at": "0", "uid": str(uuid.uuid4()), "session_id": self.session_id,
             "hostname": self.hostname}
        chans = [("channel", {"label": lab, **({"unit": info.channel_units[i]} if info.channel_units else {})})
                 for i, lab in enumerate(info.channel_labels)]
        desc_d: dict = dict(desc or {})
        if chans:
            desc_d["channels"] = chans
        if info.quality:
            desc_d["synchub_quality"] = dict(info.quality)
        d["desc"] = desc_d
        self._chunk(TAG_STREAM_HEADER, struct.pack("<I", sid) + ('<?xml version="1.0"?>' + _xml("info", d)).encode())
        self._streams[sid] = {"info": info, "first": None, "last": None, "count": 0, "offsets": []}
        return sid

    def write_samples(self, stream_id: int, times_ns, data) -> None:
        st = self._streams[stream_id]
        info: StreamInfo = st["info"]
        t = np.asarray(times_ns, dtype=np.int64)
        n = len(t)
        if n == 0:
            return
        secs = t / 1e9
        if info.channel_format == "string":
            body = bytearray()
            for ts, sample in zip(secs.tolist(), data, strict=False):
                body += b"\x08" + struct.pack("<d", ts)
                values = [sample] if isinstance(sample, str) else list(sample)
                for v in values:
                    b = str(v).encode("utf-8")
                    body += _varlen(len(b)) + b
            payload = bytes(body)
        else:
            fmt = XDF_FORMATS[info.channel_format]
            dt = np.dtype([("n", "u1"), ("t", "<f8"), ("v", fmt, (info.channel_count,))])
            rec = np.empty(n, dtype=dt)
            rec["n"] = 8
            rec["t"] = secs
            rec["v"] = np.asarray(data).reshape(n, info.channel_count)
            payload = rec.tobytes()
        self._chunk(TAG_SAMPLES, struct.pack("<I", stream_id) + _varlen(n) + payload)
        if st["first"] is None:
            st["first"] = float(secs[0])
        st["last"] = float(secs[-1])
        st["count"] += n

    def write_clock_offset(self, stream_id: int, collection_ns: int, offset_ns: int) -> None:
        """A clock offset measurement: at recorder time ``collection_ns`` the stream's clock needed ``offset_ns``
        added to read the recorder's clock (LSL's time_correction)."""
        st = self._streams[stream_id]
        c, o = collection_ns / 1e9, offset_ns / 1e9
        self._chunk(TAG_CLOCK_OFFSET, struct.pack("<Idd", stream_id, c, o))
        st["offsets"].append((c, o))

    def write_boundary(self) -> None:
        self._chunk(TAG_BOUNDARY, BOUNDARY_UUID)

    def close(self) -> None:
        for sid, st in self._streams.items():
            d = {"first_timestamp": repr(st["first"] or 0.0), "last_timestamp": repr(st["last"] or 0.0),
                 "sample_count": st["count"],
                 "clock_offsets": [("offset", {"time": repr(c), "value": repr(o)}) for c, o in st["offsets"]]}
            self._chunk(TAG_STREAM_FOOTER,
                        struct.pack("<I", sid) + ('<?xml version="1.0"?>' + _xml("info", d)).encode())
        self._f.flush()
        if self._own:
            self._f.close()

    def __enter__(self) -> XdfWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
