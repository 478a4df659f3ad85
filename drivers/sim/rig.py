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

import collections
import dataclasses
import errno
import fcntl
import heapq
import itertools
import logging
import os
import select
import struct
import termios
import threading
import time
import tty
from dataclasses import dataclass

import numpy as np

from synchub.agent.core.units import NS
from synchub.drivers import frames as F

from .devices import CaptureDevice, Packet, Period, SerialDevice, device_seed, trigger_edges
from .settings import SimDevice, SimSettings
from .truth import StreamTruth, TriggerTruth, Truth
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


class _Recorder:
    """Per-stream truth, appended as samples are delivered."""

    def __init__(self, spec: SimDevice, clock):
        self.truth = StreamTruth(spec.name, spec.modality, spec.wire_format, clock=dataclasses.asdict(spec.clock))
        self.parts: dict[str, list] = collections.defaultdict(list)
        self.lock = threading.Lock()

    def samples(self, true, dev, seg, host_ns: int | np.ndarray, conn: int) -> None:
        with self.lock:
            p = self.parts
            p["true_ns"].append(true)
            p["device_ns"].append(dev)
            p["segment"].append(seg)
            p["host_ns"].append(np.broadcast_to(np.asarray(host_ns, np.int64), true.shape).copy())
            p["conn"].append(np.full(len(true), conn, np.int32))
            if len(p["true_ns"]) >= 512:  # keep long runs light: a few big arrays, not millions of small ones
                for key in ("true_ns", "device_ns", "segment", "host_ns", "conn"):
                    p[key] = [np.concatenate(p[key])]

    def add(self, key: str, value) -> None:
        with self.lock:
            self.parts[key].append(np.atleast_1d(value))

    def build(self, dropped: int, undelivered: int, resets_ns: np.ndarray) -> StreamTruth:
        with self.lock:
            t = dataclasses.replace(self.truth)
            for key, parts in self.parts.items():
                if parts:
                    setattr(t, key, np.concatenate(parts).astype(getattr(t, key).dtype))
            t.dropped, t.undelivered, t.resets_ns = dropped, undelivered, resets_ns
            return t


