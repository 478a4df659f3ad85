"""Serial wire formats: pure encoders (used by the simulated devices) and pure incremental decoders (used by
``serial_stream``).  Decoders take bytes in any split, return parsed items in order, resynchronize after
garbage and never raise on bad input: every problem comes back as a ``Malformed`` item (counted by the caller).

imu-bin: binary frames, little-endian
---------------------------------------
::

    A5 5A | type u8 | len u8 | payload (len bytes) | crc16 u16
    crc16 = CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF; ``crc.Crc16.IBM_3740``) over type, len and payload

=======  ====================  =====================================================================
type     name                  payload
=======  ====================  =====================================================================
0x01     sample                tick u32, sample counter u16, 6 x i16 (accel x,y,z, gyro x,y,z)
0x02     trigger edge          tick u32 (device time of the edge on its input pin), edge counter u16,
                               level u8 (1 rising, 0 falling)
0x03     pong                  token u32 (echoed from the ping), tick u32 at receipt of the ping
0x10     ping (host->device)   token u32
=======  ====================  =====================================================================

Scales: accel ``i16 * ACCEL_LSB`` m/s^2 (+-16 g full scale), gyro ``i16 * GYRO_LSB`` rad/s (+-2000 dps).
The tick is the device's free-running 32-bit microsecond counter (wraps every 71.6 min); the sample counter
is 16-bit and increments per sample taken, so a skipped value means the device dropped samples.

tlm-nmea: ASCII telemetry, NMEA-like
------------------------------------
``$TLM,<ms ticks>,<seq>,<v1>,...,<vN>*HH\\r\\n`` where ``HH`` is the XOR of all characters between ``$`` and
``*`` in hex; ``seq`` is a 16-bit counter.  Pong: ``$PONG,<token>,<ms ticks>*HH\\r\\n``.

log-text: event log lines
-------------------------
``<us ticks> <LEVEL> <message>\\n`` with LEVEL in DEBUG/INFO/WARN/ERROR; printable ASCII only.
Pong: ``<us ticks> PONG <token>\\n``.

Ping (host -> device, round-trip probes)
----------------------------------------
Binary devices take the 0x10 ping frame; text devices take the line ``P<token>\\n`` (token: decimal u32).
The device stamps its tick at receipt and answers with a pong in its own format.  The simulated devices start
streaming once the host has sent any byte, or 150 ms after it opened the port (pyserial flushes input right
after opening; a device that streamed at once would lose bytes to that flush and the truth would not match).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np
from crc import Calculator, Crc16

SYNC = b"\xa5\x5a"
T_SAMPLE, T_EDGE, T_PONG, T_PING = 0x01, 0x02, 0x03, 0x10
PAYLOAD_LEN = {T_SAMPLE: 18, T_EDGE: 7, T_PONG: 8, T_PING: 4}
FRAME_OVERHEAD = 6  # sync 2 + type 1 + len 1 + crc 2
ACCEL_LSB = 16 * 9.80665 / 32768.0
GYRO_LSB = np.deg2rad(2000.0) / 32768.0
IMU_SCALE = np.array([ACCEL_LSB] * 3 + [GYRO_LSB] * 3, dtype=np.float64)
LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
MAX_LINE = 512

_CRC = Calculator(Crc16.IBM_3740, optimized=True)


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (check value 0x29B1 for b"123456789"); also the sync box protocol's CRC."""
    return int(_CRC.checksum(bytes(data)))


# ---------------------------------------------------------------------------------------------- items
@dataclass(frozen=True)
class ImuSample:
    tick: int
    counter: int
    raw: tuple[int, ...]  # 6 x int16

    def values(self) -> np.ndarray:
        return np.asarray(self.raw, dtype=np.float64) * IMU_SCALE


@dataclass(frozen=True)
class EdgeFrame:
    tick: int
    counter: int
    level: int


@dataclass(frozen=True)
class Pong:
    token: int
    tick: int


@dataclass(frozen=True)
class Ping:
    token: int


@dataclass(frozen=True)
class TlmSample:
    tick: int
    seq: int
    values: tuple[float, ...]


@dataclass(frozen=True)
class LogLine:
    tick: int
    level: str
    message: str


@dataclass(frozen=True)
class Malformed:
    reason: str
    nbytes: int
    detail: str = ""


# ---------------------------------------------------------------------------------------------- imu-bin encode
def _frame(ftype: int, payload: bytes) -> bytes:
    body = bytes((ftype, len(payload))) + payload
    return SYNC + body + struct.pack("<H", crc16(body))


def encode_imu_sample(tick: int, counter: int, raw) -> bytes:
    return _frame(T_SAMPLE, struct.pack("<IH6h", tick & 0xFFFFFFFF, counter & 0xFFFF, *(int(v) for v in raw)))


def encode_edge(tick: int, counter: int, level: int) -> bytes:
    return _frame(T_EDGE, struct.pack("<IHB", tick & 0xFFFFFFFF, counter & 0xFFFF, 1 if level else 0))


