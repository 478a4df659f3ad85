"""The sync box wire protocol (firmware/PROTOCOL.md), as a pure codec: no I/O.

A frame on the wire is ``COBS(type u8, seq u16, payload, crc u16) 0x00``; integers are little-endian and the
CRC is CRC-16/CCITT-FALSE (``crc.Crc16.IBM_3740``: poly 0x1021, init 0xFFFF, no reflection, no final xor)
over type, seq and payload.  ``FrameDecoder`` splits a byte stream into checked frames and counts what it
rejects; ``parse`` turns a frame into a message dataclass.  Device times are Timer1 ticks (64-bit).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from cobs import cobs

from synchub.drivers.serial.frames import crc16  # the same CRC-16/CCITT-FALSE as the serial imu-bin frames

PROTO_VERSION = 1

# host -> device
CMD_PING = 0x01
CMD_SET = 0x02
CMD_START = 0x03
CMD_STOP = 0x04
CMD_RESET = 0x05
CMD_VERSION = 0x06
CMD_STATUS = 0x07

# device -> host
MSG_PULSE = 0x81
MSG_EDGE = 0x82
MSG_PONG = 0x83
MSG_STATUS = 0x84
MSG_VERSION = 0x85
MSG_ERROR = 0x86
MSG_ACK = 0x87

MODE_PULSE = 0
MODE_BARCODE = 1
MODE_HARP = 2
MODES = {"pulse": MODE_PULSE, "barcode": MODE_BARCODE, "harp": MODE_HARP}

SEQ_NONE = 0xFFFF

ERRORS = {
    1: "bad CRC",
    2: "bad COBS",
    3: "frame too short",
    4: "frame too long",
    5: "unknown command",
    6: "bad payload length",
    7: "value out of range",
    8: "busy (stop first)",
    9: "receive overrun",
    10: "too fast for the sync box",
}
ERR_VALUE = 7
ERR_TIMING = 10

# ERROR detail of a refused SET (ERR_VALUE or ERR_TIMING): the limit that failed
LIM_MODE, LIM_WIDTH, LIM_GAP, LIM_BIT, LIM_PERIOD = 0, 1, 2, 3, 4
LIMIT_NAMES = {LIM_MODE: "mode", LIM_WIDTH: "pulse width", LIM_GAP: "pulse period - width", LIM_BIT: "barcode bit",
               LIM_PERIOD: "period"}

MAX_FRAME = 64  # longest COBS-encoded frame either side sends or accepts, delimiter excluded

def encode_frame(type_: int, seq: int, payload: bytes = b"") -> bytes:
    """A complete wire frame: COBS-encoded body plus the 0x00 delimiter."""
    body = struct.pack("<BH", type_ & 0xFF, seq & 0xFFFF) + bytes(payload)
    body += struct.pack("<H", crc16(body))
    return cobs.encode(body) + b"\x00"


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


@dataclass
class FrameDecoder:
    """Split a byte stream into CRC-checked frames.  Bad input is counted in ``rejected`` (by reason), never
    raised."""

    max_frame: int = MAX_FRAME
    rejected: dict[str, int] = field(default_factory=dict)
    _buf: bytearray = field(default_factory=bytearray)
    _overflow: bool = False

    def _reject(self, why: str) -> None:
        self.rejected[why] = self.rejected.get(why, 0) + 1

    def feed(self, data: bytes) -> list[Frame]:
        frames = []
        start = 0
        data = bytes(data)
        while True:
            z = data.find(b"\x00", start)
            if z < 0:
                rest = data[start:]
                if len(self._buf) + len(rest) > self.max_frame:
                    self._overflow = True
                    self._buf.clear()
                else:
                    self._buf += rest
                break
            part = data[start:z]
            start = z + 1
            if self._overflow or len(self._buf) + len(part) > self.max_frame:
                self._reject("too long")
            elif self._buf or part:
                f = self._decode(bytes(self._buf) + part)
                if f is not None:
                    frames.append(f)
            self._buf.clear()
            self._overflow = False
        return frames

    def _decode(self, enc: bytes) -> Frame | None:
        try:
            body = cobs.decode(enc)
        except cobs.DecodeError:
            self._reject("bad cobs")
            return None
        if len(body) < 5:
            self._reject("too short")
            return None
        (crc,) = struct.unpack_from("<H", body, len(body) - 2)
        if crc16(body[:-2]) != crc:
            self._reject("bad crc")
            return None
        type_, seq = struct.unpack_from("<BH", body)
        return Frame(type_, seq, body[3:-2])


# ---------------------------------------------------------------- messages (device -> host)
@dataclass(frozen=True)
class Pulse:
    seq: int
    index: int  # pulses/codes emitted since the last counter reset
    value: int  # barcode counter or Harp seconds (0 in pulse mode)
    t: int  # device ticks of the code's first edge


@dataclass(frozen=True)
class Edge:
    seq: int
    channel: int
    rising: bool
    lost_after: int  # edges after this one that could not be timestamped
    index: int  # captured edges since the last counter reset
    t: int


@dataclass(frozen=True)
class Pong:
    seq: int
    req_seq: int
    token: int
    t_rx: int  # device ticks when the PING's delimiter was received
    t_tx: int  # device ticks when the PONG was queued


@dataclass(frozen=True)
class Status:
    seq: int
    req_seq: int  # SEQ_NONE for the boot announcement
    running: bool
    mode: int
    reset_cause: int  # MCUSR at boot: 1 power-on, 2 external, 4 brown-out, 8 watchdog
    pulses: int
    edges: int
    lost_edges: int
    late_edges: int
    rx_errors: int
    tx_dropped: int
    ev_dropped: int
    t: int
    period: int
    width: int
    bit: int


@dataclass(frozen=True)
class Version:
    seq: int
    req_seq: int
    proto: int
    major: int
    minor: int
    prescaler: int
    f_cpu: int
    ticks_per_s: int
    baud: int
    name: str


@dataclass(frozen=True)
class Error:
    seq: int
    req_seq: int
    code: int
    detail: int

    @property
    def reason(self) -> str:
        why = ERRORS.get(self.code, f"error {self.code}")
        if self.code in (ERR_VALUE, ERR_TIMING) and self.detail in LIMIT_NAMES:
            why += f" ({LIMIT_NAMES[self.detail]})"
        return why


@dataclass(frozen=True)
class Ack:
    seq: int
    req_seq: int
    cmd: int


@dataclass(frozen=True)
class Unknown:
    seq: int
    type: int
    payload: bytes


Message = Pulse | Edge | Pong | Status | Version | Error | Ack | Unknown

_LAYOUTS = {
    MSG_PULSE: ("<IIQ", lambda s, a: Pulse(s, *a)),
    MSG_EDGE: ("<BBHIQ", lambda s, a: Edge(s, a[0], bool(a[1]), a[2], a[3], a[4])),
    MSG_PONG: ("<HIQQ", lambda s, a: Pong(s, *a)),
    MSG_STATUS: ("<HBBBIIIHHHHQIII", lambda s, a: Status(s, a[0], bool(a[1]), *a[2:])),
    MSG_ERROR: ("<HBB", lambda s, a: Error(s, *a)),
    MSG_ACK: ("<HB", lambda s, a: Ack(s, *a)),
}


def parse(frame: Frame) -> Message | None:
    """A message from a checked frame; ``None`` when the payload does not fit its type (caller counts it);
    ``Unknown`` for a type this host does not know (a newer firmware)."""
    if frame.type == MSG_VERSION:
        if len(frame.payload) < 18:
            return None
        a = struct.unpack_from("<HBBBBIII", frame.payload)
        name = frame.payload[18:].decode("ascii", "replace")
        return Version(frame.seq, *a, name)
    layout = _LAYOUTS.get(frame.type)
    if layout is None:
        return Unknown(frame.seq, frame.type, frame.payload)
    fmt, make = layout
    if len(frame.payload) != struct.calcsize(fmt):
        return None
    return make(frame.seq, struct.unpack(fmt, frame.payload))


# ---------------------------------------------------------------- commands (host -> device)
def ping(seq: int, token: int) -> bytes:
    return encode_frame(CMD_PING, seq, struct.pack("<I", token & 0xFFFFFFFF))


def set_config(seq: int, mode: int, period: int, width: int, bit: int) -> bytes:
    return encode_frame(CMD_SET, seq, struct.pack("<BIII", mode, period, width, bit))


def simple(seq: int, cmd: int) -> bytes:
    """START, STOP, RESET, VERSION or STATUS (no payload)."""
    return encode_frame(cmd, seq)


def wire_bytes(frame_len: int) -> int:
    """Bytes on the wire for a frame of ``frame_len`` raw bytes (type..crc): COBS overhead + delimiter."""
    return frame_len + 1 + frame_len // 254 + 1


# ---------------------------------------------------------------- SET limits (PROTOCOL.md, "SET limits")
MIN_GAP_CYCLES = 1024  # least time between two output edges, CPU cycles
PULSE_WIRE_BITS = 230  # one PULSE frame on the UART: 23 bytes, 10 bits each (8N1)
MAX_PERIOD = 0x7FFFFFFF
BARCODE_SLOTS = 45  # a barcode period is at least 45 bit times: 35 bits and 10 idle


@dataclass(frozen=True)
class Limits:
    """What a sync box build can meet, in its Timer1 ticks (the firmware computes the same numbers)."""

    ticks_per_s: int
    min_gap: int  # least ticks between two output edges (pulse width, period - width, barcode bit)
    min_period: int  # least ticks per code: its PULSE frame may use at most half of the UART


def limits(f_cpu: int = 16_000_000, prescaler: int = 1, baud: int = 1_000_000) -> Limits:
    """The limits of a build (f_cpu, Timer1 prescaler and baud, as its VERSION reply tells them)."""
    def ticks(cycles: int) -> int:
        return -(-cycles // prescaler)

    return Limits(f_cpu // prescaler, ticks(MIN_GAP_CYCLES), ticks(-(-2 * PULSE_WIRE_BITS * f_cpu // baud)))


def check_config(mode: int, period: int, width: int, bit: int, lim: Limits) -> tuple[int, int] | None:
    """``None`` when the box accepts this SET, else the (ERROR code, detail) it answers with."""
    if mode == MODE_HARP:
        return None  # period, width and bit are ignored
    if mode not in (MODE_PULSE, MODE_BARCODE):
        return ERR_VALUE, LIM_MODE
    if period > MAX_PERIOD:
        return ERR_VALUE, LIM_PERIOD
    if mode == MODE_PULSE:
        if width < lim.min_gap:
            return ERR_TIMING, LIM_WIDTH
        if period - width < lim.min_gap:
            return ERR_TIMING, LIM_GAP
    else:
        if bit < lim.min_gap:
            return ERR_TIMING, LIM_BIT
        if bit > MAX_PERIOD // BARCODE_SLOTS:
            return ERR_VALUE, LIM_BIT
        if period < BARCODE_SLOTS * bit:
            return ERR_VALUE, LIM_PERIOD
    if period < lim.min_period:
        return ERR_TIMING, LIM_PERIOD
    return None


def explain_config(mode: int, period: int, width: int, bit: int, lim: Limits) -> str:
    """'' when the box can meet this SET, else one line saying which limit it breaks, in us and ticks."""
    bad = check_config(mode, period, width, bit, lim)
    if bad is None:
        return ""
    code, which = bad

    def us(ticks: int) -> str:
        return f"{ticks * 1e6 / lim.ticks_per_s:g} us ({ticks} ticks)"

    if which == LIM_MODE:
        return f"unknown sync box mode {mode}"
    if which == LIM_WIDTH:
        return f"pulse width {us(width)} is below the sync box's minimum of {us(lim.min_gap)}"
    if which == LIM_GAP:
        return (f"pulse period - width {us(period - width)} is below the sync box's minimum of {us(lim.min_gap)} "
                "(the output needs that long between edges)")
    if which == LIM_BIT and code == ERR_TIMING:
        return f"barcode bit {us(bit)} is below the sync box's minimum of {us(lim.min_gap)}"
    if which == LIM_BIT:
        return f"barcode bit {us(bit)} is too long (period would exceed {us(MAX_PERIOD)})"
    if period > MAX_PERIOD:
        return f"period {us(period)} is above the sync box's maximum of {us(MAX_PERIOD)}"
    if code == ERR_VALUE:
        return f"barcode period {us(period)} is shorter than {BARCODE_SLOTS} bits ({us(BARCODE_SLOTS * bit)})"
    return (f"period {us(period)} is below the sync box's minimum of {us(lim.min_period)} (each code's PULSE "
            "report may use at most half of the serial link at this baud rate)")
