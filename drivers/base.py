"""The driver interface.  A driver owns one device (its I/O, thread and reconnects) and reports what it reads
to a ``DriverSink``: samples with raw device and host receive times, gaps, and clock evidence.

Drivers never assign sequence numbers or corrected times; the pipeline does (``synchub.agent.pipeline``: the
hub numbers samples, the shipper corrects them).
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from synchub.agent.core.evidence import Evidence
from synchub.agent.core.stream import StreamInfo, StreamStats


class DriverSink(Protocol):
    def samples(self, stream: str, data: Any, device_ns: np.ndarray, host_ns: np.ndarray) -> None:
        """Consecutive samples of ``stream``: data has len n, times are int64 ns arrays of len n."""

    def gap(self, stream: str, count: int, cause: str, device_ns_from: int = 0, device_ns_to: int = 0,
            detail: str = "") -> None:
        """``count`` samples were lost before the next ``samples`` call."""

    def reset(self, stream: str, device_ns: int, previous_ns: int = 0, detail: str = "") -> None:
        """The device clock reset: the next ``samples`` call starts a new timeline at device time ``device_ns``
        (``previous_ns``: the last device time before it); the pipeline records it as a ``ClockReset``."""

    def evidence(self, item: Evidence) -> None:
        """Clock evidence (trigger edges, probes, offsets)."""

    def problem(self, stream: str, reason: str, detail: str = "") -> None:
        """A counted, logged problem that lost no samples (a malformed line with no sample in it, a reconnect)."""


@dataclass(frozen=True)
class DriverContext:
    """What the agent hands every driver besides its settings: the in-process simulated rig (or None) and the
    agent's name.  Driver constructors take ``(common: StreamCommon, settings, context: DriverContext)``."""

    agent_name: str = "synchub-agent"
    rig: Any = None  # synchub.drivers.sim.rig.SimRig when the config has a [sim] table


class Driver(abc.ABC):
    """Base of all stream drivers.  ``start`` returns at once; reading happens on the driver's own thread."""

    def __init__(self, info: StreamInfo):
        self.info = info
        self.stats = StreamStats()
        # liveness: a driver whose loop calls ``beat()`` each turn (also while its device is missing) is watched by
        # this time; one that never beats is watched by its thread being alive (``synchub.agent.pipeline.liveness``)
        self.heartbeat_ns = 0
        self.connected = True  # the device is held; a driver that loses it sets False (a "missing" stream)
        self.last_error = ""  # why the device is not held, in one line

    def holds_device(self) -> bool:
        """The device is held (port open, program running); ``connected`` may be a bool or a threading.Event."""
        c = self.connected
        return c.is_set() if hasattr(c, "is_set") else bool(c)

    def beat(self) -> None:
        """Called by the driver's own loop every turn: it is alive (not stuck in a read)."""
        self.heartbeat_ns = time.monotonic_ns()

    @abc.abstractmethod
    def start(self, sink: DriverSink) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop reading and release the device; flush what was read."""

    def health(self) -> dict[str, Any]:
        """Counters and state for status/progress output."""
        return {"samples": self.stats.samples, "malformed": self.stats.malformed, "gaps": self.stats.gaps}
