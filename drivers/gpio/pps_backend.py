"""``backend = "pps"``: a trigger line read through the kernel PPS API (``/dev/ppsN``, ``pps_abi``).

Where a PPS source already has a kernel driver (the ``pps-gpio`` device-tree overlay on a Pi, a GPS receiver's DCD
through ``pps-ldisc``), the GPIO pin belongs to that driver and gpiod cannot request it: read ``/dev/ppsN`` instead.
The kernel stamps each pulse in its interrupt handler (CLOCK_REALTIME); the back end waits for each event with
``PPS_FETCH`` and moves the stamp onto the reference clock with the realtime - monotonic offset read right after
the fetch (a step of the wall clock in those microseconds would leak in, as with gpiod's realtime event clock).

Edges: ``edge = "rising"`` reads *assert* events (the on-time edge; for pps-gpio with ``assert-falling-edge`` that
is the falling one), ``"falling"`` clear events, ``"both"`` both (the device must capture them: pps-gpio's
``capture-clear``).  The kernel keeps only the latest event of each kind: when two arrive between fetches (the
agent stalled for a second) the sequence numbers show it, and the missed pulses are recorded as a gap.  Events
already in the device when the back end opens it are older than the agent and are not reported.

Run on real hardware: no (this machine has no PPS device); tested against tests/fakes/pps.py, which mimics the
ioctl interface byte for byte, and its struct layouts against <linux/pps.h> compiled here.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import time

from . import pps_abi as abi
from .base import TriggerInput

log = logging.getLogger("synchub.gpio")

WAIT_S = 0.2  # longest single wait for an event (the stop request is seen within this)


class PpsError(OSError):
    """The device cannot be used as configured; the message names the device and what to change."""


class PpsTriggerInput(TriggerInput):
    backend = "pps"

    def __init__(self, settings, module=None, as_stream: bool = True, opener=None):
        self.opener = opener if opener is not None else (module.open if module is not None else abi.DevFile)
        super().__init__(settings, as_stream)
        self.info = dataclasses.replace(self.info, source_id=f"pps:{settings.device}")
        self.dev = None
        self._seq = {"assert": None, "clear": None}
        self.wanted = {"rising": ("assert",), "falling": ("clear",), "both": ("assert", "clear")}[settings.edge]

    def _open(self) -> None:
        path = self.settings.device
        try:
            self.dev = self.opener(path)
        except OSError as exc:
            raise PpsError(exc.errno, f"{path}: cannot open PPS device: {exc.strerror}") from None
        try:
            caps = abi.get_cap(self.dev)
            _api, mode = abi.get_params(self.dev)
            first = abi.fetch(self.dev, 0.0)
        except OSError as exc:
            self.dev.close()
            self.dev = None
            what = "not a PPS device" if exc.errno == errno.ENOTTY else exc.strerror
            raise PpsError(exc.errno, f"{path}: {what}") from None
        bits = {"assert": abi.PPS_CAPTUREASSERT, "clear": abi.PPS_CAPTURECLEAR}
        for kind in self.wanted:
            if not mode & bits[kind]:
                self.dev.close()
                self.dev = None
                hint = " (pps-gpio: add capture-clear to its device-tree node)" if kind == "clear" else ""
                raise PpsError(errno.EINVAL, f"{path} does not capture {kind} events (mode {mode:#x}, capabilities "
                                             f"{caps:#x}){hint}; use edge = \"rising\" for assert events")
        if not caps & abi.PPS_CANWAIT:
            log.warning("%s: device cannot wait for events (caps %#x): polling", path, caps)
        self.can_wait = bool(caps & abi.PPS_CANWAIT)
        self._seq = {"assert": first.assert_seq, "clear": first.clear_seq}  # older than us: not reported
        self._start_reader()

    def _close(self) -> None:
        self._stop_reader()
        if self.dev is not None:
            self.dev.close()
            self.dev = None

    def _run(self) -> None:
        while not self._halt.is_set():
            try:
                info = abi.fetch(self.dev, WAIT_S if self.can_wait else 0.0)
            except TimeoutError:
                continue
            except InterruptedError:
                continue
            except OSError as exc:  # the device went away (ENODEV) or another fault: counted, retried
                self._count("read_error", detail=f"{self.settings.device}: {exc.strerror or exc}")
                self._halt.wait(0.5)
                continue
            self._handle(info, time.monotonic_ns(), time.time_ns() - time.monotonic_ns())
            if not self.can_wait:
                self._halt.wait(0.05)

    def _handle(self, info: abi.PpsInfo, host_ns: int, realtime_minus_mono: int) -> None:
        """New events of ``info`` as edges on the reference clock, in time order; pulses the kernel overwrote
        before this fetch (a sequence number jump) are a ``device_drop`` gap."""
        new = []
        for kind in self.wanted:
            seq, t = (info.assert_seq, info.assert_ns) if kind == "assert" else (info.clear_seq, info.clear_ns)
            last = self._seq[kind]
            if seq == last:
                continue
            self._seq[kind] = seq
            if seq < last:  # the counter went back: the device was re-registered
                self._count("seq_backwards", detail=f"{kind} sequence {seq} after {last}")
            elif seq > last + 1:
                self.lost += seq - last - 1
                if self.sink is not None:
                    self.sink.gap(self.name, seq - last - 1, "device_drop",
                                  detail=f"PPS {kind} events overwritten before they were read (sequence {last} -> {seq})")
            new.append((t - realtime_minus_mono, 1 if kind == "assert" else -1))
        for t, polarity in sorted(new):
            self._edge(int(t), polarity, -1, host_ns)
