"""A counter device written against synchub's public driver interface only."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from synchub.agent.core.settings import setting
from synchub.agent.core.stream import StreamInfo
from synchub.drivers.base import Driver


@dataclass(frozen=True)
class CounterSettings:
    rate_hz: float = setting(100.0, min=1.0, max=10_000.0, doc="samples per second")
    start: int = setting(0, doc="first value")


class CounterDriver(Driver):
    """A counter at rate_hz, stamped with the host clock (a third-party plugin)."""

    settings = CounterSettings

    def __init__(self, common, settings: CounterSettings, context=None):
        super().__init__(StreamInfo(common.name, common.type, settings.rate_hz, 1, "double64", ("count",)))
        self.cfg = settings
        self._stop = threading.Event()
        self._thread = None

    def start(self, sink) -> None:
        def run():
            k = self.cfg.start
            while not self._stop.wait(1.0 / self.cfg.rate_hz):
                t = time.monotonic_ns()
                sink.samples(self.info.name, np.array([[float(k)]]), np.array([t]), np.array([t]))
                self.stats.samples += 1
                k += 1

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def helper():
    """Not a driver."""
