"""Driver for the synchub sync box (firmware/, ATmega328P) over its serial port.

The box emits sync pulses (plain, 32-bit barcodes or the Harp per-second code) and timestamps edges on its
capture input, all on its 64-bit Timer1 clock.  This driver configures it, checks the protocol version at
every connect, reconnects after an unplug, and reports to the ``DriverSink``:

* every pulse the box emitted: ``TriggerEdge(source=<stream>, clock="device", seq=<pulse index>)`` and a
  sample ``[0, value, index]`` (value = barcode counter or Harp seconds);
* every captured input edge: ``TriggerEdge(..., polarity=+1/-1, seq=<edge index>)`` and a sample
  ``[1, polarity, index]``; edges the capture could not resolve are reported as a gap;
* ping/pong round trips: ``Probe(stream, host_send_ns, device_ns, host_recv_ns)``.

Device time is converted to ns at the box's nominal rate (``ticks_per_s`` from its VERSION reply).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import serial

from synchub.agent.core.evidence import Probe, TriggerEdge
from synchub.agent.core.settings import setting
from synchub.agent.core.stream import StreamInfo
from synchub.drivers.base import Driver, DriverContext, DriverSink

from . import protocol as P

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncBoxSettings:
    port: str = setting(doc="serial port of the sync box (e.g. /dev/ttyACM0, or a syncbox-sim pty)")
    baud: int = setting(1_000_000, choices=(115_200, 1_000_000), doc="UART rate the firmware was built for")
    mode: str = setting("pulse", choices=("pulse", "barcode", "harp", "off"), doc="sync output on D9")
    # (the box's limits are checked across these keys in __post_init__: PROTOCOL.md, "SET limits")
    period_s: float = setting(1.0, min=0.0001, max=134.0, doc="pulse / barcode period (harp: always 1 s)")
    width_s: float = setting(0.001, min=0.00004, max=134.0, doc="pulse width (pulse mode)")
    bit_s: float = setting(0.01, min=0.00004, max=2.9, doc="barcode bit time")
    ping_interval_s: float = setting(0.5, min=0.01, doc="seconds between ping/pong clock probes")
    reconnect_s: float = setting(1.0, min=0.05, doc="seconds between reconnect attempts")
    reply_timeout_s: float = setting(1.0, min=0.05, doc="how long a command waits for its reply")

    def __post_init__(self):
        # the limits of the 16 MHz board at this baud rate; the box's own VERSION is checked again at connect
        if self.mode in ("pulse", "barcode"):
            why = config_problem(self.mode, self.period_s, self.width_s, self.bit_s, P.limits(baud=self.baud))
            if why:
                raise ValueError(why)


def config_problem(mode: str, period_s: float, width_s: float, bit_s: float, lim: P.Limits) -> str:
    """'' when a box with these limits meets the output settings (seconds), else why not (one line)."""
    tps = lim.ticks_per_s
    return P.explain_config(P.MODES[mode], int(round(period_s * tps)), int(round(width_s * tps)),
                            int(round(bit_s * tps)), lim)


class SyncBoxError(Exception):
    """The box answered wrongly (version mismatch, refused command) or not at all."""


class SyncBoxRefused(SyncBoxError):
    """The box answered a command with ERROR (``error``)."""

    def __init__(self, message: str, error: P.Error):
        super().__init__(message)
        self.error = error


class SyncBoxSettingsError(SyncBoxError):
    """The box cannot meet the output settings (checked against its VERSION before SET, or refused by it)."""


class SyncBoxClient:
    """A connected sync box: send commands, wait for replies, hand every other message to ``on_message``.
    Not thread-safe: one thread drives it (the driver's, or a test's)."""

    def __init__(self, port: str, baud: int = 1_000_000, timeout: float = 1.0, on_message=None):
        self.ser = serial.Serial(port, baud, timeout=0.02)
        self.timeout = timeout
        self.decoder = P.FrameDecoder()
        self.on_message = on_message or (lambda msg, host_ns: None)
        self.seq = 0
        self.version: P.Version | None = None
        self.malformed = 0  # frames whose payload did not fit their type
        self.lost_frames = 0  # device sequence gaps
        self._last_dev_seq: int | None = None
        self.pending: list[tuple[P.Message, int]] = []

    def close(self) -> None:
        try:
            self.ser.close()
        except OSError:
            pass

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 0xFFFF  # 0xFFFF is SEQ_NONE
        return self.seq

    def poll(self, timeout: float | None = None) -> list[tuple[P.Message, int]]:
        """Read what is there (waiting up to the port timeout) -> [(message, host receive ns)]."""
        out, self.pending = self.pending, []
        if out:
            return out
        data = self.ser.read(max(1, self.ser.in_waiting))
        host_ns = time.monotonic_ns()
        for frame in self.decoder.feed(data):
            msg = P.parse(frame)
            if msg is None:
                self.malformed += 1
                continue
            boot = isinstance(msg, P.Status) and msg.req_seq == P.SEQ_NONE  # numbering restarts at 0
            if self._last_dev_seq is not None and not boot:
                gap = (frame.seq - self._last_dev_seq - 1) & 0xFFFF
                if gap and gap < 0x8000:
                    self.lost_frames += gap
            self._last_dev_seq = frame.seq
            out.append((msg, host_ns))
        return out

    def request(self, frame_fn, *args, want=(P.Ack,), timeout: float | None = None) -> tuple[P.Message, int, int]:
        """Send a command built by ``frame_fn(seq, *args)``; return (reply, host send ns, host receive ns).
        Messages that are not the reply go to ``on_message``."""
        seq = self._next_seq()
        frame = b"\x00" + frame_fn(seq, *args)  # a leading delimiter ends any partial frame left on the line
        t_send = time.monotonic_ns()
        self.ser.write(frame)
        self.ser.flush()
        end = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < end:
            batch = self.poll()
            for i, (msg, host_ns) in enumerate(batch):
                if getattr(msg, "req_seq", None) == seq and isinstance(msg, (*want, P.Error)):
                    self.pending = batch[i + 1 :] + self.pending  # keep what came after the reply
                    if isinstance(msg, P.Error):
                        raise SyncBoxRefused(f"sync box refused command (seq {seq}): {msg.reason}", msg)
                    return msg, t_send, host_ns
                self.on_message(msg, host_ns)
        raise SyncBoxError(f"no reply from the sync box within {timeout or self.timeout} s")

    def hello(self) -> P.Version:
        """Ask the version (repeated: a board that resets when the port opens misses the first bytes)."""
        v = None
        for attempt in range(5):
            try:
                v, _, _ = self.request(P.simple, P.CMD_VERSION, want=(P.Version,), timeout=self.timeout / 5)
                break
            except SyncBoxError:
                if attempt == 4:
                    raise
        if v.proto != P.PROTO_VERSION or not v.name.startswith("synchub-syncbox"):
            raise SyncBoxError(f"unsupported sync box: {v.name!r} protocol {v.proto} (this host speaks {P.PROTO_VERSION})")
        self.version = v
        return v

    def ticks_to_ns(self, ticks: int) -> int:
        tps = self.version.ticks_per_s if self.version else 16_000_000
        return ticks * 1_000_000_000 // tps

    def ns_to_ticks(self, ns: float) -> int:
        tps = self.version.ticks_per_s if self.version else 16_000_000
        return int(round(ns * tps / 1e9))

    def limits(self) -> P.Limits:
        v = self.version
        return P.limits(v.f_cpu, v.prescaler, v.baud) if v else P.limits()

    def configure(self, mode: str, period_s: float, width_s: float, bit_s: float) -> None:
        """Stop the output, set it up and start it; ``SyncBoxSettingsError`` (one line) when the box cannot
        meet the settings: checked here against the box's limits, and again by the box itself."""
        self.request(P.simple, P.CMD_STOP)
        if mode == "off":
            return
        lim = self.limits()
        why = config_problem(mode, period_s, width_s, bit_s, lim)
        if why:
            raise SyncBoxSettingsError(why)
        tps = lim.ticks_per_s
        try:
            self.request(P.set_config, P.MODES[mode], int(round(period_s * tps)), int(round(width_s * tps)),
                         int(round(bit_s * tps)))
        except SyncBoxRefused as exc:
            if exc.error.code in (P.ERR_VALUE, P.ERR_TIMING):
                raise SyncBoxSettingsError(f"{exc} (mode {mode}, period {period_s} s, width {width_s} s, "
                                           f"bit {bit_s} s)") from None
            raise
        self.request(P.simple, P.CMD_START)

    def ping(self, token: int) -> tuple[P.Pong, int, int]:
        return self.request(P.ping, token, want=(P.Pong,))

    def status(self) -> P.Status:
        return self.request(P.simple, P.CMD_STATUS, want=(P.Status,))[0]

    def probe(self, stream: str, token: int) -> Probe:
        """One ping/pong round trip as a clock probe.  The device stamps the PING's last byte (t_rx) and
        queues the PONG (t_tx); the serialization of both frames at the UART rate is taken out so the
        device midpoint lines up with the host midpoint."""
        pong, t_send, t_recv = self.ping(token)
        baud = self.version.baud if self.version else 1_000_000
        ns_per_byte = 10 * 1e9 / baud
        in_ser = (P.wire_bytes(3 + 4 + 2) + 1) * ns_per_byte
        out_ser = P.wire_bytes(3 + 22 + 2) * ns_per_byte
        dev_mid = (self.ticks_to_ns(pong.t_rx) - in_ser + self.ticks_to_ns(pong.t_tx) + out_ser) / 2
        return Probe(stream, t_send, int(round(dev_mid)), t_recv)


