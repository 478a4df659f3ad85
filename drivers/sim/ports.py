"""The simulated rig's devices in real time: a serial device behind a pty (``SerialPort``: its writer/reader
thread, hang-ups, pings), an in-process ALSA/V4L2-like capture source (``CaptureSource``), and the per-stream truth
they record as samples are delivered (``truth.Recorder``).  ``rig.SimRig`` runs them.
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
from typing import TYPE_CHECKING

import numpy as np

from synchub.agent.core.units import NS
from synchub.drivers.serial import frames as F

from .devices import CaptureDevice, Packet, Period, SerialDevice
from .settings import SimDevice
from .truth import Recorder, StreamTruth

if TYPE_CHECKING:
    from .rig import SimRig

log = logging.getLogger("synchub.sim")


class SerialPort:
    """A serial device behind a pty: its writer/reader thread."""

    MAX_OUTBOX = 1 << 20
    CONFIRM_NS = 500_000_000  # how often delivered packets move into the truth
    # a host that opens the port but never writes gets data this long after opening (pyserial flushes the input
    # right after open; bytes written before that flush would be lost to it)
    OPEN_GRACE_NS = 150_000_000

    def __init__(self, rig: SimRig, dev: SerialDevice):
        self.rig = rig
        self.dev = dev
        self.rec = Recorder(dev.spec, dev.clock)
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
        self.quiet, self.drained = threading.Event(), threading.Event()  # quiesce: no new bytes, then all read
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
                self._check_drained()
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
            if not self.streaming or self.quiet.is_set() or len(self.outbox) > self.MAX_OUTBOX:
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

    def _check_drained(self) -> None:  # quiescing: all written and read by the host, so the truth is exact
        if not self.quiet.is_set() or self.drained.is_set() or (self.streaming and (self.outbox or self._unread())):
            return
        self._confirm()
        self.drained.set()

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
        self.rec = Recorder(dev.spec, dev.clock)
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
