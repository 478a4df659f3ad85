"""Pulse codes that identify a sync pulse without ambiguity: 32-bit TTL barcodes and the Harp-style clock code.

Pure functions and decoders (no I/O).  Formats (``.notes/codecs.md``; the sync-box firmware implements the same):

**32-bit TTL barcode** (Allen Institute / Open Ephys style).  Line idle LOW, bit time T.  A barcode starting at
``t0``: HIGH for 2T (the rising edge at ``t0`` is the barcode's timestamp), LOW for T, then 32 data bits, LSB first,
each T long (HIGH = 1), then LOW; at least 10T LOW before the next barcode.  35T in all.  The value is a counter.

**Harp-style clock code.**  UART 8N1 at 1000 baud, idle HIGH, LSB first.  At each whole second N of the emitter's
clock it sends uint32 N little-endian (4 bytes back to back); the falling edge of the first start bit is exactly at
second N.  Real Harp sends at 100 kbaud and *ends* 672 us before the second; synchub's slower code survives long
cables and userspace GPIO back ends, and its first edge is the timestamp.

Edges are ``(t_ns, level)`` pairs, level the line's new level (0/1), in time order.  A decoded frame's time is the
bit grid's origin fitted to all its edges (the first edge's time up to its jitter, averaged over the frame).  Decoders are incremental:
``feed`` takes any run of edges (and optionally ``now_ns``, the time up to which the line is known quiet) and returns
the frames completed so far.  Frames that break the format (an edge off the bit grid by more than ``tolerance`` of
a bit, a missed edge, a bad start or stop bit) are rejected and counted in ``malformed`` with the reason in
``reasons``; they never produce a value.
"""

from __future__ import annotations

from synchub.agent.core.units import NS


def _levels_to_edges(levels: list[int], t0_ns: int, slot_ns: int, idle: int) -> list[tuple[int, int]]:
    edges = []
    cur = idle
    for k, lvl in enumerate(levels):
        if lvl != cur:
            edges.append((t0_ns + k * slot_ns, lvl))
            cur = lvl
    if cur != idle:
        edges.append((t0_ns + len(levels) * slot_ns, idle))
    return edges


def barcode_levels(value: int) -> list[int]:
    """The 35 slot levels of one barcode: start (1, 1), gap (0), 32 data bits LSB first."""
    if not 0 <= value < 1 << 32:
        raise ValueError(f"barcode value {value} does not fit in 32 bits")
    return [1, 1, 0] + [(value >> i) & 1 for i in range(32)]


def encode_barcode(value: int, t0_ns: int, bit_ns: int) -> list[tuple[int, int]]:
    """Edges ``(t_ns, level)`` of barcode ``value`` starting at ``t0_ns`` with bit time ``bit_ns`` (only real level
    changes; the line is LOW before and after)."""
    if bit_ns <= 0:
        raise ValueError("bit_ns must be > 0")
    return _levels_to_edges(barcode_levels(value), int(t0_ns), int(bit_ns), 0)


def harp_levels(seconds: int) -> list[int]:
    """The 40 bit levels of one Harp-style frame: 4 bytes of 8N1 (start 0, 8 data LSB first, stop 1)."""
    if not 0 <= seconds < 1 << 32:
        raise ValueError(f"seconds {seconds} does not fit in 32 bits")
    out = []
    for byte in int(seconds).to_bytes(4, "little"):
        out += [0] + [(byte >> i) & 1 for i in range(8)] + [1]
    return out


def encode_harp(seconds: int, t0_ns: int, baud: int = 1000) -> list[tuple[int, int]]:
    """Edges ``(t_ns, level)`` of the Harp-style frame for second ``seconds`` starting at ``t0_ns`` (idle HIGH)."""
    if baud <= 0:
        raise ValueError("baud must be > 0")
    slot = NS // baud if NS % baud == 0 else None
    if slot is not None:
        return _levels_to_edges(harp_levels(seconds), int(t0_ns), slot, 1)
    # a baud rate that does not divide 1 s: place each edge at the nearest ns
    edges = []
    cur = 1
    for k, lvl in enumerate(harp_levels(seconds)):
        if lvl != cur:
            edges.append((int(t0_ns) + round(k * NS / baud), lvl))
            cur = lvl
    return edges


