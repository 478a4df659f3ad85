"""The Harp synchronization clock (harp-tech.org), decoded from line edges.  Pure.

The protocol (harp-tech/protocol ``SynchronizationClock.md``, with the receiver example of its
PR #61): UART at 100 kbaud, 8 data bits, no parity, 1 stop bit (8N1), idle high, LSB first.  Once a second the
clock sends 6 bytes: the header ``0xAA 0xAF``, then a U32 little-endian.  The first five bytes go out early in
the second; the last byte starts *exactly* 672 us before the second elapses, and that second is the encoded value
+ 1 (the four bytes encode the previous, elapsed second).  So the start-bit edge of the sixth byte, plus 672 us,
is whole Harp second ``value + 1``.  ``HarpClockDecoder`` decodes edges of the line (a GPIO input with kernel
timestamps, or a device's capture input) into ``(t_ns, second)`` pairs, each once a later packet agrees with it: ``t_ns`` is that second's instant on the
clock that stamped the edges.  It has the interface of ``synchub.agent.clock.barcode.HarpDecoder`` (synchub's own slower
1 kbaud code, kept for userspace GPIO back ends), so the clock layer uses either (``role = "harp-clock"`` or
``"harp"`` on a ``[[trigger]]``).  A byte whose edges are off the 10 us bit grid, with a bad start or stop bit,
or a packet with a bad header or a byte missing is rejected and counted in ``malformed``/``reasons``.
"""

from __future__ import annotations

import struct

NS = 1_000_000_000
CLOCK_BAUD = 100_000
CLOCK_OFFSET_NS = 672_000  # last byte's start bit -> the second it announces
HEADER = (0xAA, 0xAF)


def harp_clock_bytes(second: int) -> bytes:
    """The 6 bytes announcing Harp second ``second`` (they encode ``second - 1``)."""
    return bytes(HEADER) + struct.pack("<I", (second - 1) & 0xFFFFFFFF)


def encode_harp_clock(second: int, second_ns: int, baud: int = CLOCK_BAUD) -> list[tuple[int, int]]:
    """Edges ``(t_ns, level)`` of the packet announcing ``second``, which starts at ``second_ns``: the first five
    bytes 0.5, 1, 2, 3 and 3.5 ms into the second before (as the protocol's example sender), the last at
    ``second_ns - 672 us``."""
    bit = NS / baud
    starts = [second_ns - NS + k * 500_000 for k in (1, 2, 4, 6, 7)] + [second_ns - CLOCK_OFFSET_NS]
    edges: list[tuple[int, int]] = []
    for byte, t0 in zip(harp_clock_bytes(second), starts, strict=True):
        level = 1
        bits = [0] + [(byte >> i) & 1 for i in range(8)] + [1]
        for k, b in enumerate(bits):
            if b != level:
                edges.append((int(round(t0 + k * bit)), b))
                level = b
    return edges


class UartEdgeDecoder:
    """8N1 bytes from line edges (idle high): ``feed(edges, now_ns) -> [(start_ns, byte)]``."""

    def __init__(self, baud: int, tolerance: float = 0.4):
        self.bit = NS / baud
        self.tol = tolerance
        self.level = 1
        self.last_t: int | None = None
        self._start: int | None = None
        self._edges: list[tuple[int, int]] = []
        self.bytes = 0
        self.malformed = 0
        self.reasons: dict[str, int] = {}

    def _bad(self, reason: str) -> None:
        self.malformed += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def feed(self, edges, now_ns: int | None = None) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for t, lvl in edges:
            t, lvl = int(t), int(lvl)
            if self.last_t is not None and t < self.last_t:
                self.reasons["out_of_order"] = self.reasons.get("out_of_order", 0) + 1
                continue
            if self._start is not None and t >= self._start + 9.5 * self.bit:  # past the stop bit's centre
                self._finish(out)
            if lvl == self.level:
                self.reasons["repeated_level"] = self.reasons.get("repeated_level", 0) + 1
                self.last_t = t
                continue
            self.level = lvl
            self.last_t = t
            if self._start is None:
                if lvl == 0:
                    self._start = t
                    self._edges = []
            else:
                self._edges.append((t, lvl))
        if now_ns is not None and self._start is not None and now_ns >= self._start + 9.5 * self.bit:
            self._finish(out)
        return out

    def _finish(self, out: list) -> None:
        t0, edges = self._start, self._edges
        self._start, self._edges = None, []
        for t, _ in edges:
            pos = (t - t0) / self.bit
            if abs(pos - round(pos)) > self.tol or not 0 < round(pos) <= 9:
                self._bad("off_grid")
                return
        level, j, bits = 0, 0, []
        for k in range(10):
            centre = t0 + (k + 0.5) * self.bit
            while j < len(edges) and edges[j][0] <= centre:
                level = edges[j][1]
                j += 1
            bits.append(level)
        if bits[9] != 1:
            self._bad("bad_stop_bit")
            return
        self.bytes += 1
        out.append((t0, sum(b << i for i, b in enumerate(bits[1:9]))))


