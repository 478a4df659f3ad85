"""What the LSL tests share: pylsl (or the reason it is missing, ``needs_lsl``) and pulling from a real inlet the
way LabRecorder does."""

import time

import pytest

from synchub.drivers.lsl.inlet import import_pylsl

try:
    pylsl = import_pylsl()
    WHY = ""
except Exception as exc:  # noqa: BLE001 - the reason is the skip message
    pylsl = None
    WHY = f"pylsl/liblsl unavailable: {exc}"
needs_lsl = pytest.mark.skipif(pylsl is None, reason=WHY or "-")


def pull_all(inlet, n: int, timeout: float = 10.0, then_s: float = 0.0) -> tuple[list, list]:
    """(samples, stamps): pull until ``n`` came or ``timeout``; then once more for ``then_s`` (0: not), so that a
    sample delivered twice would show."""
    data, stamps = [], []
    end = time.monotonic() + timeout
    while len(stamps) < n and time.monotonic() < end:
        d, ts = inlet.pull_chunk(timeout=0.2, max_samples=4096)
        data += d
        stamps += ts
    if then_s > 0:
        d, ts = inlet.pull_chunk(timeout=then_s)
        data += d
        stamps += ts
    return data, stamps
