"""What an agent session had read and what it had spooled, per stream, kept where a ``kill -9`` cannot lose it.

Between the driver that reads samples and the spool that keeps them sit the agent's queue and the correction hold
(``correction_delay_ms``): in memory only.  ``Marks`` is a small file in the spool directory (``marks-<session>.bin``),
memory-mapped: per stream the **read** mark (the hub numbered samples up to here; set before the chunk is queued) and
the **covered** mark (every sample below it is in the spool, as data or as a ``queue_full`` gap).  Stores into a
shared mapping are plain memory writes (no system call per chunk) and reach the page cache at once, so they survive
the process (not a power cut).  On the next start ``crash_gaps`` turns ``[covered, read)`` of each stream of a session
that did not end cleanly into an ``agent_crash`` gap of that session, so every sample it read is recorded or is a gap.

``Coverage`` (pure) advances the covered mark: chunks reach the spool in order per stream, but a ``queue_full`` gap
can arrive before older chunks leave the hold, so ranges ahead of the mark wait until the mark reaches them.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path

from synchub.agent.core.stream import Gap

_HEAD = struct.Struct("<4sI")  # magic, header length
_MAGIC = b"SHM1"
_SLOT = struct.Struct("<qq")  # read, covered


class Coverage:
    """The low-water mark of a stream's sequence numbers that are in the spool."""

    def __init__(self, mark: int = 0):
        self.mark = mark
        self.ahead: dict[int, int] = {}  # lo -> hi of ranges covered above the mark

    def add(self, lo: int, hi: int) -> int:
        if hi <= self.mark:
            return self.mark
        if lo > self.mark:
            self.ahead[lo] = max(hi, self.ahead.get(lo, lo))
            return self.mark
        self.mark = hi
        while True:
            nxt = [lo for lo in self.ahead if lo <= self.mark]
            if not nxt:
                return self.mark
            for lo in nxt:
                self.mark = max(self.mark, self.ahead.pop(lo))


def marks_path(spool_dir: Path, session: str) -> Path:
    return Path(spool_dir) / f"marks-{session}.bin"


class Marks:
    """The live marks of one session (streams fixed at start); ``read`` from the hub, ``covered`` from the sender."""

    def __init__(self, path: Path, streams: list[str]):
        self.path = Path(path)
        self.index = {name: i for i, name in enumerate(streams)}
        self.cover = {name: Coverage() for name in streams}
        head = json.dumps(list(streams)).encode()
        head += b" " * (-len(head) % 8)
        self._base = _HEAD.size + len(head)
        size = self._base + _SLOT.size * max(len(streams), 1)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, _HEAD.pack(_MAGIC, len(head)) + head + bytes(size - self._base))
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)

    def read(self, stream: str, seq_end: int) -> None:
        i = self.index.get(stream)
        if i is not None:
            struct.pack_into("<q", self._map, self._base + _SLOT.size * i, seq_end)

    def covered(self, stream: str, lo: int, hi: int) -> None:
        i = self.index.get(stream)
        if i is not None:
            struct.pack_into("<q", self._map, self._base + _SLOT.size * i + 8, self.cover[stream].add(lo, hi))

    def close(self, remove: bool) -> None:
        self._map.close()
        if remove:
            self.path.unlink(missing_ok=True)


def load_marks(path: Path) -> dict[str, tuple[int, int]]:
    """``{stream: (read, covered)}`` of a marks file; {} when it is missing or not one."""
    try:
        data = Path(path).read_bytes()
        magic, n = _HEAD.unpack_from(data)
        if magic != _MAGIC:
            return {}
        names = json.loads(data[_HEAD.size:_HEAD.size + n])
        base = _HEAD.size + n
        return {name: _SLOT.unpack_from(data, base + _SLOT.size * i) for i, name in enumerate(names)}
    except (OSError, ValueError, struct.error, TypeError):
        return {}


def crash_gaps(marks: dict[str, tuple[int, int]], spooled: dict[str, list[tuple[int, int]]]) -> list[Gap]:
    """The ``agent_crash`` gaps of a session that died: per stream the samples read but not covered.  ``spooled``:
    the (seq, n) of the stream's data records still in the spool (the covered mark may lag the last append by one
    chunk when the kill fell between the two)."""
    out = []
    for stream, (read, covered) in sorted(marks.items()):
        for seq, n in sorted(spooled.get(stream, [])):
            if seq <= covered < seq + n:
                covered = seq + n
        if read > covered:
            out.append(Gap(stream=stream, seq=read, count=read - covered, cause="agent_crash",
                           detail="the agent process died holding these samples (queue or correction hold)"))
    return out
