"""``bench align``'s hold of a target's earliest events (pure): what the hybrid maps before any offset or trigger
edge has judged the arrival envelope's latency (a webcam's 30-80 ms link, say) is the envelope alone, late by that
latency however tight the envelope looks; and one or two offsets cannot yet tell a late envelope from a wrong
offset (a 1 fps camera's first offset may be 200 ms off).  Those events wait, up to ``hold_ns`` of device time, for
the offsets that judge the latency (``pairs.JUDGED``), and are then mapped with them (the offsets carried back over
the distance, their sigma grown by the skew prior, or the envelope where they find it good: ``pairs.hybrid_map_unc``),
as the offline pass (``synchub align``, two-sided) or a live agent that holds a stream's first chunks until its
aligner has answered maps them.  An event still waiting when the hold runs out, or when the stream ends first, keeps
the mapping it had when it was seen."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class EarlyHold:
    """Events held until the offsets judge the envelope.  ``hold(...)`` one window's events with the mapping they have now;
    ``release(mapper, now_ns)`` once offsets exist: the held events within ``hold_ns`` of ``now_ns`` remapped by
    ``mapper(device_ns) -> (mapped, unc)``, the others as they were; ``flush()`` at the end.  Both return
    ``(true_ns, mapped, unc)`` arrays of the events released."""

    def __init__(self, hold_ns: int):
        self.hold_ns = int(hold_ns)
        self._items: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.held = 0  # events remapped after waiting for an offset
        self.expired = 0  # events whose wait ran out (kept their first mapping)
        self.max_wait_ns = 0

    @property
    def waiting(self) -> int:
        return sum(len(d) for d, *_ in self._items)

    def hold(self, device_ns, true_ns, mapped, unc) -> None:
        if len(device_ns):
            self._items.append((np.asarray(device_ns, dtype=np.int64), np.asarray(true_ns, dtype=np.int64),
                                np.asarray(mapped, dtype=np.int64), np.asarray(unc, dtype=np.float64)))

    def release(self, mapper: Callable, now_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._items:
            return _empty()
        d, t, m, u = (np.concatenate(x) for x in zip(*self._items, strict=True))
        self._items.clear()
        wait = int(now_ns) - d
        ok = wait <= self.hold_ns
        if ok.any():
            rm, ru = mapper(d[ok])
            m, u = m.copy(), u.copy()
            m[ok], u[ok] = rm, np.asarray(ru, dtype=np.float64)
            self.max_wait_ns = max(self.max_wait_ns, int(np.max(wait[ok])))
        self.held += int(ok.sum())
        self.expired += int((~ok).sum())
        return t, m, u

    def flush(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._items:
            return _empty()
        _d, t, m, u = (np.concatenate(x) for x in zip(*self._items, strict=True))
        self.expired += len(t)
        self._items.clear()
        return t, m, u


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