def encode_pong(token: int, tick: int) -> bytes:
    return _frame(T_PONG, struct.pack("<II", token & 0xFFFFFFFF, tick & 0xFFFFFFFF))


def encode_bin_ping(token: int) -> bytes:
    return _frame(T_PING, struct.pack("<I", token & 0xFFFFFFFF))


def imu_to_raw(values: np.ndarray) -> np.ndarray:
    """Physical (n, 6) accel m/s^2 + gyro rad/s -> int16 counts (saturating, like a real IMU)."""
    return np.clip(np.rint(np.asarray(values, dtype=np.float64) / IMU_SCALE), -32768, 32767).astype(np.int16)


def encode_imu_samples(ticks, counters, values) -> list[bytes]:
    """One frame per sample of physical ``values`` (n, 6)."""
    raw = imu_to_raw(values)
    return [encode_imu_sample(int(t), int(c), r) for t, c, r in zip(ticks, counters, raw.tolist(), strict=True)]


# ---------------------------------------------------------------------------------------------- imu-bin decode
class ImuDecoder:
    """Incremental decoder of imu-bin frames (also parses host pings, for the device side)."""

    MAX_BUFFER = 4096

    def __init__(self) -> None:
        self._buf = bytearray()
        self.frames = 0
        self.errors = 0
        self.skipped_bytes = 0

    def feed(self, data: bytes) -> list:
        self._buf += data
        out: list = []
        buf = self._buf
        pos = 0
        junk = 0  # garbage bytes skipped since the last good frame
        reason = ""
        while True:
            i = buf.find(SYNC, pos)
            if i < 0:
                # a trailing lone sync byte may start the next frame (unless it belongs to a frame already parsed)
                keep = max(pos, len(buf) - 1) if buf.endswith(SYNC[:1]) else len(buf)
                junk += keep - pos
                pos = keep
                reason = reason or "garbage"
                break
            if i > pos:
                junk += i - pos
                reason = reason or "garbage"
            pos = i
            if len(buf) - pos < 4:
                break
            ftype, plen = buf[pos + 2], buf[pos + 3]
            if PAYLOAD_LEN.get(ftype) != plen:
                junk += 1
                pos += 1
                reason = reason or ("bad type" if ftype not in PAYLOAD_LEN else "bad length")
                continue
            end = pos + 4 + plen + 2
            if len(buf) < end:
                break
            body = bytes(buf[pos + 2 : end - 2])
            if struct.unpack_from("<H", buf, end - 2)[0] != crc16(body):
                junk += 1
                pos += 1
                reason = reason or "crc"
                continue
            if junk:
                out.append(self._malformed(reason, junk))
                junk, reason = 0, ""
            out.append(_parse_frame(ftype, body[2:]))
            self.frames += 1
            pos = end
        if junk:
            out.append(self._malformed(reason, junk))
        del buf[:pos]
        if len(buf) > self.MAX_BUFFER:  # cannot happen with valid lengths; guard anyway
            out.append(self._malformed("overflow", len(buf)))
            buf.clear()
        return out

    def _malformed(self, reason: str, n: int) -> Malformed:
        self.errors += 1
        self.skipped_bytes += n
        return Malformed(reason, n)


def _parse_frame(ftype: int, payload: bytes):
    if ftype == T_SAMPLE:
        tick, counter, *raw = struct.unpack("<IH6h", payload)
        return ImuSample(tick, counter, tuple(raw))
    if ftype == T_EDGE:
        tick, counter, level = struct.unpack("<IHB", payload)
        return EdgeFrame(tick, counter, 1 if level else 0)
    if ftype == T_PONG:
        return Pong(*struct.unpack("<II", payload))
    return Ping(struct.unpack("<I", payload)[0])