class _SerialPort:
    """A serial device behind a pty: its writer/reader thread."""

    MAX_OUTBOX = 1 << 20
    CONFIRM_NS = 500_000_000  # how often delivered packets move into the truth
    # a host that opens the port but never writes gets data this long after opening (pyserial flushes the input
    # right after open; bytes written before that flush would be lost to it)
    OPEN_GRACE_NS = 150_000_000

    def __init__(self, rig: SimRig, dev: SerialDevice):
        self.rig = rig
        self.dev = dev
        self.rec = _Recorder(dev.spec, dev.clock)
        self._open_pty()
        self.unplugged_until = 0
        self.open_since = 0
        self.heap: list = []
        self._order = itertools.count()
        self.outbox = bytearray()
        # (end offset in the byte stream of this connection, packet) of packets not yet known to be read
        self.out_packets: collections.deque = collections.deque()
        self.written = 0  # bytes of this connection handed to the kernel
        self.queued = 0  # bytes of this connection put in the outbox
        self.streaming = False
        self.conn = -1
        self.undelivered = 0
        self.host_bytes = 0
        self.cmd_errors = 0
        self.decoder = dev.command_decoder()
        self._inject: collections.deque = collections.deque()  # test hook: bytes to write at the next boundary
        self._corrupt = 0  # test hook: corrupt the first sample of this many coming sample packets
        self.corrupted = 0
        self.thread = threading.Thread(target=self._run, name=f"sim-{dev.name}", daemon=True)

    def _open_pty(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        os.close(slave)  # the host opens the path; a hang-up on the master tells us when it closes again
        os.set_blocking(self.master, False)

    # -- thread
    def _run(self) -> None:
        dev, rig = self.dev, self.rig
        poller = select.poll()
        poller.register(self.master, select.POLLIN)
        next_confirm = 0
        try:
            while not rig._stop.is_set():
                now = time.monotonic_ns()
                rel = now - rig.origin_ns
                if rel >= rig.end_rel_ns:
                    break
                if self.unplugged_until:
                    if self.unplugged_until < 0:  # unplug requested: the pty goes away
                        self._hangup()
                        poller.unregister(self.master)
                        os.close(self.master)
                        self.unplugged_until = now - self.unplugged_until
                        log.info("sim %s: unplugged", dev.name)
                    elif now >= self.unplugged_until:
                        self._open_pty()
                        poller.register(self.master, select.POLLIN)
                        self.decoder = dev.command_decoder()
                        self.unplugged_until = 0
                        log.info("sim %s: plugged in again at %s", dev.name, self.path)
                while dev.done_rel <= min(rel + dev.chunk_ns, rig.end_rel_ns):
                    for p in dev.render_until(min(dev.done_rel + dev.chunk_ns, rig.end_rel_ns)):
                        heapq.heappush(self.heap, (p.arrival_ns, next(self._order), p))
                    if dev.done_rel >= rig.end_rel_ns:
                        break
                self._emit_due(now)
                self._flush()
                if self.streaming and now >= next_confirm:
                    self._confirm()
                    next_confirm = now + self.CONFIRM_NS
                wake = rig.origin_ns + dev.done_rel - dev.chunk_ns // 2
                if self.heap:
                    wake = min(wake, self.heap[0][0])
                if self.outbox:
                    wake = min(wake, now + 2_000_000)
                timeout_ms = max(0.0, (wake - time.monotonic_ns()) / 1e6)
                events = poller.poll(min(timeout_ms, 50.0)) if not self.unplugged_until else []
                hup = False
                for _, ev in events:
                    if ev & (select.POLLHUP | select.POLLERR):
                        hup = True
                        self._hangup()
                        time.sleep(min(timeout_ms, 20.0) / 1e3)  # poll keeps reporting HUP until a host opens
                    elif ev & select.POLLIN:
                        self._read_host()
                if self.unplugged_until:
                    time.sleep(min(timeout_ms, 50.0) / 1e3)
                elif hup:
                    self.open_since = 0
                elif not self.streaming:  # a host has the port open but has sent nothing (no pings)
                    now = time.monotonic_ns()
                    self.open_since = self.open_since or now
                    if now - self.open_since >= self.OPEN_GRACE_NS:
                        self._connected("opened")
        except Exception:  # a bug here must not pass silently
            log.exception("sim device %s failed", dev.name)
            rig.errors.append(dev.name)

    def _read_host(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EAGAIN):
                if exc.errno == errno.EIO:
                    self._hangup()
                return
            raise
        if not data:
            return
        now = time.monotonic_ns()
        self.host_bytes += len(data)
        if not self.streaming:
            self._connected("sent a byte")
        for item in self.decoder.feed(data):
            if isinstance(item, F.Ping):
                p = self.dev.pong(item.token, now)
                heapq.heappush(self.heap, (p.arrival_ns, next(self._order), p))
            elif isinstance(item, F.Malformed):
                self.cmd_errors += 1

    def _connected(self, how: str) -> None:
        self.streaming = True
        self.conn += 1
        log.debug("sim %s: host %s (connection %d)", self.dev.name, how, self.conn)

    def _hangup(self) -> None:
        if self.streaming:
            log.debug("sim %s: host closed the port", self.dev.name)
            self.streaming = False
            self._confirm(final=True)

    def _unread(self) -> int | None:
        """Bytes written to the pty that the host has not read yet (FIONREAD on a second slave fd)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            return None
        finally:
            os.close(fd)

    def _confirm(self, final: bool = False) -> None:
        """Move packets the host has read into the truth; with ``final`` (host gone, rig stopping) the rest
        (still in the outbox or unread in the pty) counts as undelivered."""
        unread = self._unread()
        if unread is not None:
            upto = self.written - unread
            while self.out_packets and self.out_packets[0][0] <= upto:
                self._record(self.out_packets.popleft()[1])
        if final:
            self.undelivered += sum(len(p.true_ns) for _, p in self.out_packets)
            self.outbox.clear()
            self.out_packets.clear()
            self.queued = self.written = 0

    def _emit_due(self, now: int) -> None:
        while self.heap and self.heap[0][0] <= now:
            _, _, p = heapq.heappop(self.heap)
            if not self.streaming or len(self.outbox) > self.MAX_OUTBOX:
                self.undelivered += len(p.true_ns)
                continue
            while self._inject:
                self.outbox += self._inject.popleft()
            if self._corrupt > 0 and p.kind == "samples":
                self._corrupt -= 1
                self.corrupted += 1
                data = bytearray(p.data)
                data[8] ^= 0xFF  # inside the first frame/line: a CRC, checksum or printable-text failure
                p = dataclasses.replace(p, data=bytes(data), true_ns=p.true_ns[1:], device_ns=p.device_ns[1:],
                                        segment=p.segment[1:])
            self.outbox += p.data
            self.queued += len(p.data)
            self.out_packets.append((self.queued, p))

    def _host_gone(self) -> bool:
        """POLLHUP on the master: the host has closed the port, so bytes written now would never be read."""
        poller = select.poll()
        poller.register(self.master, select.POLLIN)
        return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0))

    def _flush(self) -> None:
        if self.outbox:
            if self.streaming and self._host_gone():  # don't count bytes written after the host left as delivered
                self._hangup()
                return
            try:
                n = os.write(self.master, self.outbox)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EIO):
                    return
                raise
            del self.outbox[:n]
            self.written += n

    def _record(self, p: Packet) -> None:
        rec = self.rec
        if p.kind == "samples":
            rec.samples(p.true_ns, p.device_ns, p.segment, p.arrival_ns, self.conn)
        elif p.kind == "edge":
            true, level, _counter, dev = p.extra
            rec.add("edge_true_ns", np.int64(true))
            rec.add("edge_level", np.int8(level))
            rec.add("edge_device_ns", np.int64(dev))
        elif p.kind == "pong":
            token, true, dev = p.extra
            rec.add("ping_token", np.int64(token))
            rec.add("ping_true_ns", np.int64(true))
            rec.add("ping_device_ns", np.int64(dev))

    def truth(self) -> StreamTruth:
        resets = self.dev.clock.resets_ns + self.rig.origin_ns
        resets = resets[resets < self.rig.origin_ns + self.dev.done_rel]
        t = self.rec.build(self.dev.dropped, self.undelivered, resets)
        t.corrupted = self.corrupted
        return t

    def close(self) -> None:
        try:
            os.close(self.master)
        except OSError:
            pass


class CaptureSource:
    """An in-process audio/video source of the rig, read like ALSA periods or V4L2 buffers.

    ``read`` blocks until the next period's delivery time and returns it (``Period``: data, device_ns on the
    device's own clock, true_ns, index) with ``host_ns`` set by the caller.  A reader that falls more than
    ``buffer_s`` behind loses the oldest periods (an overrun, counted in ``overruns`` and the truth's dropped).
    """

    def __init__(self, rig: SimRig, dev: CaptureDevice, buffer_s: float = 2.0):
        self.rig = rig
        self.dev = dev
        self.rec = _Recorder(dev.spec, dev.clock)
        self.buffer_ns = int(buffer_s * NS)
        self.queue: collections.deque[Period] = collections.deque()
        self.opened = False
        self.overruns = 0
        self.undelivered = 0
        self.conn = -1
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.dev.name

    @property
    def spec(self) -> SimDevice:
        return self.dev.spec

    @property
    def rate_hz(self) -> float:
        return self.dev.spec.rate_hz

    def open(self) -> None:
        with self._lock:
            if self.opened:
                return
            self._catch_up(time.monotonic_ns(), deliver=False)
            self.opened = True
            self.conn += 1

    def close(self) -> None:
        with self._lock:
            self.opened = False
            self.undelivered += sum(len(p.true_ns) for p in self.queue)
            self.queue.clear()

    def _catch_up(self, now: int, deliver: bool) -> None:
        dev = self.dev
        rel = min(now - self.rig.origin_ns, self.rig.end_rel_ns)
        while dev.done_rel < rel + dev.chunk_ns and dev.done_rel < self.rig.end_rel_ns:
            for p in dev.render_until(min(dev.done_rel + dev.chunk_ns, self.rig.end_rel_ns)):
                if deliver or p.delivery_ns > now:
                    self.queue.append(p)
                else:
                    self.undelivered += len(p.true_ns)
        # periods delivered long ago and never read: overrun
        while self.queue and self.queue[0].delivery_ns < now - self.buffer_ns:
            p = self.queue.popleft()
            self.overruns += 1
            self.dev.dropped += len(p.true_ns)

    def read(self, timeout: float | None = 1.0) -> Period | None:
        """The next period once delivered; ``None`` on timeout, when closed or when the rig stopped."""
        deadline = None if timeout is None else time.monotonic_ns() + int(timeout * NS)
        while True:
            with self._lock:
                if not self.opened or self.rig._stop.is_set():
                    return None
                now = time.monotonic_ns()
                self._catch_up(now, deliver=True)
                if self.queue and self.queue[0].delivery_ns <= now:
                    p = self.queue.popleft()
                    self.rec.samples(p.true_ns, p.device_ns, p.segment, p.delivery_ns, self.conn)
                    return p
                wake = self.queue[0].delivery_ns if self.queue else now + self.dev.chunk_ns // 2
                if not self.queue and self.dev.done_rel >= self.rig.end_rel_ns:
                    return None
            if deadline is not None:
                if now >= deadline:
                    return None
                wake = min(wake, deadline)
            self.rig._stop.wait(max(0, wake - now) / NS)

    def truth(self) -> StreamTruth:
        with self._lock:
            resets = self.dev.clock.resets_ns + self.rig.origin_ns
            resets = resets[resets < self.rig.origin_ns + self.dev.done_rel]
            return self.rec.build(self.dev.dropped, self.undelivered, resets)


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
        self.ports: dict[str, _SerialPort] = {}
        self.captures: dict[str, CaptureSource] = {}
        self._devices = s.devices
        for d in s.devices:
            if d.wire_format == "capture":
                self.captures[d.name] = CaptureSource(self, CaptureDevice(d, self.world, self.origin_ns, s.seed,
                                                                          s.duration_s))
        self._subscribers: dict[str, list] = {t.name: [] for t in s.triggers}
        self._edge_truth: dict[str, list] = {t.name: [] for t in s.triggers}
        self._edge_rng = np.random.default_rng(device_seed(s.seed, "triggers", 9))
        self._trigger_thread: threading.Thread | None = None
        self._serial_specs = [d for d in s.devices if d.wire_format != "capture"]
        self._trig = trig
        for d in self._serial_specs:  # ptys exist from construction, so drivers can resolve `sim:NAME` early
            self.ports[d.name] = _SerialPort(self, SerialDevice(d, self.world, self.origin_ns, s.seed, s.duration_s,
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
        self.started = True
        with _ACTIVE_LOCK:
            _ACTIVE.append(self)
        return self

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self.stop_ns = time.monotonic_ns()
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

    def unplug(self, name: str, seconds: float) -> None:
        """Test hook: serial device ``name`` disappears (its pty closes, a reader gets an I/O error) and comes
        back after ``seconds`` on a new pty (``pty_path`` changes); samples meanwhile are undelivered."""
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
                    self._edge_truth[name].append((true, pol, seq[name]))
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
        for name, rows in self._edge_truth.items():
            rows = list(rows)
            arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
            t.triggers[name] = TriggerTruth(name, arr[:, 0].copy(), arr[:, 1].astype(np.int8), arr[:, 2].copy())
        return t

    def stats(self) -> dict[str, dict]:
        out = {}
        for name, p in self.ports.items():
            out[name] = {"path": p.path, "streaming": p.streaming, "delivered": sum(map(len, p.rec.parts["true_ns"])),
                         "dropped": p.dev.dropped, "undelivered": p.undelivered, "pings": p.dev.pings}
        for name, c in self.captures.items():
            out[name] = {"opened": c.opened, "dropped": c.dev.dropped, "overruns": c.overruns}
        return out
