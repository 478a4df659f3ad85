"""The imu-bin serial wire format, and what every format shares (``Ping``, ``Pong``, ``Malformed``, ``crc16``): pure
encoders (used by the simulated devices) and a pure incremental decoder (``protocol.SerialProtocol`` feeds it).
Decoders take bytes in any split, return parsed items in order, resynchronize after garbage and never raise on bad
input: every problem comes back as a ``Malformed`` item (counted by the caller).  The text formats: ``lines``.

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

Ping (host -> device, round-trip probes)
----------------------------------------
Binary devices take the 0x10 ping frame; text devices take the line ``P<token>\\n`` (token: decimal u32).
The device stamps its tick at receipt and answers with a pong in its own format.  The simulated devices start
streaming once the host has sent any byte, or 150 ms after it opened the port (pyserial flushes input right
after opening; a device that streamed at once would lose bytes to that flush and the truth would not match).
"""

from __future__ import annotations

import struct
import threading
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


class SafeCalculator:
    """A ``crc.Calculator`` per thread.  ``Calculator.checksum`` keeps its running value in the calculator (init,
    update, digest), so one calculator shared by threads (each serial driver and each simulated device runs in its
    own) returns a wrong checksum when two calls interleave: good frames rejected as malformed, bad ones written.
    ``checksum(data)`` is safe from any thread; each thread builds its table once."""

    def __init__(self, configuration):
        self._configuration = configuration
        self._local = threading.local()

    def checksum(self, data: bytes) -> int:
        calc = getattr(self._local, "calc", None)
        if calc is None:
            calc = self._local.calc = Calculator(self._configuration, optimized=True)
        return int(calc.checksum(data))


_CRC = SafeCalculator(Crc16.IBM_3740)


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (check value 0x29B1 for b"123456789"); also the sync box protocol's CRC."""
    return _CRC.checksum(bytes(data))


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
