"""Test hooks of the fake gpiod: chips, driving line levels, kernel-like event generation."""

from __future__ import annotations

import threading
import time
from collections import deque

JIFFY_NS = 4_000_000  # HZ=250: software debounce delays round up to this
HTE_EPOCH_NS = 123_456_789_000  # the fake HTE clock counts from its own origin: monotonic - this

_lock = threading.Lock()
CHIPS: dict[str, Chip] = {}


class Chip:
    def __init__(self, path: str, num_lines: int):
        self.path = path
        self.num_lines = num_lines
        self.levels = [0] * num_lines
        self.requests: list = []  # LineRequest objects holding lines
        self.global_seqno = 0
        self.wires: dict[int, list[int]] = {}  # a jumper from an output line to input lines


def add_chip(path: str = "/dev/gpiochip0", num_lines: int = 32) -> Chip:
    with _lock:
        CHIPS[path] = Chip(path, num_lines)
        return CHIPS[path]


def reset() -> None:
    with _lock:
        CHIPS.clear()


def wire(path: str, out_line: int, in_line: int) -> None:
    """A jumper: whatever drives ``out_line`` also drives ``in_line``."""
    CHIPS[path].wires.setdefault(out_line, []).append(in_line)


def drive(path: str, offset: int, level: int, t_mono_ns: int | None = None) -> None:
    """The line changes level at monotonic time ``t_mono_ns`` (default: now)."""
    t = time.monotonic_ns() if t_mono_ns is None else int(t_mono_ns)
    chip = CHIPS[path]
    with _lock:
        for off in [offset, *chip.wires.get(offset, [])]:
            if chip.levels[off] == level:
                continue
            chip.levels[off] = level
            for req in list(chip.requests):
                req._line_changed(off, level, t)


def settle(path: str, t_mono_ns: int | None = None) -> None:
    """Time passes with no edges: debounced edges that have been stable long enough are reported."""
    t = time.monotonic_ns() if t_mono_ns is None else int(t_mono_ns)
    with _lock:
        for req in list(CHIPS[path].requests):
            req._settle(t)


class EventBuffer:
    """The kernel's per-request kfifo: bounded; on overflow the oldest event is dropped."""

    def __init__(self, size: int):
        self.events: deque = deque(maxlen=size)
        self.cond = threading.Condition()
        self.overflows = 0

    def put(self, ev) -> None:
        with self.cond:
            if len(self.events) == self.events.maxlen:
                self.overflows += 1
            self.events.append(ev)
            self.cond.notify_all()
