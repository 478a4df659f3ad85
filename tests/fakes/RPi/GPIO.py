"""Fake of RPi.GPIO (see tests/fakes/README.md).  ``_drive(pin, level)`` is the test hook."""

from __future__ import annotations

import queue
import threading
import time

BCM = 11
BOARD = 10
IN = 1
OUT = 0
HIGH = 1
LOW = 0
PUD_OFF = 20
PUD_DOWN = 21
PUD_UP = 22
RISING = 31
FALLING = 32
BOTH = 33
VERSION = "0.7.1"

_mode = None
_setup: dict[int, int] = {}
_levels: dict[int, int] = {}
_detect: dict[int, tuple[int, object, int, list]] = {}  # pin -> (edge, callback, bouncetime ms, [last ms])
_queue: queue.Queue = queue.Queue()
_thread: threading.Thread | None = None


def _worker() -> None:
    while True:
        cb, pin = _queue.get()
        if cb is None:
            return
        cb(pin)


def setmode(mode: int) -> None:
    global _mode
    if mode not in (BCM, BOARD):
        raise ValueError("An invalid mode was passed to setmode()")
    if _mode is not None and _mode != mode:
        raise ValueError("A different mode has already been set!")
    _mode = mode


def getmode():
    return _mode


def setup(channel: int, direction: int, pull_up_down: int = PUD_OFF, initial: int = -1) -> None:
    if _mode is None:
        raise RuntimeError("Please set pin numbering mode using GPIO.setmode(GPIO.BOARD) or GPIO.setmode(GPIO.BCM)")
    _setup[channel] = direction
    _levels.setdefault(channel, 1 if pull_up_down == PUD_UP else 0)


def input(channel: int) -> int:  # noqa: A001 - RPi.GPIO's name
    if channel not in _setup:
        raise RuntimeError("You must setup() the GPIO channel first")
    return _levels[channel]


def add_event_detect(channel: int, edge: int, callback=None, bouncetime: int = 0) -> None:
    global _thread
    if channel not in _setup or _setup[channel] != IN:
        raise RuntimeError("You must setup() the GPIO channel as an input first")
    if edge not in (RISING, FALLING, BOTH):
        raise ValueError("The edge must be set to RISING, FALLING or BOTH")
    if channel in _detect:
        raise RuntimeError("Conflicting edge detection already enabled for this GPIO channel")
    _detect[channel] = (edge, callback, int(bouncetime or 0), [-1e18])
    if _thread is None or not _thread.is_alive():
        _thread = threading.Thread(target=_worker, daemon=True)
        _thread.start()


def remove_event_detect(channel: int) -> None:
    _detect.pop(channel, None)


def cleanup(channel: int | None = None) -> None:
    global _mode
    chans = list(_setup) if channel is None else [channel]
    for c in chans:
        _setup.pop(c, None)
        _detect.pop(c, None)
    if not _setup:
        _mode = None


def _drive(channel: int, level: int) -> None:
    """Test hook: the pin changes level; matching callbacks are queued to the callback thread."""
    if _levels.get(channel) == level:
        return
    _levels[channel] = level
    det = _detect.get(channel)
    if det is None:
        return
    edge, cb, bounce, last = det
    if (edge == RISING and not level) or (edge == FALLING and level):
        return
    now_ms = time.monotonic() * 1000
    if bounce and now_ms - last[0] < bounce:
        return
    last[0] = now_ms
    if cb is not None:
        _queue.put((cb, channel))


def _wait_idle(timeout: float = 2.0) -> None:
    """Test hook: wait until queued callbacks ran."""
    end = time.monotonic() + timeout
    while not _queue.empty() and time.monotonic() < end:
        time.sleep(0.001)
    time.sleep(0.01)
