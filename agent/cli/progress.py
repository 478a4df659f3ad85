"""A one-line progress indicator on stderr for ``synchub align``/``inspect`` on long files: only on a terminal, only
once a run has taken longer than ``delay_s``, at most every ``every_s``; cleared when the run ends, so that what the
command prints afterwards starts on a clean line."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO


class ProgressLine:
    """``progress(stage, path, fraction)`` (the engine's callback; ``fraction`` None: unknown).  ``enabled``
    defaults to whether ``stream`` is a terminal; ``clock`` is injectable for tests."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None, delay_s: float = 1.0,
                 every_s: float = 0.2, clock: Callable[[], float] = time.monotonic):
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            enabled = _isatty(self.stream)
        self.enabled = enabled
        self.clock = clock
        self.start = clock()
        self.delay_s = delay_s
        self.every_s = every_s
        self._last = -1e18
        self._width = 0

    def __call__(self, stage: str, path: str, fraction: float | None) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if now - self.start < self.delay_s or now - self._last < self.every_s:
            return
        self._last = now
        done = "" if fraction is None else f" {100.0 * min(max(fraction, 0.0), 1.0):5.1f} %"
        self._show(f"{stage} {os.path.basename(path)}{done}")

    def _show(self, text: str) -> None:
        pad = max(self._width - len(text), 0)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        """Clear the line (if anything was shown)."""
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
