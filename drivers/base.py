"""The driver interface.  A driver owns one device (its I/O, thread and reconnects) and reports what it reads
to a ``DriverSink``: samples with raw device and host receive times, gaps, and clock evidence.

Drivers never assign sequence numbers or corrected times; the pipeline does (``synchub.agent.pipeline``: the
hub numbers samples, the shipper corrects them).
"""

from __future__ import annotations

import abc
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

    @abc.abstractmethod
    def start(self, sink: DriverSink) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop reading and release the device; flush what was read."""

    def health(self) -> dict[str, Any]:
        """Counters and state for status/progress output."""
        return {"samples": self.stats.samples, "malformed": self.stats.malformed, "gaps": self.stats.gaps}
