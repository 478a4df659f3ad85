"""libgpiod v2 back end (``gpiod>=2.1.3``): kernel edge timestamps, event clock, sequence numbers, debounce.

Timestamps: the kernel stamps each edge in hard-IRQ context on the line's event clock.  ``monotonic`` is the
reference clock itself.  ``realtime`` stamps are moved onto it with the realtime - monotonic offset read right after
each batch (a step of the wall clock between the edge and the read, milliseconds, would leak in).  ``hte`` (hardware
timestamp engine, e.g. Tegra) stamps are used as monotonic when they are plausible (not after the read, not older
than 10 s) and otherwise mapped by the smallest read - stamp difference seen (the lower envelope).

Debounce: with ``debounce_us > 0`` the kernel debounces in software and stamps the event when its delayed work
runs, i.e. after the line was stable for the period rounded up to jiffies, plus workqueue latency (see
``debounce_work_func`` in drivers/gpio/gpiolib-cdev.c).  Such stamps are milliseconds late and jittery: the back end
subtracts the nominal period and marks the stream ``timestamp_source=kernel-debounced``.  For sync lines keep
``debounce_us = 0`` and let the trigger matcher's pulse-width filter reject glitches.

Lost events: the kernel numbers every edge per line (``line_seqno``); when its event buffer overflows the oldest
events are dropped, and the gap in sequence numbers is reported as a ``device_drop`` gap of the trigger stream.

Run on real hardware: no (this machine has no GPIO chip); tested against tests/fakes/gpiod, which mimics the
gpiod 2.x Python API.
"""

from __future__ import annotations

import importlib
import logging
import time
from datetime import timedelta

from .base import TriggerInput

log = logging.getLogger("synchub.gpio")


class GpiodTriggerInput(TriggerInput):
    backend = "gpiod"

    def __init__(self, settings, module=None, as_stream: bool = True):
        gpiod = module if module is not None else importlib.import_module("gpiod")
        if not hasattr(gpiod, "request_lines"):
            raise ImportError("the installed gpiod Python module is the v1 API; synchub needs gpiod>=2.1.3")
        self.gpiod = gpiod
        self.line_mod = importlib.import_module(gpiod.__name__ + ".line") if not hasattr(gpiod, "line") else gpiod.line
        if settings.debounce_us > 0:
            self.timestamp_source = "kernel-debounced"
        super().__init__(settings, as_stream)
        self.request = None
        self._hte_offset: int | None = None

    def _open(self) -> None:
        s, line = self.settings, self.line_mod
        edge = {"rising": line.Edge.RISING, "falling": line.Edge.FALLING, "both": line.Edge.BOTH}[s.edge]
        clock = {"monotonic": line.Clock.MONOTONIC, "realtime": line.Clock.REALTIME, "hte": line.Clock.HTE}[
            s.event_clock]
        ls = self.gpiod.LineSettings(direction=line.Direction.INPUT, edge_detection=edge,
                                     debounce_period=timedelta(microseconds=s.debounce_us), event_clock=clock)
        self.request = self.gpiod.request_lines(s.chip, consumer=f"synchub:{s.name}", config={s.line: ls})
        self._last_seq = 0  # the kernel numbers a request's events from 1: events lost before the first read count
        self._start_reader()

    def _close(self) -> None:
        self._stop_reader()
        if self.request is not None:
            try:  # what the kernel buffered before the stop still counts
                if self.request.wait_edge_events(0):
                    self._handle(self.request.read_edge_events())
            except OSError as exc:
                log.debug("%s: final read: %s", self.name, exc)
            try:
                self.request.release()
            except Exception as exc:  # released twice or the chip went away: nothing left to free
                log.debug("%s: release: %s", self.name, exc)
            self.request = None

    def _run(self) -> None:
        while not self._halt.is_set():
            try:
                if not self.request.wait_edge_events(timedelta(milliseconds=100)):
                    continue
                events = self.request.read_edge_events()
            except OSError as exc:
                self._count("read_error", detail=str(exc))
                time.sleep(0.1)
                continue
            self._handle(events)

    def _handle(self, events) -> None:
        rising = self.gpiod.EdgeEvent.Type.RISING_EDGE
        host = time.monotonic_ns()
        rt_off = time.time_ns() - time.monotonic_ns()
        for ev in events:
            t = self.to_reference(int(ev.timestamp_ns), host, rt_off)
            self._edge(t, 1 if ev.event_type == rising else -1, int(ev.line_seqno), host)

    def to_reference(self, ts: int, host_ns: int, realtime_minus_mono: int) -> int:
        """An event timestamp on the configured event clock -> reference (monotonic) ns."""
        s = self.settings
        if s.event_clock == "realtime":
            ts -= realtime_minus_mono
        elif s.event_clock == "hte":
            lag = host_ns - ts
            if not 0 <= lag < 10_000_000_000:
                self._hte_offset = lag if self._hte_offset is None else min(self._hte_offset, lag)
                ts += self._hte_offset
        if s.debounce_us > 0:
            ts -= s.debounce_us * 1000
        return ts
