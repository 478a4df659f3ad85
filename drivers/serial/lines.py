"""The text serial wire formats: tlm-nmea and log-text, and the text ping.  Pure encoders (used by the simulated
devices) and incremental decoders (``protocol.SerialProtocol`` feeds them), as in ``frames``: bytes in any split,
never a raise on bad input (a ``Malformed`` item instead).

tlm-nmea: ASCII telemetry, NMEA-like
------------------------------------
``$TLM,<ms ticks>,<seq>,<v1>,...,<vN>*HH\\r\\n`` where ``HH`` is the XOR of all characters between ``$`` and
``*`` in hex; ``seq`` is a 16-bit counter.  Pong: ``$PONG,<token>,<ms ticks>*HH\\r\\n``.

log-text: event log lines
-------------------------
``<us ticks> <LEVEL> <message>\\n`` with LEVEL in DEBUG/INFO/WARN/ERROR; printable ASCII only.
Pong: ``<us ticks> PONG <token>\\n``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .frames import Malformed, Ping, Pong

LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
MAX_LINE = 512


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
