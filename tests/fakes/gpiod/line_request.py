"""Fake of gpiod.LineRequest (the part synchub uses, with the kernel's behaviour behind it)."""

from __future__ import annotations

import time
from datetime import timedelta

from . import _sim
from .edge_event import EdgeEvent
from .line import Clock, Edge


class RequestReleasedError(Exception):
    pass


class LineRequest:
    def __init__(self, chip: _sim.Chip, consumer: str, config: dict, event_buffer_size: int | None):
        self._chip = chip
        self.consumer = consumer
        self._settings = dict(config)
        self._offsets = list(config)
        self._buf = _sim.EventBuffer(event_buffer_size or 16 * len(self._offsets))
        self._line_seqno = {o: 0 for o in self._offsets}
        self._pending: dict[int, tuple[int, int]] = {}  # debounce: offset -> (level, t of last change)
        self._released = False

    # ---- kernel side
    def _clock_ns(self, offset: int, t_mono: int) -> int:
        clock = self._settings[offset].event_clock
        if clock == Clock.REALTIME:
            return t_mono + (time.time_ns() - time.monotonic_ns())
        if clock == Clock.HTE:
            return t_mono - _sim.HTE_EPOCH_NS
        return t_mono

    def _line_changed(self, offset: int, level: int, t: int) -> None:
        if self._released or offset not in self._settings:
            return
        period = self._settings[offset].debounce_period
        deb_ns = int(period.total_seconds() * 1e9) if period else 0
        if deb_ns <= 0:
            self._emit(offset, level, t)
            return
        self._settle(t)
        self._pending[offset] = (level, t)

    def _settle(self, now: int) -> None:
        for offset, (level, t) in list(self._pending.items()):
            period = self._settings[offset].debounce_period
            deb_ns = int(period.total_seconds() * 1e9)
            delay = -(-deb_ns // _sim.JIFFY_NS) * _sim.JIFFY_NS
            if now - t >= delay:
                del self._pending[offset]
                if self._chip.levels[offset] == level:  # stable: the work function reports it, stamped now
                    self._emit(offset, level, t + delay)

    def _emit(self, offset: int, level: int, t: int) -> None:
        edge = self._settings[offset].edge_detection
        if edge == Edge.NONE or (edge == Edge.RISING and not level) or (edge == Edge.FALLING and level):
            return
        self._line_seqno[offset] += 1
        self._chip.global_seqno += 1
        ev = EdgeEvent(1 if level else 2, self._clock_ns(offset, t), offset, self._chip.global_seqno,
                       self._line_seqno[offset])
        self._buf.put(ev)

    # ---- public API
    def __enter__(self):
        self._check()
        return self

    def __exit__(self, *exc):
        self.release()

    def __bool__(self) -> bool:
        return not self._released

    def _check(self) -> None:
        if self._released:
            raise RequestReleasedError()

    def release(self) -> None:
        self._check()
        self._released = True
        if self in self._chip.requests:
            self._chip.requests.remove(self)

    @property
    def offsets(self) -> list[int]:
        self._check()
        return list(self._offsets)

    def get_value(self, line: int):
        from .line import Value

        self._check()
        return Value.ACTIVE if self._chip.levels[line] else Value.INACTIVE

    def set_value(self, line: int, value) -> None:
        self.set_values({line: value})

    def set_values(self, values: dict) -> None:
        """Outputs drive the (fake) line: input requests on the same line see the edges, stamped now."""
        from .line import Direction, Value

        self._check()
        for line, value in values.items():
            if self._settings[line].direction != Direction.OUTPUT:
                raise PermissionError(1, "Operation not permitted (line is not an output)")
            _sim.drive(self._chip.path, line, 1 if value == Value.ACTIVE else 0)

    def wait_edge_events(self, timeout: timedelta | float | None = None) -> bool:
        self._check()
        if isinstance(timeout, timedelta):
            timeout = timeout.total_seconds()
        with self._buf.cond:
            if self._buf.events:
                return True
            self._buf.cond.wait(timeout)
            return bool(self._buf.events)

    def read_edge_events(self, max_events: int | None = None) -> list[EdgeEvent]:
        self._check()
        with self._buf.cond:
            while not self._buf.events:  # like read(2) on the request fd: blocks until an event
                self._buf.cond.wait(0.05)
            n = len(self._buf.events) if max_events is None else min(max_events, len(self._buf.events))
            return [self._buf.events.popleft() for _ in range(n)]
