"""A serial/USB device read with pyserial: imu-bin, tlm-nmea or log-text.

The driver's thread reads what the port has, stamps the host receive time (``time.monotonic_ns()`` right after
the read returns) and hands the bytes to the pure ``protocol.SerialProtocol``, which parses them and reports to the
sink (samples, gaps, clock resets, trigger edges, probes; pyserial's ``serial.threaded`` split of the I/O thread
and the protocol).  A round-trip probe goes out every ``probe_interval_s``, the first right after the port opens;
with ``probe_interval_s = 0`` the driver never writes to the device.

If the port disappears (USB unplugged, the simulator stopped) the driver logs it once, retries every
``reconnect_s`` and logs the reconnection; samples lost meanwhile are recorded as a ``disconnect`` gap.
``port = "sim:NAME"`` means the pty of sim device NAME of the in-process simulated rig.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import serial

from synchub.agent.core.options import StreamCommon
from synchub.drivers.base import Driver, DriverContext, DriverSink

from .protocol import SerialProtocol, SerialSettings, build_stream_info

log = logging.getLogger("synchub.serial")

def _why(exc: Exception) -> str:
    """A short reason: pyserial wraps the OS error in a long message; its errno says it in a few words."""
    code = getattr(exc, "errno", None)
    return os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)


class SerialStreamDriver(Driver):
    def __init__(self, common: StreamCommon, settings: SerialSettings, context: DriverContext | None = None):
        super().__init__(build_stream_info(common, settings))
        self.common = common
        self.settings = settings
        self.rig = context.rig if context is not None else None
        self.name = common.name
        if settings.port.startswith("sim:") and self.rig is None:
            raise ValueError(f"port {settings.port!r} needs the simulated rig: add a [sim] table to the config")
        if settings.port.startswith("sim:"):
            self.rig.pty_path(settings.port[4:])  # unknown sim device -> LookupError now, not on the thread
        self.protocol = SerialProtocol(self.info, common, settings, None, self.stats)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ser = None
        self.connected = False  # until the port opens: a missing port is a "missing" stream from the start
        self.connects = 0
        self.bytes = 0

    # ---- life cycle
    def start(self, sink: DriverSink) -> None:
        self.sink = self.protocol.sink = sink
        self._thread = threading.Thread(target=self._run, name=f"serial-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._close()
        self.protocol.connection_lost()

    def health(self) -> dict[str, Any]:
        h = super().health()
        h.update(connected=self.connected, connects=self.connects, probes=self.protocol.probes_answered,
                 edges=self.protocol.edges, resets=self.protocol.unwrapper.resets)
        return h

    # ---- I/O
    def _port(self) -> str:
        port = self.settings.port
        if port.startswith("sim:"):
            return self.rig.pty_path(port[4:])
        return port

    def _open(self):
        port = self._port()
        if "://" in port:
            ser = serial.serial_for_url(port, baudrate=self.settings.baudrate, timeout=0.05)
        else:
            ser = serial.Serial(port, self.settings.baudrate, timeout=0.05)
        return ser

    def _close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # closing a vanished port may fail; nothing left to release
                pass

    def _run(self) -> None:
        outage_logged = False
        while not self._stop.is_set():
            self.beat()
            try:
                self._ser = self._open()
            except (serial.SerialException, OSError, LookupError, ValueError) as exc:
                self.last_error = f"cannot open {self.settings.port}: {_why(exc)}"
                if not outage_logged:
                    log.warning("%s: cannot open %s (%s); retrying every %.1f s", self.name, self.settings.port,
                                exc, self.settings.reconnect_s)
                    outage_logged = True
                self._wait_for_port()
                continue
            self.connects += 1
            self.connected = True
            self.last_error = ""
            if self.connects > 1:
                log.info("%s: reconnected to %s", self.name, self.settings.port)
                self.sink.problem(self.name, "reconnect", self.settings.port)
            outage_logged = False
            self.protocol.connection_made(reconnected=self.connects > 1)
            try:
                self._read_loop(self._ser)
            except (serial.SerialException, OSError) as exc:  # the port vanished (unplugged, pty closed)
                if self._stop.is_set():
                    break
                log.warning("%s: port %s disconnected (%s); retrying every %.1f s", self.name, self.settings.port,
                            exc, self.settings.reconnect_s)
                self.sink.problem(self.name, "disconnect", str(exc))
                self.last_error = f"{self.settings.port} disconnected"
                outage_logged = True
            finally:
                self.connected = False
                self._close()
            self._wait_for_port()

    def _wait_for_port(self) -> None:
        """Wait ``reconnect_s`` before the next open, beating; a device path that was missing and appears (a USB
        device plugged back, its udev link made) ends the wait at once, so the stream resumes within ~0.1 s."""
        end = time.monotonic() + self.settings.reconnect_s
        was_there = self._port_exists()
        while not self._stop.wait(min(0.1, max(0.0, end - time.monotonic()))):
            self.beat()
            if time.monotonic() >= end or (not was_there and self._port_exists()):
                return

    def _port_exists(self) -> bool:
        try:
            port = self._port()
        except LookupError:
            return False
        return "://" in port or os.path.exists(port)

    def _read_loop(self, ser) -> None:
        interval = self.settings.probe_interval_s if self.protocol.writes else 0.0  # generic devices: never written
        next_probe = 0.0
        if interval > 0:
            self._probe(ser)  # at once: the first round trip, and a device waiting for its host starts streaming
            next_probe = time.monotonic() + interval
        read_size = self.settings.read_size
        while not self._stop.is_set():
            self.beat()
            data = ser.read(1)
            host_ns = time.monotonic_ns()
            if data:
                waiting = ser.in_waiting
                if waiting:
                    data += ser.read(min(waiting, read_size))
                self.bytes += len(data)
                self.protocol.data_received(data, host_ns)
            if interval > 0 and time.monotonic() >= next_probe:
                self._probe(ser)
                next_probe += interval
                if next_probe < time.monotonic():
                    next_probe = time.monotonic() + interval
        # stopping: what the device has already sent is read and reported, not left behind in the port
        waiting = ser.in_waiting
        if waiting:
            data = ser.read(waiting)
            host_ns = time.monotonic_ns()
            self.bytes += len(data)
            self.protocol.data_received(data, host_ns)

    def _probe(self, ser) -> None:
        ser.write(self.protocol.ping(time.monotonic_ns()))
