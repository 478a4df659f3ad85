"""The live view of a collector's ``--live`` PUB socket (pure): per agent and stream, what arrived lately.

``LiveView.add(topic, message, now_ns)`` takes one published chunk (topic ``/<agent>/<stream>``, a decoded
``wire.Message``); ``rows(now_ns)`` gives per stream the chunks and samples seen, the rate over the last
``window_s``, the age of the newest chunk, the clock method and the 1-sigma of its newest sample, and sequence
holes (the PUB socket is lossy by design: a hole here is a dropped view, not lost data).  ``table`` renders them.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

NS = 1_000_000_000
UNKNOWN_SIGMA_NS = 10**15


@dataclass
class _Stream:
    agent: str
    stream: str
    chunks: int = 0
    samples: int = 0
    next_seq: int = -1
    skipped: int = 0  # samples between chunks this view did not see
    last_ns: int = 0
    method: str = ""
    sigma_ns: int | None = None
    history: collections.deque = field(default_factory=collections.deque)


class LiveView:
    def __init__(self, window_s: float = 5.0):
        self.window_ns = int(window_s * NS)
        self.streams: dict[tuple[str, str], _Stream] = {}
        self.bad = 0  # messages that were not a chunk of /agent/stream

    def add(self, topic: bytes, msg, now_ns: int) -> None:
        parts = topic.decode(errors="replace").split("/")
        chunk = getattr(msg, "chunk", None)
        if len(parts) != 3 or parts[0] or chunk is None:
            self.bad += 1
            return
        key = (parts[1], parts[2])
        s = self.streams.get(key)
        if s is None:
            s = self.streams[key] = _Stream(*key)
        if s.next_seq >= 0 and chunk.seq > s.next_seq:
            s.skipped += chunk.seq - s.next_seq
        s.next_seq = max(s.next_seq, chunk.seq + chunk.n)
        s.chunks += 1
        s.samples += chunk.n
        s.last_ns = int(now_ns)
        s.method = chunk.method
        unc = chunk.unc_ns
        s.sigma_ns = None if unc is None or len(unc) == 0 or int(unc[-1]) >= UNKNOWN_SIGMA_NS else int(unc[-1])
        s.history.append((int(now_ns), s.samples))

    def rows(self, now_ns: int) -> list[dict]:
        out = []
        for (agent, stream), s in sorted(self.streams.items()):
            while s.history and s.history[0][0] < now_ns - self.window_ns:
                s.history.popleft()
            rate = 0.0
            if len(s.history) >= 2 and s.history[-1][0] > s.history[0][0]:
                (t0, c0), (t1, c1) = s.history[0], s.history[-1]
                rate = (c1 - c0) * NS / (t1 - t0)
            out.append({"agent": agent, "stream": stream, "chunks": s.chunks, "samples": s.samples,
                        "rate_hz": round(rate, 2), "age_s": round((now_ns - s.last_ns) / NS, 3),
                        "method": s.method, "sigma_ns": s.sigma_ns, "unseen": s.skipped})
        return out


def _sigma(ns: int | None) -> str:
    if ns is None:
        return "-"
    return f"{ns / 1e3:.1f} us" if ns < 1_000_000 else f"{ns / 1e6:.2f} ms"


def table(rows: list[dict], endpoint: str = "") -> str:
    head = f"{'agent':14} {'stream':12} {'rate Hz':>9} {'samples':>10} {'last':>8} {'method':10} {'sigma':>10} " \
           f"{'unseen':>7}"
    lines = [f"live view of {endpoint}" if endpoint else "live view", head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['agent'][:14]:14} {r['stream'][:12]:12} {r['rate_hz']:9.1f} {r['samples']:10d} "
                     f"{r['age_s']:7.1f}s {r['method'][:10] or '-':10} {_sigma(r['sigma_ns']):>10} {r['unseen']:7d}")
    if not rows:
        lines.append("(no data yet)")
    return "\n".join(lines)
