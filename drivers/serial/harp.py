"""Harp (harp-tech.org) devices: the binary device protocol, a pure incremental decoder.  (The Harp clock signal
is decoded by ``synchub.agent.clock.harp_clock``.)

**Binary protocol** (``BinaryProtocol-8bit.md``): ``MessageType u8 | Length u8 [255 + u16 ExtendedLength] |
Address u8 | Port u8 | PayloadType u8 | [Seconds u32 | Microseconds u16 (units of 32 us)] | Payload | Checksum u8``.
Length counts the bytes after it; PayloadType: bit 7 signed, bit 6 float, bit 4 has-timestamp, bits 0-3 the element
size (1, 2, 4, 8); MessageType 1 Read, 2 Write, 3 Event, bit 3 (0x08) error; Checksum = sum of all preceding bytes
mod 256.  ``HarpMessageDecoder`` parses a device's byte stream (``format = "harp"`` on the serial driver) into
``Record`` items of one register: device time = the message's Harp timestamp in ns, channels = the payload's
elements.  Messages of other registers, or without a timestamp, are counted once per kind and skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from synchub.agent.core.settings import setting

from .records import BadItem, Note, Record, RecordSettings

NS = 1_000_000_000


# ---------------------------------------------------------------------------------------------- binary messages
READ, WRITE, EVENT = 1, 2, 3
ERROR_FLAG = 0x08
HAS_TIMESTAMP = 0x10
_ELEMENT = {(1, 0): "B", (1, 0x80): "b", (2, 0): "H", (2, 0x80): "h", (4, 0): "I", (4, 0x80): "i", (8, 0): "Q",
            (8, 0x80): "q", (4, 0x40): "f"}
MAX_MESSAGE = 4096


def harp_time_ns(seconds: int, micros32: int) -> int:
    """A Harp timestamp (seconds u32, microseconds / 32 as u16) in ns."""
    return int(seconds) * NS + int(micros32) * 32_000


def encode_harp_message(msg_type: int, address: int, payload_type: int, values, seconds: int | None = None,
                        micros32: int = 0, port: int = 0xFF) -> bytes:
    """A Harp message (for tests and simulated devices)."""
    size = payload_type & 0x0F
    fmt = "<" + _ELEMENT[(size, payload_type & 0xC0)] * len(values)
    body = bytes((address, port, payload_type | (HAS_TIMESTAMP if seconds is not None else 0)))
    if seconds is not None:
        body += struct.pack("<IH", seconds, micros32)
    body += struct.pack(fmt, *values)
    n = len(body) + 1
    head = bytes((msg_type, n)) if n < 255 else bytes((msg_type, 255)) + struct.pack("<H", n)
    msg = head + body
    return msg + bytes((sum(msg) & 0xFF,))


@dataclass(frozen=True, kw_only=True)
class HarpSettings(RecordSettings):
    register: int = setting(doc="register address whose messages make this stream (e.g. an analog-input event)",
                            min=0, max=255)
    message_types: tuple[int, ...] = setting((EVENT,), doc="message types recorded: 1 read, 2 write, 3 event")
    time: str = setting("harp_time", doc="(fixed) the message's Harp timestamp")
    time_unit: str = setting("ns", choices=("ns",), doc="(fixed)")
    channels: tuple[str, ...] = setting(("value",), doc="a name for each payload element, in order")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.time != "harp_time" or self.text or self.seq or self.time_bits:
            raise ValueError("harp: time, time_bits, text and seq are fixed by the protocol")
        bad = [t for t in self.message_types if t not in (READ, WRITE, EVENT)]
        if bad or not self.message_types:
            raise ValueError(f"message_types must be among 1 (read), 2 (write), 3 (event); got {self.message_types}")

    def channel_names(self) -> tuple[str, ...]:
        return self.channels


class HarpMessageDecoder:
    """``feed(data) -> items``: ``Record`` per message of the register, ``BadItem``/``Note`` otherwise."""

    def __init__(self, settings: HarpSettings):
        self.s = settings
        self._buf = bytearray()
        self._noted: set[tuple] = set()
        self.messages = 0

    def _note(self, key: tuple, reason: str, detail: str, out: list) -> None:
        if key not in self._noted:
            self._noted.add(key)
            out.append(Note(reason, detail))

    def feed(self, data: bytes) -> list:
        self._buf += data
        buf = self._buf
        out: list = []
        pos = junk = 0
        while len(buf) - pos >= 2:
            mtype, n = buf[pos], buf[pos + 1]
            head = 2
            if n == 255:
                if len(buf) - pos < 4:
                    break
                n = struct.unpack_from("<H", buf, pos + 2)[0]
                head = 4
            if (mtype & ~ERROR_FLAG) not in (READ, WRITE, EVENT) or not 4 <= n <= MAX_MESSAGE:
                junk += 1
                pos += 1
                continue
            end = pos + head + n
            if len(buf) < end:
                break
            msg = bytes(buf[pos:end])
            if sum(msg[:-1]) & 0xFF != msg[-1] or not self._size_ok(msg[head:]):
                junk += 1
                pos += 1
                continue
            if junk:
                out.append(BadItem("garbage", junk, lost=0))
                junk = 0
            self._message(mtype, msg[head:-1], out)
            pos = end
        if junk:
            out.append(BadItem("garbage", junk, lost=0))
        del buf[:pos]
        if len(buf) > 2 * MAX_MESSAGE:
            out.append(BadItem("overflow", len(buf), lost=0))
            buf.clear()
        return out

    @staticmethod
    def _size_ok(body: bytes) -> bool:
        """Address, port, payload type, [timestamp], payload, checksum: the payload a whole number of elements."""
        ptype = body[2]
        size = ptype & 0x0F
        if size not in (1, 2, 4, 8) or (ptype & 0xC0) == 0xC0:
            return False
        payload = len(body) - 4 - (6 if ptype & HAS_TIMESTAMP else 0)
        return payload >= 0 and payload % size == 0

    def _message(self, mtype: int, body: bytes, out: list) -> None:
        address, port, ptype = body[0], body[1], body[2]
        kind = mtype & ~ERROR_FLAG
        if address != self.s.register or kind not in self.s.message_types:
            self._note(("other", address, kind), "other register", f"type {kind} messages of register {address} "
                       f"(recording register {self.s.register})", out)
            return
        if mtype & ERROR_FLAG:
            out.append(BadItem("device error", len(body) + 3, f"error reply of register {address}", lost=0))
            return
        if not ptype & HAS_TIMESTAMP:
            self._note(("untimed", address), "no timestamp", f"register {address} messages without a timestamp "
                       "are skipped", out)
            return
        seconds, micros32 = struct.unpack_from("<IH", body, 3)
        code = _ELEMENT.get((ptype & 0x0F, ptype & 0xC0))
        payload = body[9:]
        values = struct.unpack("<" + code * (len(payload) // (ptype & 0x0F)), payload)
        if len(values) != len(self.s.channels):
            out.append(BadItem(f"expected {len(self.s.channels)} values, got {len(values)}", len(body) + 3,
                               f"register {address}", lost=1))
            return
        self.messages += 1
        out.append(Record({"harp_time": harp_time_ns(seconds, micros32), "port": port,
                           **dict(zip(self.s.channels, values, strict=True))}))
