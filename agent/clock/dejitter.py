"""Jitter removal for regularly sampled streams, in one streaming pass: pyxdf's ``_jitter_removal``.

A stream with a nominal rate whose stamps carry jitter (LSL stamps a chunk when it is pushed) gets, per segment, the
least-squares line through its stamps over the sample index: stamp(i) = a + b * i.  Segments break where consecutive
stamps are more than ``max(break_s, break_samples / rate)`` apart, either way (pyxdf's defaults: 1 s and 500
samples: a gap, or a clock that went back); a segment of one sample keeps its stamp.

``JitterFit`` gathers the line of every segment while the samples go by (running means and co-moments, merged
chunk by chunk: Chan et al.'s parallel update, so no stamp is kept), then ``apply`` maps any stamps of the stream
(by their sample index) onto the lines.  pyxdf fits on the stamps after clock synchronization; here the line is
fitted on the stream's own clock, before the (slowly varying) clock mapping, which is where the jitter is.

Pure: arrays in, arrays out; int64 ns outside, float64 seconds relative to each segment's first stamp inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NS = 1_000_000_000
BREAK_S = 1.0
BREAK_SAMPLES = 500


@dataclass
class _Line:
    seq0: int  # first sample index of the segment
    t0: int  # its stamp (ns): the origin of y
    n: int = 0
    mx: float = 0.0  # mean of (i - seq0)
    my: float = 0.0  # mean of (t - t0) in s
    sxx: float = 0.0
    sxy: float = 0.0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        nb = len(x)
        if nb == 0:
            return
        mxb, myb = float(x.mean()), float(y.mean())
        dx, dy = x - mxb, y - myb
        sxxb, sxyb = float(dx @ dx), float(dx @ dy)
        n = self.n + nb
        ddx, ddy = mxb - self.mx, myb - self.my
        self.sxx += sxxb + ddx * ddx * self.n * nb / n
        self.sxy += sxyb + ddx * ddy * self.n * nb / n
        self.mx += ddx * nb / n
        self.my += ddy * nb / n
        self.n = n

    def coef(self) -> tuple[float, float]:
        """(intercept s, slope s per sample) of stamp - t0 over i - seq0."""
        if self.n < 2 or self.sxx <= 0:
            return self.my, 0.0
        b = self.sxy / self.sxx
        return self.my - b * self.mx, b


class JitterFit:
    """Per-segment lines of one regular stream (see the module docstring)."""

    def __init__(self, rate_hz: float, break_s: float = BREAK_S, break_samples: int = BREAK_SAMPLES):
        if not rate_hz > 0:
            raise ValueError("dejittering needs a nominal rate > 0")
        self.rate = float(rate_hz)
        self.break_ns = int(max(break_s, break_samples / self.rate) * NS)
        self.lines: list[_Line] = []
        self._last: tuple[int, int] | None = None  # (seq, stamp) of the last sample seen

    def add(self, seq: int, device_ns: np.ndarray) -> None:
        """Stamps of samples ``seq, seq+1, ...`` (pieces in order, none skipped)."""
        t = np.asarray(device_ns, dtype=np.int64)
        if len(t) == 0:
            return
        prev = np.empty(len(t), dtype=np.int64)
        prev[1:] = t[:-1]
        if self._last is None or self._last[0] != seq - 1:
            prev[0] = t[0]  # a fresh start (or a hole in the indices): a segment starts here
            brk = np.zeros(len(t), dtype=bool)
            brk[0] = True
        else:
            prev[0] = self._last[1]
            brk = np.zeros(len(t), dtype=bool)
        d = t - prev
        brk |= np.abs(d) > self.break_ns
        bounds = sorted({0, len(t), *np.flatnonzero(brk).tolist()})
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if brk[a] or not self.lines:
                self.lines.append(_Line(seq + a, int(t[a])))
            line = self.lines[-1]
            x = np.arange(seq + a - line.seq0, seq + b - line.seq0, dtype=np.float64)
            line.add(x, (t[a:b] - line.t0) / NS)
        self._last = (seq + len(t) - 1, int(t[-1]))

    def segments(self) -> list[dict]:
        out = []
        for i, ln in enumerate(self.lines):
            end = self.lines[i + 1].seq0 if i + 1 < len(self.lines) else ln.seq0 + ln.n
            a, b = ln.coef()
            out.append({"first_sample": ln.seq0, "samples": end - ln.seq0,
                        "effective_rate_hz": (1.0 / b) if b > 0 else None, "start_ns": ln.t0 + int(round(a * NS))})
        return out

    def apply(self, seq: int, device_ns: np.ndarray) -> np.ndarray:
        """The dejittered stamps of samples ``seq, seq+1, ...`` (a segment without a line keeps its stamps)."""
        t = np.asarray(device_ns, dtype=np.int64)
        line, ok = self.at(seq + np.arange(len(t), dtype=np.float64))
        return np.where(ok, line, t)

    def at(self, index) -> tuple[np.ndarray, np.ndarray]:
        """Line times (int64 ns) at fractional sample indices, and where a line exists (else 0)."""
        idx = np.asarray(index, dtype=np.float64)
        out = np.zeros(len(idx), dtype=np.int64)
        ok = np.zeros(len(idx), dtype=bool)
        if not self.lines:
            return out, ok
        starts = np.array([ln.seq0 for ln in self.lines], dtype=np.float64)
        k = np.clip(np.searchsorted(starts, np.floor(idx), side="right") - 1, 0, len(self.lines) - 1)
        for j in np.unique(k).tolist():
            ln = self.lines[j]
            if ln.n < 2:
                continue
            sel = k == j
            a, b = ln.coef()
            # relative to the segment's first stamp before the float: stamps may be 1e18 ns (epoch seconds)
            out[sel] = ln.t0 + np.rint((a + b * (idx[sel] - ln.seq0)) * NS).astype(np.int64)
            ok[sel] = True
        return out, ok
