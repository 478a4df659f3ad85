"""The simulated rig in real time: serial devices on real ptys, capture sources in-process, trigger edges for a
GPIO back end, and the truth record.

* Each serial device gets a pty (``os.openpty``, raw mode).  A thread renders its samples chunk by chunk and
  writes the wire format to the pty master at each packet's simulated arrival time (USB latency timer,
  buffering).  It streams while a host has the port open: from the host's first byte (a driver's first ping),
  or 150 ms after the open (past pyserial's input flush); pings are answered with pongs stamped on the device
  clock.  When the host closes the port (pty hang-up) the device stops until a host opens it again; samples
  produced meanwhile are counted as undelivered.  A sample is in the truth once the host has *read* its bytes
  (checked with FIONREAD), so stop readers before the rig for an exact truth.
* ``capture_source(name)`` gives an ALSA/V4L2-like source: ``open()``, ``read(timeout)`` -> ``Period`` delivered
  at its simulated delivery time (buffered when the reader is late, overrun past ``buffer_s``), ``close()``.
* ``subscribe_edges(trigger, callback)`` calls ``callback(SimEdge)`` at each trigger edge in real time, with a
  kernel-like timestamp (true time + 1-3 us) and a per-line seqno.

Reference time is the host's ``CLOCK_MONOTONIC``: a sample at world time ``t`` happens at ``origin_ns + t``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from synchub.agent.core.units import NS

from .devices import CaptureDevice, SerialDevice, device_seed, trigger_edges
from .ports import CaptureSource, SerialPort
from .settings import SimDevice, SimSettings
from .truth import Spill, TriggerTruth, Truth
from .world import World

log = logging.getLogger("synchub.sim")

_ACTIVE: list[SimRig] = []
_ACTIVE_LOCK = threading.Lock()


def active_rig() -> SimRig | None:
    """The most recently started rig of this process that is still running."""
    with _ACTIVE_LOCK:
        return _ACTIVE[-1] if _ACTIVE else None


def resolve_port(port: str, rig: SimRig | None = None) -> str:
    """``sim:NAME`` -> the pty path of sim device NAME of ``rig`` (or the running rig); other ports unchanged."""
    if not port.startswith("sim:"):
        return port
    rig = rig or active_rig()
    name = port[4:]
    if rig is None:
        raise LookupError(f"port {port!r} needs the simulated rig: add a [sim] table to the config "
                          f"(or run `synchub sim --links DIR` and use port = \"DIR/{name}\")")
    return rig.pty_path(name)


@dataclass(frozen=True)
class SimEdge:
    """A trigger edge as a GPIO back end sees it."""

    trigger: str
    t_ns: int  # kernel timestamp (CLOCK_MONOTONIC), true time + 1-3 us
    true_ns: int
    polarity: int  # +1 rising, -1 falling
    seqno: int  # per-line sequence number, from 1


class SimRig:
    """The simulated rig of ``settings``, running in real time from ``origin_ns`` (host CLOCK_MONOTONIC)."""

    def __init__(self, settings: SimSettings | None = None, origin_ns: int | None = None):
        self.settings = settings or SimSettings()
        self.origin_ns = time.monotonic_ns() if origin_ns is None else int(origin_ns)
        s = self.settings
        self.world = World(s.duration_s, seed=s.seed, spec=s.world)
        self.end_rel_ns = int(s.duration_s * NS)
        self._stop = threading.Event()
        self.errors: list[str] = []
        trig = {t.name: t for t in s.triggers}
        self.ports: dict[str, SerialPort] = {}
        self.captures: dict[str, CaptureSource] = {}
        self._devices = s.devices
        for d in s.devices:
            if d.wire_format == "capture":
                self.captures[d.name] = CaptureSource(self, CaptureDevice(d, self.world, self.origin_ns, s.seed,
                                                                          s.duration_s))
        self._subscribers: dict[str, list] = {t.name: [] for t in s.triggers}
        self._edge_truth = {t.name: Spill(f"trigger-{t.name}") for t in s.triggers}  # bounded: spills to disk
        self._edge_lock = threading.Lock()
        self._edge_rng = np.random.default_rng(device_seed(s.seed, "triggers", 9))
        self._trigger_thread: threading.Thread | None = None
        self._unplug_timers: list[threading.Timer] = []
        self._serial_specs = [d for d in s.devices if d.wire_format != "capture"]
        self._trig = trig
        for d in self._serial_specs:  # ptys exist from construction, so drivers can resolve `sim:NAME` early
            self.ports[d.name] = SerialPort(self, SerialDevice(d, self.world, self.origin_ns, s.seed, s.duration_s,
                                                                trig))
        self.started = False
        self.start_ns = 0
        self.stop_ns = 0

    # -- lifecycle
    def start(self) -> SimRig:
        if self.started:
            return self
        self.start_ns = time.monotonic_ns()
        for p in self.ports.values():
            p.thread.start()
        if self._trig:
            self._trigger_thread = threading.Thread(target=self._run_triggers, name="sim-triggers", daemon=True)
            self._trigger_thread.start()
        for u in self.settings.unplug:
            delay = max(0.0, u.at_s - (time.monotonic_ns() - self.origin_ns) / NS)
            timer = threading.Timer(delay, self.unplug, (u.device, u.for_s))
            timer.daemon = True
            timer.start()
            self._unplug_timers.append(timer)
        self.started = True
        with _ACTIVE_LOCK:
            _ACTIVE.append(self)
        return self

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self.stop_ns = time.monotonic_ns()
        for timer in self._unplug_timers:
            timer.cancel()
        for p in self.ports.values():
            if p.thread.ident is not None:
                p.thread.join(timeout=2.0)
        if self._trigger_thread:
            self._trigger_thread.join(timeout=2.0)
        for p in self.ports.values():
            if p.streaming:
                p._confirm(final=True)  # bytes the host has not read by now were not delivered
            p.close()
        with _ACTIVE_LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)

    def __enter__(self) -> SimRig:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.started and not self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped or the world ends; True when stopped."""
        end = self.origin_ns + self.end_rel_ns
        limit = end if timeout is None else min(end, time.monotonic_ns() + int(timeout * NS))
        return self._stop.wait(max(0, limit - time.monotonic_ns()) / NS)

    # -- API for drivers
    @property
    def serial_names(self) -> list[str]:
        return [d.name for d in self._serial_specs]

    def pty_path(self, name: str) -> str:
        if name not in self.ports:
            allowed = ", ".join(self.serial_names) or "none"
            if name in self.captures:
                raise LookupError(f"sim device {name!r} is a capture device (driver = \"sim\"), not a serial port")
            raise LookupError(f"no serial sim device {name!r}; allowed: {allowed}")
        if self.ports[name].unplugged_until:  # its old pty's number may already belong to another program
            raise LookupError(f"sim device {name!r} is unplugged")
        return self.ports[name].path

    def capture_source(self, name: str) -> CaptureSource:
        if name not in self.captures:
            allowed = ", ".join(self.captures) or "none"
            raise LookupError(f"no capture sim device {name!r}; allowed: {allowed}")
        return self.captures[name]

    def device_spec(self, name: str) -> SimDevice:
        return self.settings.find(name)

    def inject(self, name: str, data: bytes = b"", corrupt: int = 0) -> None:
        """Test hook: write ``data`` into serial device ``name``'s byte stream at the next packet boundary, and
        corrupt the first sample of the next ``corrupt`` sample packets (those samples are left out of the truth
        and counted in its ``corrupted``)."""
        port = self.ports[name]
        if data:
            port._inject.append(bytes(data))
        port._corrupt += int(corrupt)

    def quiesce(self, timeout: float = 5.0) -> bool:
        """Test hook: serial devices stop writing (samples from now on are undelivered) and this waits until the
        hosts have read every byte already written, so a reader stopped afterwards has seen exactly the truth's
        delivered samples.  (A reader closed while bytes are in flight makes the pty drop them unseen, and a pty
        cannot tell afterwards which were read.)  False if some host did not drain within ``timeout``."""
        for p in self.ports.values():
            p.quiet.set()
        deadline = time.monotonic() + timeout
        return all(p.drained.wait(max(0.0, deadline - time.monotonic())) for p in self.ports.values()
                   if p.thread.is_alive())

    def unplug(self, name: str, seconds: float) -> None:
        """Test hook: serial device ``name`` disappears (its pty closes, a reader gets an I/O error) and comes
        back after ``seconds`` on a new pty (``pty_path`` changes; meanwhile it raises ``LookupError``, as a udev link
        disappears with its device); samples meanwhile are undelivered."""
        self.ports[name].unplugged_until = -int(seconds * NS)

    def subscribe_edges(self, trigger: str, callback) -> None:
        if trigger not in self._subscribers:
            allowed = ", ".join(self._subscribers) or "none"
            raise LookupError(f"no sim trigger {trigger!r}; allowed: {allowed}")
        self._subscribers[trigger].append(callback)

    def unsubscribe_edges(self, trigger: str, callback) -> None:
        subs = self._subscribers.get(trigger, [])
        if callback in subs:
            subs.remove(callback)

    # -- triggers
    def _run_triggers(self) -> None:
        seq = {name: 0 for name in self._trig}
        done = max(0, self.start_ns - self.origin_ns)
        chunk = NS // 4
        try:
            while not self._stop.is_set() and done < self.end_rel_ns:
                hi = min(done + chunk, self.end_rel_ns)
                edges = []
                for name, t in self._trig.items():
                    edges += [(true, pol, name) for true, pol in trigger_edges(t, done, hi, self.origin_ns)]
                edges.sort()
                for true, pol, name in edges:
                    j = self._trig[name].kernel_jitter_us
                    stamp = true + int(self._edge_rng.uniform(1_000, 1_000 + 1_000 * j))
                    if self._stop.wait(max(0, stamp - time.monotonic_ns()) / NS):
                        return
                    seq[name] += 1
                    edge = SimEdge(name, stamp, true, pol, seq[name])
                    with self._edge_lock:
                        for key, v in (("t_ns", true), ("polarity", pol), ("seqno", seq[name])):
                            self._edge_truth[name].append(key, np.array([v], np.int64))
                    for cb in list(self._subscribers[name]):
                        try:
                            cb(edge)
                        except Exception:
                            log.exception("sim trigger %s: subscriber failed", name)
                done = hi
                self._stop.wait(max(0, self.origin_ns + done - chunk // 2 - time.monotonic_ns()) / NS)
        except Exception:
            log.exception("sim triggers failed")
            self.errors.append("triggers")

    # -- truth
    def truth(self) -> Truth:
        t = Truth(origin_ns=self.origin_ns, seed=self.settings.seed, start_ns=self.start_ns,
                  stop_ns=self.stop_ns or time.monotonic_ns())
        for name, p in self.ports.items():
            t.streams[name] = p.truth()
        for name, c in self.captures.items():
            t.streams[name] = c.truth()
        with self._edge_lock:
            for name, sp in self._edge_truth.items():
                t.triggers[name] = TriggerTruth(name, sp.array("t_ns", np.int64), sp.array("polarity", np.int8),
                                                sp.array("seqno", np.int64))
        return t

    def stats(self) -> dict[str, dict]:
        out = {}
        for name, p in self.ports.items():
            out[name] = {"path": p.path, "streaming": p.streaming, "delivered": p.rec.delivered,
                         "dropped": p.dev.dropped, "undelivered": p.undelivered, "pings": p.dev.pings}
        for name, c in self.captures.items():
            out[name] = {"opened": c.opened, "dropped": c.dev.dropped, "overruns": c.overruns}
        return out
