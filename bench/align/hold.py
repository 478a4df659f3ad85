"""``bench align``'s hold of a target's earliest events (pure): what the hybrid maps before any offset or trigger
edge has judged the arrival envelope's latency (a webcam's 30-80 ms link, say) is the envelope alone, late by that
latency however tight the envelope looks; and one or two offsets cannot yet tell a late envelope from a wrong
offset (a 1 fps camera's first offset may be 200 ms off).  Those events wait, up to ``hold_ns`` of device time, for
the offsets that judge the latency (``pairs.JUDGED``), and are then mapped with them (the offsets carried back over
the distance, their sigma grown by the skew prior, or the envelope where they find it good: ``pairs.hybrid_map_unc``),
as the offline pass (``synchub align``, two-sided) or a live agent that holds a stream's first chunks until its
aligner has answered maps them.  Once judged they wait on while their mapping still sharpens: while the next window
cuts the uncertainty they are reported with by more than ``1 - SETTLED`` or moves them by more than ``MOVED`` of it
(the first judging offsets may all be coarse neural ones, a precise classical one a window later: an IMU+Audio
world's first 16 events came out 2.9 ms off, over the 2.5 ms tolerance, where waiting on put them within 0.5 ms).
An event whose hold runs out keeps the last mapping it had (the first, if no offset judged it); one still waiting
when the stream ends, likewise."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: held events are released once a window cuts their median reported uncertainty by less than 1 - SETTLED ...
SETTLED = 0.8
#: ... and moves their mapping by no more than MOVED x that uncertainty (median)
MOVED = 0.5


class EarlyHold:
    """Events held until the offsets judge the envelope and their mapping settles.  ``hold(...)`` one window's
    events with the mapping they have now; ``release(mapper, now_ns)`` once offsets judge: the held events within
    ``hold_ns`` of ``now_ns`` remapped by ``mapper(device_ns) -> (mapped, unc)`` and released when that mapping has
    settled (else held on with it), those past the hold released with the last mapping they had; ``flush()`` at
    the end.  Both return ``(true_ns, mapped, unc)`` arrays of the events released."""

    def __init__(self, hold_ns: int, settled: float = SETTLED):
        self.hold_ns = int(hold_ns)
        self.settled = float(settled)
        # (device, true, mapped, unc, unc at the last judged look: nan before one)
        self._items: list[tuple[np.ndarray, ...]] = []
        self.held = 0  # events released with a mapping made after an offset judged them
        self.expired = 0  # events released with the mapping they had when seen (the hold ran out, or the stream)
        self.max_wait_ns = 0

    @property
    def waiting(self) -> int:
        return sum(len(x[0]) for x in self._items)

    def hold(self, device_ns, true_ns, mapped, unc) -> None:
        if len(device_ns):
            u = np.asarray(unc, dtype=np.float64)
            self._items.append((np.asarray(device_ns, dtype=np.int64), np.asarray(true_ns, dtype=np.int64),
                                np.asarray(mapped, dtype=np.int64), u, np.full(len(u), np.nan)))

    def release(self, mapper: Callable, now_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._items:
            return _empty()
        d, t, m, u, p = (np.concatenate(x) for x in zip(*self._items, strict=True))
        self._items.clear()
        wait = int(now_ns) - d
        ok = wait <= self.hold_ns
        m, u = m.copy(), u.copy()
        go = ~ok
        if ok.any():
            rm, ru = mapper(d[ok])
            ru = np.asarray(ru, dtype=np.float64)
            seen = np.isfinite(p[ok]) & (p[ok] > 0)
            moved = np.abs(np.asarray(rm, dtype=np.float64) - m[ok])[seen]
            settled = (bool(seen.any()) and float(np.median(ru[seen] / p[ok][seen])) >= self.settled
                       and float(np.median(moved)) <= MOVED * float(np.median(ru[seen])))
            m[ok], u[ok] = rm, ru
            p = p.copy()
            p[ok] = ru
            if settled:
                go = np.ones(len(d), dtype=bool)
                self.max_wait_ns = max(self.max_wait_ns, int(np.max(wait[ok])))
        if not go.all():
            keep = ~go
            self._items.append((d[keep], t[keep], m[keep], u[keep], p[keep]))
        remapped = go & np.isfinite(p)
        self.held += int(remapped.sum())
        self.expired += int((go & ~remapped).sum())
        return t[go], m[go], u[go]

    def flush(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._items:
            return _empty()
        _d, t, m, u, p = (np.concatenate(x) for x in zip(*self._items, strict=True))
        remapped = np.isfinite(p)
        self.held += int(remapped.sum())
        self.expired += int((~remapped).sum())
        self._items.clear()
        return t, m, u


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
