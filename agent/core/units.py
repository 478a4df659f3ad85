"""Time units and the host's two clocks (DESIGN.md): every timestamp is an int64 count of nanoseconds.

``NS`` (one second in ns) and its friends are the only definitions of these constants in the tree.  The reference
clock of an agent is its host CLOCK_MONOTONIC (``now_ns``); CLOCK_REALTIME (``utc_now_ns``) only feeds the recorded
monotonic-to-UTC mapping.  Floats appear only inside numerical fits, relative to a local origin.
"""

from __future__ import annotations

import time

import numpy as np

#: Nanoseconds per second, millisecond and microsecond.
NS = 1_000_000_000
NS_PER_MS = 1_000_000
NS_PER_US = 1_000

TIME_DTYPE = np.dtype(np.int64)


def now_ns() -> int:
    """The reference clock: host CLOCK_MONOTONIC in ns (never steps)."""
    return time.monotonic_ns()


def utc_now_ns() -> int:
    """Host CLOCK_REALTIME in ns (may step; only for the recorded monotonic-to-UTC mapping)."""
    return time.time_ns()


def as_ns_array(values) -> np.ndarray:
    """Coerce a sequence of timestamps to a contiguous int64 ns array (no float round trip for ints)."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError("timestamps must be finite")
        arr = np.rint(arr)
    return np.ascontiguousarray(arr, dtype=TIME_DTYPE)
