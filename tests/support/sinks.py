"""Sinks that record what a driver reports (``synchub.drivers.base.DriverSink``), for driver tests.

* ``RecordingSink``: everything, per stream (serial devices, the simulated rig);
* ``TriggerSink``: a trigger input's edges and line samples (GPIO back ends, PPS);
* ``CaptureSink``: a capture driver's samples, gaps and resets with how many samples came before each (ALSA, V4L2;
  evidence is an error there), and ``run_capture``.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from synchub.agent.core.evidence import TriggerEdge
from synchub.agent.core.stream import Gap


class RecordingSink:
    def __init__(self):
        self.lock = threading.Lock()
        self.chunks, self.gaps, self.resets, self.items, self.problems = {}, [], [], [], []

    def samples(self, stream, data, device_ns, host_ns):
        with self.lock:
            self.chunks.setdefault(stream, []).append((data, device_ns, host_ns))

    def gap(self, stream, count, cause, device_ns_from=0, device_ns_to=0, detail=""):
        with self.lock:
            self.gaps.append((stream, count, cause, detail))

    def reset(self, stream, device_ns, previous_ns=0, detail=""):
        with self.lock:
            self.resets.append((stream, device_ns, previous_ns, detail))

    def evidence(self, item):
        with self.lock:
            self.items.append(item)

    def problem(self, stream, reason, detail=""):
        with self.lock:
            self.problems.append((stream, reason, detail))

    def times(self, stream):
        parts = self.chunks.get(stream, [])
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])

    def count(self, stream):
        with self.lock:
            return sum(len(p[1]) for p in self.chunks.get(stream, []))

    def of(self, kind):
        """The evidence items of a type, in the order they came."""
        with self.lock:
            return [e for e in self.items if isinstance(e, kind)]

    def reasons(self):
        """The reasons of the problems reported."""
        with self.lock:
            return [p[1] for p in self.problems]


class TriggerSink:
    def __init__(self):
        self.lock = threading.Lock()
        self.ev: list[TriggerEdge] = []
        self.got: list = []
        self.gaps: list = []
        self.problems: list = []

    def evidence(self, item):
        with self.lock:
            self.ev.append(item)

    def samples(self, stream, data, device_ns, host_ns):
        with self.lock:
            self.got.append((stream, data, device_ns, host_ns))

    def gap(self, stream, count, cause, device_ns_from=0, device_ns_to=0, detail=""):
        self.gaps.append((stream, count, cause, detail))

    def reset(self, stream, device_ns, previous_ns=0, detail=""):
        raise AssertionError("a trigger input reports no clock reset")

    def problem(self, stream, reason, detail=""):
        self.problems.append((stream, reason))


class CaptureSink:
    def __init__(self):
        self.lock = threading.Lock()
        self.chunks = []
        self.gaps = []
        self.resets = []
        self.problems = []

    def samples(self, stream, data, device_ns, host_ns):
        assert len(data) == len(device_ns) == len(host_ns)
        with self.lock:
            self.chunks.append((data, device_ns, host_ns))

    def gap(self, stream, count, cause, device_ns_from=0, device_ns_to=0, detail=""):
        Gap(stream, 0, count, cause, device_ns_from, device_ns_to, detail)  # a valid record
        with self.lock:
            self.gaps.append((count, cause, device_ns_from, device_ns_to, detail, self.n()))

    def reset(self, stream, device_ns, previous_ns=0, detail=""):
        with self.lock:
            self.resets.append((previous_ns, device_ns, detail, self.n()))

    def evidence(self, item):
        raise AssertionError("a capture driver reports no evidence")

    def problem(self, stream, reason, detail=""):
        with self.lock:
            self.problems.append((reason, detail))

    def n(self):
        return sum(len(c[0]) for c in self.chunks)

    def wait(self, n, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if self.n() >= n:
                    return
            time.sleep(0.01)
        raise AssertionError(f"only {self.n()} of {n} samples/frames arrived")


def run_capture(driver, n, timeout=5.0):
    sink = CaptureSink()
    driver.start(sink)
    try:
        sink.wait(n, timeout)
    finally:
        driver.stop()
    return sink


def wait_for(pred, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return False