def build_stream_info(common, settings: SyncBoxSettings) -> StreamInfo:
    """The sync box stream: irregular, 3 int64 channels per event (kind 0 pulse / 1 edge, value, index)."""
    return StreamInfo(name=common.name, type=common.type, nominal_srate=0.0, channel_count=3,
                      channel_format="int64", channel_labels=("kind", "value", "index"),
                      source_id=common.source_id or settings.port,
                      quality=(("timestamp_source", "device-hardware-timer"), ("device", "synchub-syncbox")))


class SyncBoxDriver(Driver):
    """Runs the sync box on its own thread; see the module doc for what it reports.  Constructed like every
    driver: ``(common: StreamCommon, settings: SyncBoxSettings, context: DriverContext | None)``."""

    def __init__(self, common, settings: SyncBoxSettings, context: DriverContext | None = None):
        super().__init__(build_stream_info(common, settings))
        self.common = common
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.client: SyncBoxClient | None = None
        self.sink: DriverSink | None = None
        self.counters = {"pulses": 0, "edges": 0, "lost_edges": 0, "probes": 0, "reconnects": 0,
                         "device_resets": 0, "device_errors": 0}
        self.connected = threading.Event()
        self._token = 0
        self._reconfigure = False
        self._bad_seen = 0
        self._lost_seen = 0

    # ---------------------------------------------------------------- Driver API
    def start(self, sink: DriverSink) -> None:
        self.sink = sink
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"syncbox:{self.info.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self._close()

    def health(self) -> dict:
        h = super().health()
        h.update(self.counters)
        h["connected"] = self.connected.is_set()
        if self.client:
            h["lost_frames"] = self.client.lost_frames
            h["rejected_frames"] = dict(self.client.decoder.rejected)
        return h

    # ---------------------------------------------------------------- thread
    def _close(self) -> None:
        self.connected.clear()
        self._bad_seen = self._lost_seen = 0  # the next client counts from zero
        if self.client:
            self.client.close()
            self.client = None

    def _connect(self) -> None:
        s = self.settings
        self.client = SyncBoxClient(s.port, s.baud, s.reply_timeout_s, on_message=self._on_message)
        v = self.client.hello()
        self.client.configure(s.mode, s.period_s, s.width_s, s.bit_s)
        self.connected.set()
        log.info("sync box %s on %s: fw %d.%d, %d ticks/s", self.info.name, s.port, v.major, v.minor, v.ticks_per_s)

    def _run(self) -> None:
        name = self.info.name
        next_ping = 0.0
        while not self._stop.is_set():
            try:
                if self.client is None:
                    self._connect()
                    next_ping = 0.0
                if self._reconfigure:
                    self._reconfigure = False
                    s = self.settings
                    self.client.configure(s.mode, s.period_s, s.width_s, s.bit_s)
                if time.monotonic() >= next_ping:
                    self._token = (self._token + 1) & 0xFFFFFFFF
                    self.sink.evidence(self.client.probe(name, self._token))
                    self.counters["probes"] += 1
                    next_ping = time.monotonic() + self.settings.ping_interval_s
                for msg, host_ns in self.client.poll():
                    self._on_message(msg, host_ns)
                self._check_losses()
            except (serial.SerialException, OSError, SyncBoxError, TypeError, ValueError) as exc:
                # (pyserial raises TypeError/ValueError when the port vanished under a read)
                was = self.connected.is_set()
                self._close()
                if was:
                    self.counters["reconnects"] += 1
                reason = ("sync box cannot meet the settings" if isinstance(exc, SyncBoxSettingsError)
                          else "sync box disconnected" if was else "sync box not reachable")
                self.sink.problem(name, reason, str(exc))
                self._stop.wait(self.settings.reconnect_s)

    def _check_losses(self) -> None:
        """Frames that failed their checks and gaps in the device's frame numbers: counted and reported."""
        c = self.client
        if c is None:
            return
        bad = sum(c.decoder.rejected.values()) + c.malformed
        if bad > self._bad_seen:
            self.stats.malformed += bad - self._bad_seen
            self.sink.problem(self.info.name, "malformed frames from the sync box",
                              f"{bad - self._bad_seen} ({dict(c.decoder.rejected)})")
        self._bad_seen = bad
        if c.lost_frames > self._lost_seen:
            self.sink.problem(self.info.name, "sync box frames lost",
                              f"{c.lost_frames - self._lost_seen} frame(s) missing from the device's sequence")
        self._lost_seen = c.lost_frames

    def _on_message(self, msg: P.Message, host_ns: int) -> None:
        sink, name, c = self.sink, self.info.name, self.client
        if sink is None or c is None:
            return
        if isinstance(msg, P.Pulse):
            t = c.ticks_to_ns(msg.t)
            harp = self.settings.mode == "harp"
            width = 0 if self.settings.mode != "pulse" else int(self.settings.width_s * 1e9)
            sink.evidence(TriggerEdge(name, t, "device", -1 if harp else 1, width, msg.index, host_ns))
            self._sample(0, msg.value, msg.index, t, host_ns)
            self.counters["pulses"] += 1
        elif isinstance(msg, P.Edge):
            t = c.ticks_to_ns(msg.t)
            pol = 1 if msg.rising else -1
            sink.evidence(TriggerEdge(name, t, "device", pol, 0, msg.index, host_ns))
            self._sample(1, pol, msg.index, t, host_ns)
            self.counters["edges"] += 1
            if msg.lost_after:
                self.counters["lost_edges"] += msg.lost_after
                sink.gap(name, msg.lost_after, "capture", t, t,
                         "input edges closer than the capture can resolve (parity-checked, not timestamped)")
        elif isinstance(msg, P.Status) and msg.req_seq == P.SEQ_NONE:
            if self.connected.is_set():  # a boot while we were talking to it (not the one a port open causes)
                self.counters["device_resets"] += 1
                sink.problem(name, "sync box reset", f"reset cause MCUSR=0x{msg.reset_cause:02x}; reconfiguring")
                self._reconfigure = True
        elif isinstance(msg, P.Error):
            self.counters["device_errors"] += 1
            sink.problem(name, "sync box error", msg.reason)

    def _sample(self, kind: int, value: int, index: int, t_ns: int, host_ns: int) -> None:
        self.stats.samples += 1
        self.sink.samples(self.info.name, np.array([[kind, value, index]], dtype=np.int64),
                          np.array([t_ns], dtype=np.int64), np.array([host_ns], dtype=np.int64))
