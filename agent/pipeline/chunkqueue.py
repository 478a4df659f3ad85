"""The agent's one queue between the drivers' threads and the shipper, and the items it carries.  Lossless by
default: with ``overflow="block"`` a full queue blocks the driver (the OS buffers of the device fill instead); with
``overflow="drop-oldest"`` the oldest chunk is dropped, counted and handed to the shipper, which records it as a
``Gap``.  Only raw chunks count toward the bound; evidence, gaps and metadata are never dropped.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

from synchub.agent.core.evidence import Evidence
from synchub.agent.core.stream import Chunk, Gap
from synchub.agent.core.units import now_ns


@dataclass(frozen=True)
class MetaRecord:
    """A metadata message for the recording (stream info updates, NTP health, the agent's clock config)."""

    stream: str
    meta: dict


@dataclass(frozen=True)
class DerivedChunk:
    """A chunk already on the reference clock (fused vectors): sent as it is, never held or corrected."""

    chunk: Chunk


#: What the queue carries: a raw chunk (the only item that counts toward the bound), a gap, clock evidence, a
#: metadata record, a derived chunk.
Item = Chunk | Gap | Evidence | MetaRecord | DerivedChunk


@dataclass
class QueueStats:
    put: int = 0
    dropped_chunks: int = 0
    dropped_samples: int = 0
    blocked_ns: int = 0
    high_water: int = 0


class BoundedQueue:
    """A FIFO bounded in chunks.  Non-chunk items (evidence, gaps, meta) never count toward the bound and are
    never dropped."""

    def __init__(self, max_chunks: int, overflow: str = "block"):
        if overflow not in ("block", "drop-oldest"):
            raise ValueError(f"unknown overflow policy {overflow!r}")
        self.max_chunks = max_chunks
        self.overflow = overflow
        self._items: collections.deque = collections.deque()
        self._chunks = 0
        self._cond = threading.Condition()
        self._closed = False
        self.stats = QueueStats()
        self.dropped: list[Chunk] = []  # the shipper turns these into Gap records

    def put(self, item: Item) -> None:
        with self._cond:
            if isinstance(item, Chunk):
                if self._chunks >= self.max_chunks:
                    if self.overflow == "block":
                        t0 = now_ns()
                        while self._chunks >= self.max_chunks and not self._closed:
                            self._cond.wait(0.1)
                        self.stats.blocked_ns += now_ns() - t0
                    else:
                        self._drop_oldest_chunk()
                self._chunks += 1
                self.stats.high_water = max(self.stats.high_water, self._chunks)
            self._items.append(item)
            self.stats.put += 1
            self._cond.notify_all()

    def _drop_oldest_chunk(self) -> None:
        for i, item in enumerate(self._items):
            if isinstance(item, Chunk):
                del self._items[i]
                self._chunks -= 1
                self.stats.dropped_chunks += 1
                self.stats.dropped_samples += item.n
                self.dropped.append(item)
                return

    def get(self, timeout: float) -> Item | None:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            if isinstance(item, Chunk):
                self._chunks -= 1
            self._cond.notify_all()
            return item

    def take_dropped(self) -> list[Chunk]:
        with self._cond:
            out, self.dropped = self.dropped, []
            return out

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
