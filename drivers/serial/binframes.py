"""Binary frames described in config: a ``struct`` payload, COBS or length-prefix framing, a CRC from the ``crc``
package's catalogue.  A pure incremental decoder, so a simple Arduino sketch needs no custom parser.

Payload: ``struct`` format (``struct`` module syntax; little-endian ``<`` unless the format starts with ``<``, ``>``
or ``!``), one name per unpacked item in ``fields``.  The time field is the device's counter (``time_bits``,
``time_unit``/``tick_hz``: e.g. ``micros()`` is 32 bits of us, wrapping every 71.6 min, unwrapped by the one
unwrapper); ``seq`` names a sample counter.  ``scale`` multiplies each channel (raw ADC counts -> units).

Framing:

``cobs``
    ``cobs(payload + crc) 00``: each frame ends with a zero byte (the ``cobs`` package's encoding).  Resync is
    free: the next zero byte ends the next frame.
``length``
    ``sync | length | payload | crc``: optional ``sync`` bytes (hex, e.g. ``"A55A"``), the payload length in
    ``length_bytes`` (1 or 2, the payload's byte order), the payload, the CRC.  After a bad frame the decoder
    moves one byte on and looks for the next sync (so garbage never loses more than itself plus one frame).

CRC (``crc``): ``none``, ``sum8`` (sum of bytes mod 256, as Harp), ``xor8`` (as NMEA), or a ``crc`` catalogue
entry (``CRC_NAMES``: e.g. ``crc16-ibm-3740`` = CRC-16/CCITT-FALSE, ``crc16-modbus``, ``crc32``, ``crc8-ccitt``),
over the payload (``crc_covers_header``: also the sync and length bytes), appended in the payload's byte order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc as crclib
from cobs import cobs

from synchub.agent.core.settings import setting

from .frames import SafeCalculator
from .records import BadItem, Record, RecordSettings

MAX_FRAME = 1024


def _crc_catalogue() -> dict[str, tuple[object, int]]:
    out: dict[str, tuple[object, int]] = {}
    for family, width in ((crclib.Crc8, 1), (crclib.Crc16, 2), (crclib.Crc32, 4), (crclib.Crc64, 8)):
        base = family.__name__.lower()
        for member in family:
            name = base if member.name.lower() == base else f"{base}-{member.name.lower().replace('_', '-')}"
            out[name] = (member, width)
    return out


_CATALOGUE = _crc_catalogue()
CRC_NAMES = ("none", "sum8", "xor8", *_CATALOGUE)


class Checksum:
    """One of ``CRC_NAMES``: ``size`` bytes, ``value(data) -> int``."""

    def __init__(self, name: str):
        self.name = name
        if name == "none":
            self.size, self._calc = 0, None
        elif name in ("sum8", "xor8"):
            self.size, self._calc = 1, None
        else:
            member, self.size = _CATALOGUE[name]
            self._calc = SafeCalculator(member)  # a crc.Calculator is not safe to share between threads

    def value(self, data: bytes) -> int:
        if self.name == "sum8":
            return sum(data) & 0xFF
        if self.name == "xor8":
            x = 0
            for b in data:
                x ^= b
            return x
        if self._calc is None:
            return 0
        return self._calc.checksum(bytes(data))


@dataclass(frozen=True, kw_only=True)
class FrameSettings(RecordSettings):
    struct: str = setting(doc="payload layout, struct module syntax (e.g. \"<IHhhh\"; little-endian by default)")
    fields: tuple[str, ...] = setting(doc="a name for each value the struct format unpacks, in order")
    framing: str = setting("cobs", choices=("cobs", "length"), doc="cobs: zero-delimited COBS frames; length: "
                                                                   "[sync] length payload crc")
    sync: str = setting("", doc="length framing: sync bytes before each frame, hex (e.g. \"A55A\")")
    length_bytes: int = setting(1, min=1, max=2, doc="length framing: size of the length field")
    crc: str = setting("crc16-ibm-3740", choices=CRC_NAMES, doc="checksum after the payload")
    crc_covers_header: bool = setting(False, doc="length framing: the CRC also covers the sync and length bytes")
    scale: tuple[float, ...] = setting((), doc="factor per channel (empty: 1)")
    time_unit: str = setting("us", choices=("s", "ms", "us", "ns", "ticks"),
                             doc="unit of the time field (ticks: at tick_hz)")

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            size = struct.calcsize(self.byte_struct)
            n = len(struct.unpack(self.byte_struct, bytes(size)))
        except struct.error as exc:
            raise ValueError(f"struct {self.struct!r} is not a struct format: {exc}") from None
        if size > MAX_FRAME:
            raise ValueError(f"struct {self.struct!r} is {size} bytes; at most {MAX_FRAME}")
        if n != len(self.fields):
            raise ValueError(f"struct {self.struct!r} unpacks {n} values but fields names {len(self.fields)}")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError("fields has duplicate names")
        for what, name in (("time", self.time), ("seq", self.seq), *(("channels", c) for c in self.channels)):
            if name and name not in self.fields:
                raise ValueError(f"{what}: no field {name!r}; fields: {', '.join(self.fields)}")
        if self.text:
            raise ValueError("binary frames carry numbers: text is not allowed")
        if self.time and self.time_bits == 0:
            raise ValueError("give time_bits: the width of the device's counter in the time field (it wraps)")
        try:
            bytes.fromhex(self.sync)
        except ValueError:
            raise ValueError(f"sync {self.sync!r} is not hex bytes") from None
        if self.framing == "cobs" and self.sync:
            raise ValueError("sync is for framing = 'length' (COBS frames end with a zero byte)")
        if self.scale and len(self.scale) != len(self.channel_names()):
            raise ValueError(f"scale has {len(self.scale)} factors for {len(self.channel_names())} channels")
        if self.length_bytes == 1 and size > 255:
            raise ValueError("a payload over 255 bytes needs length_bytes = 2")

    @property
    def byte_struct(self) -> str:
        return self.struct if self.struct[:1] in "<>!=@" else "<" + self.struct

    def channel_names(self) -> tuple[str, ...]:
        return self.channels or tuple(f for f in self.fields if f not in (self.time, self.seq))


class FrameDecoder:
    """``feed(data) -> items`` of ``Record`` (field name -> number, channels scaled) and ``BadItem``."""

    def __init__(self, settings: FrameSettings):
        self.s = settings
        self.fmt = struct.Struct(settings.byte_struct)
        self.crc = Checksum(settings.crc)
        self.order = "big" if self.fmt.format[:1] in (">", "!") else "little"
        self.sync = bytes.fromhex(settings.sync)
        self.scale = dict(zip(settings.channel_names(), settings.scale or (), strict=False))
        self._buf = bytearray()
        self.frames = 0

    def feed(self, data: bytes) -> list:
        self._buf += data
        out = self._cobs() if self.s.framing == "cobs" else self._length()
        if len(self._buf) > 4 * MAX_FRAME:
            out.append(BadItem("overflow", len(self._buf), lost=0))
            self._buf.clear()
        return out

    def _payload(self, body: bytes, header: bytes = b"") -> object:
        """Payload + CRC -> Record or BadItem."""
        n = self.fmt.size
        if len(body) != n + self.crc.size:
            return BadItem("bad length", len(body), f"{len(body)} bytes, expected {n + self.crc.size}", lost=0)
        payload, tail = body[:n], body[n:]
        if self.crc.size:
            covered = header + payload if self.s.crc_covers_header else payload
            if int.from_bytes(tail, self.order) != self.crc.value(covered):
                return BadItem("crc", len(body), lost=0)
        values = self.fmt.unpack(payload)
        fields = dict(zip(self.s.fields, values, strict=True))
        for name, k in self.scale.items():
            fields[name] = fields[name] * k
        self.frames += 1
        return Record(fields)

    def _cobs(self) -> list:
        out: list = []
        while True:
            i = self._buf.find(0)
            if i < 0:
                if len(self._buf) > MAX_FRAME + 16:
                    out.append(BadItem("no frame end", len(self._buf), lost=0))
                    self._buf.clear()
                return out
            raw = bytes(self._buf[:i])
            del self._buf[: i + 1]
            if not raw:
                continue
            try:
                body = cobs.decode(raw)
            except cobs.DecodeError as exc:
                out.append(BadItem("cobs", len(raw), str(exc), lost=0))
                continue
            out.append(self._payload(body))

    def _length(self) -> list:
        out: list = []
        buf = self._buf
        sync, lb, csize = self.sync, self.s.length_bytes, self.crc.size
        pos = junk = 0
        while True:
            if sync:
                i = buf.find(sync, pos)
                if i < 0:
                    keep = len(buf) - len(sync) + 1  # a sync may straddle the next read
                    keep = max(pos, keep)
                    junk += keep - pos
                    pos = keep
                    break
                junk += i - pos
                pos = i
            head = len(sync) + lb
            if len(buf) - pos < head:
                break
            n = int.from_bytes(buf[pos + len(sync): pos + head], self.order)
            if n != self.fmt.size:
                junk += 1
                pos += 1
                continue
            end = pos + head + n + csize
            if len(buf) < end:
                break
            item = self._payload(bytes(buf[pos + head: end]), bytes(buf[pos: pos + head]))
            if isinstance(item, BadItem):
                junk += 1
                pos += 1
                continue
            if junk:
                out.append(BadItem("garbage", junk, lost=0))
                junk = 0
            out.append(item)
            pos = end
        if junk:
            out.append(BadItem("garbage", junk, lost=0))
        del buf[:pos]
        return out


def encode_frame(settings: FrameSettings, values) -> bytes:
    """The bytes a device following ``settings`` sends for ``values`` (for tests and simulated devices)."""
    fmt = struct.Struct(settings.byte_struct)
    payload = fmt.pack(*values)
    ck = Checksum(settings.crc)
    order = "big" if fmt.format[:1] in (">", "!") else "little"
    if settings.framing == "cobs":
        return cobs.encode(payload + ck.value(payload).to_bytes(ck.size, order)) + b"\x00"
    header = bytes.fromhex(settings.sync) + len(payload).to_bytes(settings.length_bytes, order)
    covered = header + payload if settings.crc_covers_header else payload
    return header + payload + ck.value(covered).to_bytes(ck.size, order)
