"""RPi.GPIO back end: edge callbacks stamped in userspace.

RPi.GPIO runs callbacks on its own thread after the kernel woke it, so the stamp (``time.monotonic_ns()`` at the top
of the callback) is late by tens of microseconds to milliseconds under load.  The stream's quality metadata says
``timestamp_source=userspace`` and the clock layer uses a wide edge sigma for it.  No sequence numbers: lost edges
are not detectable.  With ``edge = "both"`` the level is read in the callback to tell rising from falling (racy for
pulses shorter than the callback latency).  ``debounce_us`` becomes RPi.GPIO's ``bouncetime`` (ms, at least 1).

Run on real hardware: no; tested against tests/fakes/RPi, which mimics the RPi.GPIO API.
"""

from __future__ import annotations

import importlib
import time

from .base import TriggerInput


class RpiGpioTriggerInput(TriggerInput):
    backend = "rpi-gpio"
    timestamp_source = "userspace"

    def __init__(self, settings, module=None, as_stream: bool = True):
        self.GPIO = module if module is not None else importlib.import_module("RPi.GPIO")
        if settings.event_clock != "monotonic":
            raise ValueError("rpi-gpio stamps edges in userspace on the monotonic clock; event_clock must be monotonic")
        super().__init__(settings, as_stream)
        self._open_done = False

    def _open(self) -> None:
        G, s = self.GPIO, self.settings
        mode = G.getmode()
        if mode is None:
            G.setmode(G.BCM)
        elif mode != G.BCM:
            raise ValueError("RPi.GPIO is already in BOARD numbering; synchub's `line` is a BCM pin number")
        G.setup(s.line, G.IN)
        edge = {"rising": G.RISING, "falling": G.FALLING, "both": G.BOTH}[s.edge]
        kw = {"callback": self._callback}
        if s.debounce_us > 0:
            kw["bouncetime"] = max(1, round(s.debounce_us / 1000))
        G.add_event_detect(s.line, edge, **kw)
        self._open_done = True

    def _callback(self, channel: int) -> None:
        t = time.monotonic_ns()
        edge = self.settings.edge
        if edge == "rising":
            pol = 1
        elif edge == "falling":
            pol = -1
        else:
            pol = 1 if self.GPIO.input(channel) else -1
        self._edge(t, pol, -1, t)

    def _close(self) -> None:
        if self._open_done:
            self.GPIO.remove_event_detect(self.settings.line)
            self.GPIO.cleanup(self.settings.line)
            self._open_done = False
