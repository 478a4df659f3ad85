"""``driver = "lsl"``: any LSL outlet on the network as a synchub stream (pylsl, the ``lsl`` extra).

The outlet is resolved by ``lsl_name``, ``lsl_type`` and/or ``lsl_source_id`` (an LSL predicate, within
``resolve_timeout_s``; not found is one line naming the query).  Its full description becomes the stream's
metadata: channel labels, units and types from ``desc/channels``, nominal rate, channel format, source id, and the
LSL name, type, hostname and uid in ``quality``.

Times: a sample's **device time** is the outlet's own timestamp (LSL ``local_clock`` of the outlet's host, as it
stamped the sample), its **host time** the agent's ``CLOCK_MONOTONIC`` right after the pull returned it.

Clock evidence: LSL's ``time_correction`` is liblsl's own round-trip probing (a burst of probes every few seconds,
the one with the smallest round trip kept).  ``lsl_time_correction_ex`` gives that estimate's offset, the remote
time it refers to and the estimate's maximum uncertainty; so the outlet's clock read ``remote_time`` at a local
instant within ``remote_time + offset +- uncertainty``: a ``Probe`` with that bracket (``probe_from_correction``).
The local LSL clock is ``std::chrono::steady_clock``, which on Linux is ``CLOCK_MONOTONIC``, the agent's
reference clock; the difference is measured at start and applied when it is not zero.  A new estimate is taken
every ``probe_interval_s`` (liblsl refreshes its own every 2 s; repeats are not fed twice).

An outlet that goes away (closed, its host gone) raises LSL's lost error: logged once, counted as a
``disconnect``, and the driver resolves the same query every ``reconnect_s`` (LSL's ``recover``, but counted).
When it is back, the samples of a regular stream missed meanwhile (nominal rate x the device-time hole) are a
``disconnect`` gap, and an outlet that came back on another host is a clock reset (``reset``: another clock).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np

from synchub.agent.core.evidence import Probe
from synchub.agent.core.settings import setting
from synchub.agent.core.stream import StreamInfo
from synchub.drivers.base import Driver, DriverContext, DriverSink
from synchub.extras import MissingExtra, message

log = logging.getLogger("synchub.lsl")

NS = 1_000_000_000
LSL_FORMATS = {1: "float32", 2: "double64", 3: "string", 4: "int32", 5: "int16", 6: "int8", 7: "int64"}
LOCAL_READS = 16  # reads of both clocks, the shortest round trip kept (``local_offset``)
SAME_CLOCK_NS = 100_000  # ... whose midpoint within this (and its round trip) of LSL's is the same clock


class LslError(ValueError):
    """An LSL stream cannot be read as configured (one line: what to change)."""


def import_pylsl():
    """pylsl, or one line naming the extra (not installed) or liblsl (installed without its library)."""
    try:
        import pylsl
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "pylsl":
            raise MissingExtra(message("pylsl")) from None
        raise
    except (RuntimeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LslError(f"pylsl is installed but liblsl cannot be loaded ({first}); pylsl's wheels ship liblsl for "
                       "x86_64 Linux, macOS and Windows only: on a Raspberry Pi or Jetson build liblsl from source "
                       "and point PYLSL_LIB at it (README: LSL)") from None
    return pylsl


@dataclass(frozen=True)
class LslSettings:
    lsl_name: str = setting("", doc="LSL stream name to resolve")
    lsl_type: str = setting("", doc="LSL content type to resolve (EEG, Markers, ...)")
    lsl_source_id: str = setting("", doc="LSL source id to resolve")
    resolve_timeout_s: float = setting(5.0, min=0.1, max=600.0, doc="how long to look for the outlet at start")
    probe_interval_s: float = setting(1.0, min=0.1, max=60.0, doc="seconds between time_correction readings")
    reconnect_s: float = setting(1.0, min=0.1, max=60.0, doc="retry period while the outlet is gone")
    max_chunk: int = setting(1024, min=2, max=1 << 20, doc="most samples per pull")

    def __post_init__(self) -> None:
        if not (self.lsl_name or self.lsl_type or self.lsl_source_id):
            raise ValueError("give lsl_name, lsl_type or lsl_source_id: which LSL outlet to read")

    @property
    def predicate(self) -> str:
        parts = [f"{key}='{value}'" for key, value in (("name", self.lsl_name), ("type", self.lsl_type),
                                                       ("source_id", self.lsl_source_id)) if value]
        return " and ".join(parts)


# ---------------------------------------------------------------------------------------------- pure helpers
def info_from_xml(xml: str, common) -> StreamInfo:
    """The synchub stream of an LSL stream description (``StreamInfo.as_xml()``); the config's labels, units,
    rate and source id win where it gives them."""
    root = ET.fromstring(xml)

    def text(path: str, default: str = "") -> str:
        node = root.find(path)
        return node.text.strip() if node is not None and node.text else default

    fmt = text("channel_format", "float32")
    if fmt not in LSL_FORMATS.values():
        raise LslError(f"LSL stream {text('name')!r}: channel format {fmt!r} is not supported")
    n = int(text("channel_count", "1"))
    labels, units, types = [], [], []
    for ch in root.findall("desc/channels/channel"):
        labels.append((ch.findtext("label") or "").strip())
        units.append((ch.findtext("unit") or "").strip())
        types.append((ch.findtext("type") or "").strip())
    ok = len(labels) == n
    rate = float(text("nominal_srate", "0") or 0)
    quality = {"lsl_name": text("name"), "lsl_type": text("type"), "lsl_hostname": text("hostname"),
               "lsl_uid": text("uid"), "lsl_created_at": text("created_at"),
               "device_time": "LSL local_clock of the outlet's host (its sample timestamps)"}
    if ok and any(types):
        quality["lsl_channel_types"] = ",".join(types)
    return StreamInfo(
        name=common.name, type=common.type, nominal_srate=common.nominal_rate or rate, channel_count=n,
        channel_format=fmt,
        channel_labels=common.channel_labels or (tuple(labels) if ok and all(labels) else ()),
        channel_units=common.channel_units or (tuple(units) if ok and all(units) else ()),
        source_id=common.source_id or text("source_id"), quality=tuple(sorted(quality.items())))


def probe_from_correction(stream: str, offset_s: float, remote_time_s: float, uncertainty_s: float,
                          local_to_ref_ns: int = 0) -> Probe:
    """LSL's time correction as a probe: the outlet's clock read ``remote_time`` at a local instant within
    ``remote_time + offset +- uncertainty`` (liblsl's maximum uncertainty of the estimate)."""
    local = (remote_time_s + offset_s) * NS + local_to_ref_ns
    half = max(uncertainty_s, 0.0) * NS
    return Probe(stream, int(round(local - half)), int(round(remote_time_s * NS)), int(round(local + half)))


def local_offset(reads: list[tuple[int, int, int]]) -> int:
    """reference - LSL ``local_clock`` (ns) from reads ``(reference before, LSL, reference after)``: the midpoint of
    the read with the shortest round trip, 0 where that is within ``SAME_CLOCK_NS`` and its round trip (the same
    clock: a thread descheduled between reads must not set a constant error on every sample of the session)."""
    rtt, off = min((b - a, (a + b) // 2 - lsl) for a, lsl, b in reads)
    return 0 if abs(off) <= SAME_CLOCK_NS + rtt else off


def missed_samples(rate_hz: float, last_dev_ns: int | None, first_dev_ns: int) -> int:
    """Samples of a regular stream that fell in the device-time hole between two pulls (0 when irregular)."""
    if rate_hz <= 0 or last_dev_ns is None or first_dev_ns <= last_dev_ns:
        return 0
    return max(0, round((first_dev_ns - last_dev_ns) * rate_hz / NS) - 1)


# ---------------------------------------------------------------------------------------------- the driver
class LslInletDriver(Driver):
    def __init__(self, common, settings: LslSettings, context: DriverContext | None = None):
        self.lsl = import_pylsl()
        self.common = common
        self.settings = settings
        self.name = common.name
        found = self._resolve(settings.resolve_timeout_s)
        if found is None:
            raise LslError(f"no LSL stream matching {settings.predicate} found within {settings.resolve_timeout_s:g} s")
        self.inlet = self._open(found)
        super().__init__(info_from_xml(self.inlet.info(timeout=settings.resolve_timeout_s).as_xml(), common))
        self.hostname = self.info.quality_dict().get("lsl_hostname", "")
        self.local_to_ref_ns = self._local_offset()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_remote: float | None = None
        self._last_dev: int | None = None
        self._new_clock = ""  # set when the outlet came back on another host: the next sample starts a new clock
        self.connected = True
        self.disconnects = 0
        self.probes = 0

    # ---- LSL calls
    def _resolve(self, timeout: float):
        found = self.lsl.resolve_bypred(self.settings.predicate, 1, timeout)
        return found[0] if found else None

    def _open(self, info):
        inlet = self.lsl.StreamInlet(info, max_buflen=360, recover=False)
        inlet.open_stream(timeout=self.settings.resolve_timeout_s)
        return inlet

    def _local_offset(self) -> int:
        """reference (CLOCK_MONOTONIC) - LSL local_clock, 0 when they are the same clock (Linux)."""
        reads = []
        for _ in range(LOCAL_READS):
            a = time.monotonic_ns()
            lsl = self.lsl.local_clock()
            reads.append((a, int(round(lsl * NS)), time.monotonic_ns()))
        return local_offset(reads)

    def _correction(self, timeout: float) -> tuple[float, float, float] | None:
        lib = self.lsl.lib.lib if hasattr(self.lsl.lib, "lib") else self.lsl.lib
        fn = lib.lsl_time_correction_ex
        fn.restype = ctypes.c_double
        remote, unc, ec = ctypes.c_double(), ctypes.c_double(), ctypes.c_int()
        offset = fn(self.inlet.obj, ctypes.byref(remote), ctypes.byref(unc), ctypes.c_double(timeout), ctypes.byref(ec))
        if ec.value:
            if ec.value == -2:  # lsl_lost_error
                raise self.lsl.util.LostError("the stream has been lost.")
            return None  # timeout: no estimate yet
        return offset, remote.value, unc.value

    # ---- life cycle
    def start(self, sink: DriverSink) -> None:
        self.sink = sink
        self._thread = threading.Thread(target=self._run, name=f"lsl-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        try:
            self.inlet.close_stream()
        except Exception:  # a lost stream may refuse; nothing left to release
            pass

    def health(self) -> dict[str, Any]:
        h = super().health()
        h.update(connected=self.connected, disconnects=self.disconnects, probes=self.probes)
        return h

    def _run(self) -> None:
        lost_error = self.lsl.util.LostError
        next_probe = 0.0
        while not self._stop.is_set():
            try:
                self._pull(timeout=0.05)
                if time.monotonic() >= next_probe:
                    next_probe = time.monotonic() + self.settings.probe_interval_s
                    self._probe()
            except lost_error:
                self._lost()
            except Exception as exc:  # noqa: BLE001 - the stream must not stop silently on a bug or odd data
                self.stats.count("errors")
                log.exception("%s: LSL inlet error (%d so far); going on in 1 s", self.name, self.stats.reasons["errors"])
                self.sink.problem(self.name, "error", f"LSL inlet: {type(exc).__name__}: {exc}")
                self._stop.wait(1.0)

    def _pull(self, timeout: float) -> None:
        # the first sample returns as soon as it is there (a chunk pull with a timeout waits the timeout out); what
        # else is buffered comes with it.  The host time is read after both pulls: every sample had arrived by then
        # (read before the second pull, a thread descheduled in between would stamp later samples too early)
        first, t_first = self.inlet.pull_sample(timeout=timeout)
        if t_first is None:
            return
        data, ts = self.inlet.pull_chunk(timeout=0.0, max_samples=self.settings.max_chunk - 1)
        host = time.monotonic_ns()
        data, ts = [first, *data], [t_first, *ts]
        dev = np.rint(np.asarray(ts, dtype=np.float64) * NS).astype(np.int64)
        gap = missed_samples(self.info.nominal_srate, self._last_dev, int(dev[0])) if not self.connected else 0
        if self._new_clock:
            self.stats.resets += 1
            self.sink.reset(self.name, int(dev[0]), int(self._last_dev or 0), self._new_clock)
            self._new_clock = ""
            gap = 0  # another clock: the hole in device time says nothing about samples missed
        if not self.connected:
            self.connected = True
            if gap:
                self.stats.gaps += 1
                self.stats.dropped += gap
                self.sink.gap(self.name, gap, "disconnect", int(self._last_dev or 0), int(dev[0]),
                              "LSL outlet was gone")
        if self.info.channel_format != "string" and any(len(x) != self.info.channel_count for x in data):
            # an outlet of the same name came back with another layout: these samples cannot be this stream's
            self.stats.malformed += len(ts)
            self.stats.gaps += 1
            self.sink.gap(self.name, len(ts), "malformed", int(dev[0]), int(dev[-1]),
                          f"LSL samples with {len(data[0])} channels, the stream has {self.info.channel_count}")
            self._last_dev = int(dev[-1])
            return
        values: Any = list(map(lambda s: s[0], data)) if self.info.channel_format == "string" else (
            np.asarray(data, dtype=self.info.dtype).reshape(len(ts), self.info.channel_count))
        self._last_dev = int(dev[-1])
        self.stats.samples += len(ts)
        self.stats.chunks += 1
        self.sink.samples(self.name, values, dev, np.full(len(ts), host, dtype=np.int64))

    def _probe(self) -> None:
        got = self._correction(0.0 if self.probes else 2.0)
        if got is None or got[1] == self._last_remote:
            return
        offset, remote, unc = got
        self._last_remote = remote
        self.probes += 1
        self.sink.evidence(probe_from_correction(self.name, offset, remote, unc, self.local_to_ref_ns))

    def _lost(self) -> None:
        self.connected = False
        self.disconnects += 1
        log.warning("%s: LSL stream %s lost; resolving it again every %.1f s", self.name, self.settings.predicate,
                    self.settings.reconnect_s)
        self.sink.problem(self.name, "disconnect", f"LSL stream {self.settings.predicate} lost")
        try:
            self.inlet.close_stream()
        except Exception:  # the lost inlet may refuse; a new one replaces it
            pass
        while not self._stop.is_set():
            found = self._resolve(min(self.settings.reconnect_s, 1.0))
            if found is not None:
                try:
                    inlet = self._open(found)
                except Exception as exc:  # it went away again between resolve and open
                    log.debug("%s: reopening failed: %s", self.name, exc)
                    self._stop.wait(self.settings.reconnect_s)
                    continue
                self.inlet = inlet
                self._last_remote = None
                host = found.hostname()
                log.info("%s: LSL stream %s back (host %s)", self.name, self.settings.predicate, host)
                self.sink.problem(self.name, "reconnect", f"LSL stream back on {host}")
                if host != self.hostname:  # another host: another clock, a reset before its first sample
                    self.hostname = host
                    self._new_clock = f"LSL outlet now on host {host}: another clock"
                return
            self._stop.wait(self.settings.reconnect_s)