class _FrameDecoder:
    """Collects the edges of one frame of ``nslots`` slots that starts with an edge to ``start_level`` after the line
    sat at the other level for ``min_idle_slots``; decodes by sampling slot centres, checks edges sit on the grid."""

    nslots = 0
    start_level = 1

    auto = False

    def __init__(self, slot_ns: float, tolerance: float, min_idle_slots: float):
        if slot_ns <= 0:
            raise ValueError("bit time must be > 0")
        if not 0 < tolerance < 0.5:
            raise ValueError("tolerance must be in (0, 0.5)")
        self.slot = float(slot_ns)
        self.tol = float(tolerance)
        self.min_idle = min_idle_slots * self.slot
        self.idle_level = 1 - self.start_level
        self.level = self.idle_level
        self.last_edge_ns: int | None = None
        self._frame: list[tuple[int, int]] | None = None
        self.frames = 0
        self.malformed = 0
        self.reasons: dict[str, int] = {}

    def _bad(self, reason: str) -> None:
        self.malformed += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def _end_ns(self, t0: int) -> float:
        # the first edge and the last may each be off by the tolerance
        return t0 + (self.nslots + 2 * self.tol) * self.slot

    def feed(self, edges, now_ns: int | None = None) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for t, lvl in edges:
            t, lvl = int(t), int(lvl)
            if lvl not in (0, 1):
                self.reasons["bad_level"] = self.reasons.get("bad_level", 0) + 1
                continue
            if self.last_edge_ns is not None and t < self.last_edge_ns:
                self.reasons["out_of_order"] = self.reasons.get("out_of_order", 0) + 1
                continue
            if self._frame is not None and t > self._end_ns(self._frame[0][0]):
                self._finish(out)
            if lvl == self.level:  # a missed edge: the line cannot go to the level it is at
                if self._frame is not None:
                    self._frame = None
                    self._bad("missed_edge")
                self.reasons["repeated_level"] = self.reasons.get("repeated_level", 0) + 1
                self.last_edge_ns = t
                continue
            prev_edge = self.last_edge_ns
            self.level = lvl
            self.last_edge_ns = t
            if self._frame is not None:
                if self.auto and len(self._frame) == 1 and t > self._frame[0][0]:
                    self.slot = (t - self._frame[0][0]) / 2  # the start pulse is 2T long
                self._frame.append((t, lvl))
            elif lvl == self.start_level:
                if prev_edge is None or t - prev_edge >= self.min_idle:
                    self._frame = [(t, lvl)]
                else:
                    self.reasons["start_without_idle"] = self.reasons.get("start_without_idle", 0) + 1
        if now_ns is not None and self._frame is not None and now_ns > self._end_ns(self._frame[0][0]):
            self._finish(out)
        return out

    def flush(self) -> list[tuple[int, int]]:
        """Decode a frame still open (the caller knows the line has been quiet since)."""
        out: list[tuple[int, int]] = []
        if self._frame is not None:
            self._finish(out)
        return out

    def _finish(self, out: list) -> None:
        frame, self._frame = self._frame, None
        # the slot grid's origin: fitted to every edge (the start edge alone carries its own jitter; the fit
        # averages it out and is the frame's timestamp); valid when some grid has every edge within the tolerance
        first = frame[0][0]
        pos = [(t - first) / self.slot for t, _ in frame]
        ks = [round(p) for p in pos]
        # least-squares line pos = a + b k: a is the origin; b absorbs the emitter's clock rate (drift)
        n = len(ks)
        mk, mp = sum(ks) / n, sum(pos) / n
        skk = sum((k - mk) ** 2 for k in ks)
        b = sum((k - mk) * (p - mp) for k, p in zip(ks, pos, strict=False)) / skk if skk > 0 else 1.0
        if not 0.98 < b < 1.02:
            b = 1.0
        a = mp - b * mk
        res = [p - (a + b * k) for p, k in zip(pos, ks, strict=False)]
        if max(res) - min(res) > 2 * self.tol and b != 1.0:
            # the least-squares slope minimizes the squares, not the spread: a short frame's jitter can tilt it
            # so far that its residuals spread wider than the plain grid's (at the emitter's nominal rate)
            b, a = 1.0, mp - mk
            res = [p - (a + k) for p, k in zip(pos, ks, strict=False)]
        if max(res) - min(res) > 2 * self.tol:  # no grid has every edge within the tolerance
            self._bad("off_grid")
            return
        t0 = first + a * self.slot
        last_k = 0
        for i, k in enumerate(ks):
            if i and (k <= last_k or k > self.nslots):
                self._bad("glitch")
                return
            last_k = k
        levels = []
        j = 0
        cur = self.start_level
        for k in range(self.nslots):
            centre = t0 + (k + 0.5) * self.slot
            while j + 1 < len(frame) and frame[j + 1][0] <= centre:
                j += 1
                cur = frame[j][1]
            levels.append(cur)
        end_level = frame[-1][1]
        if end_level != self.idle_level:
            self._bad("not_idle_after")
            return
        value = self._decode(levels)
        if value is None:
            return
        self.frames += 1
        out.append((int(round(t0)), value))

    def _decode(self, levels: list[int]) -> int | None:  # pragma: no cover - abstract
        raise NotImplementedError


class BarcodeDecoder(_FrameDecoder):
    """Decodes 32-bit TTL barcodes (see the module docstring): ``feed(edges) -> [(t0_ns, value)]``."""

    nslots = 35
    start_level = 1

    def __init__(self, bit_ns: int, tolerance: float = 0.25):
        """``bit_ns = 0``: learn the bit time from each barcode's start pulse (2T HIGH)."""
        self.auto = bit_ns == 0
        super().__init__(bit_ns or 30_000_000, tolerance, min_idle_slots=5)

    def _decode(self, levels: list[int]) -> int | None:
        if levels[:3] != [1, 1, 0]:
            self._bad("bad_start")
            return None
        return sum(b << i for i, b in enumerate(levels[3:]))


class HarpDecoder(_FrameDecoder):
    """Decodes the Harp-style 1 kbaud per-second clock code: ``feed(edges) -> [(t0_ns, seconds)]``."""

    nslots = 40
    start_level = 0

    def __init__(self, baud: int = 1000, tolerance: float = 0.25):
        super().__init__(NS / baud, tolerance, min_idle_slots=12)

    def _decode(self, levels: list[int]) -> int | None:
        data = bytearray()
        for i in range(4):
            byte = levels[10 * i : 10 * i + 10]
            if byte[0] != 0:
                self._bad("bad_start_bit")
                return None
            if byte[9] != 1:
                self._bad("bad_stop_bit")
                return None
            data.append(sum(b << k for k, b in enumerate(byte[1:9])))
        return int.from_bytes(bytes(data), "little")


__all__ = ["BarcodeDecoder", "HarpDecoder", "encode_barcode", "encode_harp", "barcode_levels", "harp_levels"]