class HarpClockDecoder:
    """The Harp synchronization clock from line edges: ``feed(edges, now_ns) -> [(second_ns, second)]``."""

    MAX_PACKET_NS = NS  # the six bytes of one packet lie within a second
    MAX_RATE_ERROR = 1e-3  # packets agree when their seconds and their spacing agree to this (1000 ppm)
    CANDIDATES = 4

    def __init__(self, baud: int = CLOCK_BAUD, tolerance: float = 0.4):
        self.uart = UartEdgeDecoder(baud, tolerance)
        self._packet: list[tuple[int, int]] = []
        self._confirmed: tuple[int, int] | None = None
        self._candidates: list[tuple[int, int]] = []
        self.frames = 0
        self._malformed = 0
        self._reasons: dict[str, int] = {}

    @property
    def malformed(self) -> int:
        return self._malformed + self.uart.malformed

    @property
    def reasons(self) -> dict[str, int]:
        return {**self.uart.reasons, **self._reasons}

    def _bad(self, reason: str) -> None:
        self._malformed += 1
        self._reasons[reason] = self._reasons.get(reason, 0) + 1

    def feed(self, edges, now_ns: int | None = None) -> list[tuple[int, int]]:
        out = []
        for t, byte in self.uart.feed(edges, now_ns):
            p = self._packet
            if p and t - p[0][0] > self.MAX_PACKET_NS:
                self._bad("incomplete_packet")
                p.clear()
            if len(p) < 2 and byte != HEADER[len(p)]:
                if p:
                    self._bad("bad_header")
                p.clear()
                if byte == HEADER[0]:
                    p.append((t, byte))
                continue
            p.append((t, byte))
            if len(p) >= 4 and p[-2][1] == HEADER[0] and p[-1][1] == HEADER[1]:
                # the sender never sends the header inside a timestamp: a byte was missed, a new packet began
                self._bad("incomplete_packet")
                del p[:-2]
            elif len(p) == 6:
                value = int.from_bytes(bytes(b for _, b in p[2:]), "little")
                self._packet_done(t + CLOCK_OFFSET_NS, (value + 1) & 0xFFFFFFFF, out)
                p.clear()
        return out

    def _agree(self, a: tuple[int, int], b: tuple[int, int]) -> bool:
        dv, dt = b[1] - a[1], b[0] - a[0]
        return dv > 0 and abs(dt - dv * NS) <= self.MAX_RATE_ERROR * dv * NS

    def _packet_done(self, t: int, second: int, out: list) -> None:
        """A second is reported once another packet agrees with it (its number and its spacing): a missed byte
        that let the next packet's header complete this one cannot make a wrong pair."""
        new = (t, second)
        agree = [c for c in self._candidates if self._agree(c, new)]
        if agree or (self._confirmed is not None and self._agree(self._confirmed, new)):
            for c in self._candidates:
                if c not in agree:
                    self._bad("disagreeing_packet")
            out.extend(agree)
            out.append(new)
            self.frames += len(agree) + 1
            self._confirmed = new
            self._candidates = []
            return
        self._candidates.append(new)
        if len(self._candidates) > self.CANDIDATES:
            self._candidates.pop(0)
            self._bad("disagreeing_packet")

    def flush(self) -> list[tuple[int, int]]:
        return []