# ---------------------------------------------------------------------------------------------- text lines
class _LineSplitter:
    """Splits bytes into lines; over-long lines become Malformed."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._overlong = False
        self.lines = 0
        self.errors = 0

    def split(self, data: bytes) -> list:
        self._buf += data
        out: list = []
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                if len(self._buf) > MAX_LINE:
                    out.append(self._bad("line too long", len(self._buf)))
                    self._buf.clear()
                    self._overlong = True
                return out
            line = bytes(self._buf[:i])
            del self._buf[: i + 1]
            if self._overlong:  # the tail of an over-long line: already counted
                self._overlong = False
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if line:
                out.append(line)

    def _bad(self, reason: str, n: int, detail: str = "") -> Malformed:
        self.errors += 1
        return Malformed(reason, n, detail)


def nmea_checksum(body: str) -> int:
    c = 0
    for b in body.encode("ascii"):
        c ^= b
    return c


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.1f}"


def encode_tlm(tick_ms: int, seq: int, values) -> bytes:
    body = "TLM," + f"{int(tick_ms) & 0xFFFFFFFF},{int(seq) & 0xFFFF}," + ",".join(_fmt(float(v)) for v in values)
    return f"${body}*{nmea_checksum(body):02X}\r\n".encode("ascii")


def encode_tlm_pong(token: int, tick_ms: int) -> bytes:
    body = f"PONG,{token & 0xFFFFFFFF},{int(tick_ms) & 0xFFFFFFFF}"
    return f"${body}*{nmea_checksum(body):02X}\r\n".encode("ascii")


_NUM = re.compile(r"^-?\d+$")


class _LineDecoder:
    """Base of the incremental text decoders: each complete line goes to ``_parse`` (an item or a Malformed)."""

    def __init__(self) -> None:
        self._lines = _LineSplitter()

    @property
    def errors(self) -> int:
        return self._lines.errors

    def feed(self, data: bytes) -> list:
        return [line if isinstance(line, Malformed) else self._parse(line) for line in self._lines.split(data)]

    def _parse(self, raw: bytes):
        raise NotImplementedError


class TlmDecoder(_LineDecoder):
    """Incremental decoder of tlm-nmea lines; ``channels`` (when > 0) is the expected value count."""

    def __init__(self, channels: int = 0) -> None:
        super().__init__()
        self.channels = channels

    def _parse(self, raw: bytes):
        bad = self._lines._bad
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            return bad("not ascii", len(raw))
        star = line.rfind("*")
        if not line.startswith("$") or star < 0 or len(line) != star + 3:
            return bad("not a $...*HH sentence", len(raw), line[:40])
        body = line[1:star]
        try:
            want = int(line[star + 1 :], 16)
        except ValueError:
            return bad("bad checksum field", len(raw), line[:40])
        if nmea_checksum(body) != want:
            return bad("checksum", len(raw), line[:40])
        fields = body.split(",")
        try:
            if fields[0] == "TLM" and len(fields) >= 4:
                if not (_NUM.match(fields[1]) and _NUM.match(fields[2])):
                    return bad("bad tick/seq", len(raw), line[:40])
                vals = tuple(float(f) for f in fields[3:])
                if self.channels and len(vals) != self.channels:
                    return bad(f"expected {self.channels} values, got {len(vals)}", len(raw), line[:40])
                if not all(np.isfinite(vals)):
                    return bad("non-finite value", len(raw), line[:40])
                return TlmSample(int(fields[1]) & 0xFFFFFFFF, int(fields[2]) & 0xFFFF, vals)
            if fields[0] == "PONG" and len(fields) == 3:
                return Pong(int(fields[1]) & 0xFFFFFFFF, int(fields[2]) & 0xFFFFFFFF)
        except ValueError:
            return bad("bad number", len(raw), line[:40])
        return bad("unknown sentence", len(raw), line[:40])


def encode_log(tick_us: int, level: str, message: str) -> bytes:
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in message)
    return f"{int(tick_us) & 0xFFFFFFFF} {level} {text}\n".encode("ascii")


def encode_log_pong(token: int, tick_us: int) -> bytes:
    return f"{int(tick_us) & 0xFFFFFFFF} PONG {token & 0xFFFFFFFF}\n".encode("ascii")


class LogDecoder(_LineDecoder):
    """Incremental decoder of log-text lines."""

    def _parse(self, raw: bytes):
        bad = self._lines._bad
        if any(b < 32 or b >= 127 for b in raw):
            return bad("non-printable bytes", len(raw), raw[:40].decode("ascii", "replace"))
        line = raw.decode("ascii")
        parts = line.split(" ", 2)
        if len(parts) < 2 or not parts[0].isdigit() or len(parts[0]) > 10:
            return bad("bad tick", len(raw), line[:40])
        tick = int(parts[0])
        if tick > 0xFFFFFFFF:
            return bad("tick out of range", len(raw), line[:40])
        if parts[1] == "PONG":
            if len(parts) == 3 and parts[2].isdigit() and len(parts[2]) <= 10:
                return Pong(int(parts[2]) & 0xFFFFFFFF, tick)
            return bad("bad pong", len(raw), line[:40])
        if parts[1] not in LEVELS:
            return bad("unknown level", len(raw), line[:40])
        return LogLine(tick, parts[1], parts[2] if len(parts) == 3 else "")


# ---------------------------------------------------------------------------------------------- host pings
def encode_text_ping(token: int) -> bytes:
    return f"P{token & 0xFFFFFFFF}\n".encode("ascii")


class TextPingDecoder(_LineDecoder):
    """Device side: ``P<token>`` lines from the host (anything else counted as junk)."""

    def _parse(self, line: bytes):
        if line[:1] == b"P" and line[1:].isdigit() and len(line) <= 11:
            return Ping(int(line[1:]) & 0xFFFFFFFF)
        return Malformed("unknown command", len(line))


FORMATS = ("imu-bin", "tlm-nmea", "log-text")


def decoder_for(fmt: str, channels: int = 0):
    if fmt == "imu-bin":
        return ImuDecoder()
    if fmt == "tlm-nmea":
        return TlmDecoder(channels)
    if fmt == "log-text":
        return LogDecoder()
    raise ValueError(f"unknown wire format {fmt!r}; allowed: {', '.join(FORMATS)}")


def encode_ping(fmt: str, token: int) -> bytes:
    """The host's ping for a device speaking ``fmt``."""
    return encode_bin_ping(token) if fmt == "imu-bin" else encode_text_ping(token)
