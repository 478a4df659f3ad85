"""A spool record as the spool keeps it in memory, and the gap-span helpers.  Pure."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger("synchub.agent.transport.spool")

KIND_DATA, KIND_OTHER, KIND_TOMBSTONE, KIND_BYE = 0, 1, 2, 3
#: after an agent restart, this many messages past the last recorded "sent" mark are never evicted
PROTECT_MARGIN = 8192


@dataclass
class Entry:
    session: str
    mid: int
    kind: int
    stream: str
    seq: int
    n: int
    priority: int
    size: int
    frames: list | None = None  # memory spool (or cache)
    seg: int = -1
    offset: int = 0
    length: int = 0
    last: int = 0  # a gap span stands for mids mid..last
    gaps: list | None = None  # gap span: the Gap dicts it carries

    def __post_init__(self) -> None:
        self.last = max(self.last, self.mid)


def coalesce(gaps: list[dict]) -> list[dict]:
    """Merge gap records of a stream whose sample ranges touch (a run of evicted chunks is one gap)."""
    out: list[dict] = []
    for g in sorted(gaps, key=lambda g: (g["stream"], g["seq"] - g["count"])):
        p = out[-1] if out else None
        if p is not None and p["stream"] == g["stream"] and p["seq"] == g["seq"] - g["count"]:
            p["count"] += g["count"]
            p["seq"] = g["seq"]
        else:
            out.append(dict(g))
    return out


@dataclass
class Drops:
    """What the full spool dropped (each run recorded as a ``spool_full`` gap); logged at most every ``every_s``."""

    every_s: float = 10.0
    samples: int = 0
    records: int = 0
    by_stream: dict = field(default_factory=dict)
    _logged: float = -1e18
    _unlogged: int = 0

    def add(self, stream: str, n: int, bound: int) -> None:
        self.samples += n
        self.records += 1
        self.by_stream[stream] = self.by_stream.get(stream, 0) + n
        self._unlogged += n
        now = time.monotonic()
        if now - self._logged >= self.every_s:
            log.warning("spool: full (%d bytes, collector not keeping up or unreachable): dropped %d samples since "
                        "the last report (%d in all: %s), each run recorded as a spool_full gap", bound,
                        self._unlogged, self.samples, ", ".join(f"{k} {v}" for k, v in sorted(self.by_stream.items())))
            self._logged, self._unlogged = now, 0
