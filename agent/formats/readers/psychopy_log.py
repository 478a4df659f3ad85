"""PsychoPy log files (``psychopy.logging.LogFile``: the ``.log`` a Builder experiment writes beside its data).

Each entry is one line ``<t> \\t<LEVEL> \\t<message>`` (``%(t).4f \\t%(levelname)s \\t%(message)s``): ``t`` in
seconds on PsychoPy's clock (``core.monotonicClock``, or the clock the script set), to 0.1 ms.  The entries at the
levels that describe the experiment, ``EXP`` (a stimulus drawn, a sound started, a new trial) and ``DATA`` (a key
press, a response), become one marker stream (``string``) named after the file; the others (``INFO``, ``WARNING``,
``DEBUG``, ...) are counted by level and left out.  A line that is not an entry continues the message before it (a
message with line breaks).  Entries stamped on a flip (``win.logOnFlip``) or with their own ``t`` are written when
the log is flushed, so times may go back: they are kept with their own times (the file engine counts them out of
time order).  A file whose first entry is not such a line is a one-line ``InputError``.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator

import numpy as np

from .base import (
    InputError,
    InputOptions,
    Piece,
    counted_lines,
    marker_stream,
    no_line_end,
    stem_of,
    text_head,
)
from .table_read import seconds_to_ns

log = logging.getLogger(__name__)
#: An entry: time, level name, message (PsychoPy pads the first two with a space before each tab).
ENTRY = re.compile(r"^\s*(-?\d+(?:\.\d*)?)\s*\t\s*([A-Z][A-Z0-9 ]*?)\s*\t(.*)$")
#: The levels kept as markers (``psychopy.logging``: EXP 22, DATA 25).
MARKER_LEVELS = ("EXP", "DATA")
#: The start of an entry cut before its message's tab: a time, perhaps its tab and part of its level.
CUT_ENTRY = re.compile(r"^\s*-?\d+(?:\.\d*)?(?:\s*\t\s*[A-Z0-9 ]*)?$")
BATCH = 8192


class PsychopyLogInput:
    """One PsychoPy log (see the module docstring)."""

    kind = "psychopy"

    def __init__(self, path, options: InputOptions | None = None):
        self.path = str(path)
        self.options = options or InputOptions()
        self.stats: dict[str, int] = {}
        self._said_cut = False  # a cut last line is logged once, however often the file is read
        self.fraction = 0.0
        self.encoding, _ = text_head(self.path)
        first = next(self._lines(), None)
        if first is None:
            raise InputError(self.path, "no log lines")
        if not ENTRY.match(first):
            raise InputError(self.path, "not a PsychoPy log (its lines are 'time \\tLEVEL \\tmessage'); first line: "
                                        f"{first[:60]!r}")
        name = self.options.name or stem_of(self.path)
        self.streams = [marker_stream(name, "message", "log", "psychopy log")]

    def _lines(self) -> Iterator[str]:
        try:
            with open(self.path, encoding=self.encoding, errors="strict", newline="") as f:
                for ln in counted_lines(self, f):
                    ln = ln.rstrip("\r\n")
                    if ln.strip():
                        yield ln
        except UnicodeError:
            raise InputError(self.path, f"not a text file (not {self.encoding})") from None

    def _entries(self) -> Iterator[tuple[int, str, str]]:
        """(t ns, level, message) per entry, continuation lines joined to their message.  The file's last line, where
        it has no line end and is the start of an entry (``CUT_ENTRY``), is an entry cut while it was written ('12.34'
        of '12.3456 \tEXP \t...'), not a continuation of the one before: left out, counted, said once."""
        cur: list | None = None
        pending: str | None = None  # a line that is no entry, joined once a line after it shows it is not the cut one

        def join(line: str) -> None:
            if cur is not None:
                cur[2] += "\n" + line
            else:
                self._count("not_an_entry")

        for ln in self._lines():
            if pending is not None:
                join(pending)
                pending = None
            m = ENTRY.match(ln)
            if m is None:
                pending = ln
                continue
            if cur is not None:
                yield cur[0], cur[1], cur[2]
            cur = [seconds_to_ns(m.group(1)), m.group(2), m.group(3).strip()]  # ENTRY's time is a decimal number
        if pending is not None and CUT_ENTRY.match(pending) and no_line_end(self.path):
            self._count("cut_last_line")
            if not self._said_cut:
                self._said_cut = True
                log.warning("%s: its last line %r has no line end and is no entry (cut while it was written?): left "
                            "out", self.path, pending[:40])
        elif pending is not None:
            join(pending)
        if cur is not None:
            yield cur[0], cur[1], cur[2]

    def _count(self, why: str, n: int = 1) -> None:
        self.stats[why] = self.stats.get(why, 0) + n

    def read(self, evidence: bool = True, streams: set[str] | None = None) -> Iterator[Piece]:
        self.stats = {}
        key = self.streams[0].key
        if streams is not None and key not in streams:
            return
        seq = 0
        entries = self._entries()
        while True:
            batch = list(itertools.islice(entries, BATCH))
            if not batch:
                break
            keep = [(t, msg) for t, level, msg in batch if level in MARKER_LEVELS and msg]
            for _, level, msg in batch:
                if level not in MARKER_LEVELS:
                    self._count(f"level_{level.lower()}_left_out")
                elif not msg:
                    self._count("empty_message")
            if keep:
                yield Piece(key, seq, np.array([t for t, _ in keep], dtype=np.int64), [m for _, m in keep])
                seq += len(keep)
