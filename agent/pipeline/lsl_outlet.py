"""Corrected streams re-published as LSL outlets (``[lsl] outlet = true``), so LabRecorder records synchub streams
next to its own and pyxdf's ``synchronize_clocks=True`` maps them like any LSL stream.

Each published stream gets one ``pylsl.StreamOutlet`` on the agent's host with its full metadata (``outlet_spec``,
pure): name (``name_prefix`` + stream name), content type, nominal rate, channel format, a source id that survives
restarts (agent name + stream, so LabRecorder re-attaches), and a ``desc`` with ``channels/channel`` (label, unit,
type) plus a ``synchub`` element saying what the timestamps are.  Every corrected chunk the shipper releases goes
out with per-sample timestamps ``ref_ns`` (``lsl_stamps``, pure): the agent's reference clock is the host's
``CLOCK_MONOTONIC``, which is what liblsl's ``local_clock()`` reads on Linux; where they differ (measured once at
open) the offset is added, so the stamps are always on this host's LSL clock and LabRecorder's own
``time_correction`` probes carry them to the recording machine.  Raw device times and uncertainties stay in the
synchub recording; LSL has no place for them.

``LslPublisher.push`` is a shipper tap (called on the shipper thread after each correction); a failed push is
counted and logged by the shipper, never stops the recording.  ``close()`` drops the outlets (inlets see the stream
vanish, as when any LSL device is unplugged).
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from synchub.agent.config.schema import LslOutletSettings
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.core.units import NS
from synchub.drivers.lsl.inlet import import_pylsl

log = logging.getLogger("synchub.lsl")

#: synchub modality -> LSL content type (the XDF/LSL meta-data conventions' names where one fits)
LSL_TYPES = {"audio": "Audio", "video": "VideoRaw", "image": "VideoRaw", "marker": "Markers", "text": "Markers",
             "trigger": "Markers", "imu": "MoCap", "telemetry": "Telemetry", "fused": "Features", "other": "Other"}
#: synchub channel format -> LSL's (LSL has no uint8: video frames go out as int16, as in XDF)
LSL_FORMATS = {"float32": "float32", "double64": "double64", "string": "string", "int32": "int32",
               "int16": "int16", "int8": "int8", "int64": "int64", "uint8": "int16"}


@dataclass(frozen=True)
class OutletSpec:
    """What one LSL outlet announces (``pylsl.StreamInfo`` + its ``desc``)."""

    name: str
    type: str
    channel_count: int
    nominal_srate: float
    channel_format: str
    source_id: str
    channels: tuple[tuple[str, str, str], ...]  # (label, unit, type) per channel, or () when unlabelled
    synchub: tuple[tuple[str, str], ...]  # the desc's <synchub> element


def outlet_spec(info: StreamInfo, settings: LslOutletSettings, agent: str) -> OutletSpec:
    """The outlet of one stream.  A stream that came from LSL keeps its LSL content type and channel types."""
    q = info.quality_dict()
    lsl_type = q.get("lsl_type") or LSL_TYPES.get(info.type, "Other")
    types = q.get("lsl_channel_types", "").split(",") if q.get("lsl_channel_types") else []
    n = info.channel_count
    labels = info.channel_labels or tuple(f"ch{i}" for i in range(n))
    units = info.channel_units or ("",) * n
    types = types if len(types) == n else [lsl_type] * n
    channels = tuple(zip(labels, units, types, strict=True))
    meta = {"agent": agent, "stream": info.name, "modality": info.type, "source_id": info.source_id,
            "timestamps": "corrected onto the agent's reference clock (CLOCK_MONOTONIC = LSL local_clock)",
            **{f"quality_{k}": str(v) for k, v in sorted(q.items())}}
    return OutletSpec(name=settings.name_prefix + info.name, type=lsl_type, channel_count=n,
                      nominal_srate=float(info.nominal_srate), channel_format=LSL_FORMATS[info.channel_format],
                      source_id=f"synchub:{agent}:{info.name}", channels=channels, synchub=tuple(meta.items()))


def lsl_stamps(ref_ns: np.ndarray, lsl_minus_ref_ns: int = 0) -> np.ndarray:
    """Corrected reference times (int ns) as LSL timestamps (float seconds on this host's ``local_clock``)."""
    return (np.asarray(ref_ns, dtype=np.int64) + int(lsl_minus_ref_ns)) / NS


def samples_of(chunk: Chunk, fmt: str) -> Any:
    """The chunk's samples as LSL takes them: a C-contiguous (n, channels) array, or lists of strings."""
    if fmt == "string":
        return [[s] if isinstance(s, str) else [str(v) for v in s] for s in chunk.data]
    arr = np.asarray(chunk.data)
    return np.ascontiguousarray(arr.reshape(chunk.n, -1))


def lsl_clock_offset_ns(local_clock, mono_ns=time.monotonic_ns, tries: int = 5) -> int:
    """LSL ``local_clock`` - CLOCK_MONOTONIC (the reference), read back to back; 0 when they are one clock."""
    best = None
    for _ in range(tries):
        a = mono_ns()
        lsl = local_clock()
        b = mono_ns()
        if best is None or b - a < best[0]:
            best = (b - a, int(round(lsl * NS)) - (a + b) // 2)
    return 0 if abs(best[1]) < 100_000 else best[1]


class LslPublisher:
    """One outlet per published stream; ``open()``, ``push(stream, chunk)`` (a shipper tap), ``close()``."""

    def __init__(self, infos: dict[str, StreamInfo], settings: LslOutletSettings, agent: str):
        self.settings = settings
        self.agent = agent
        self.specs = {n: outlet_spec(infos[n], settings, agent) for n in settings.wanted(infos) if n in infos}
        self.outlets: dict[str, Any] = {}
        self.offset_ns = 0
        self.pushed: dict[str, int] = dict.fromkeys(self.specs, 0)
        self.lsl = None

    def open(self) -> None:
        if not self.specs:
            return
        self.lsl = import_pylsl()
        self.offset_ns = lsl_clock_offset_ns(self.lsl.local_clock)
        for name, spec in self.specs.items():
            self.outlets[name] = self.lsl.StreamOutlet(self._info(spec), chunk_size=0,
                                                       max_buffered=int(self.settings.max_buffered_s))
        log.info("LSL outlets on %s: %s", socket.gethostname(), ", ".join(s.name for s in self.specs.values()))

    def _info(self, spec: OutletSpec):
        info = self.lsl.StreamInfo(spec.name, spec.type, spec.channel_count, spec.nominal_srate, spec.channel_format,
                                   spec.source_id)
        desc = info.desc()
        chans = desc.append_child("channels")
        for label, unit, kind in spec.channels:
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            if unit:
                ch.append_child_value("unit", unit)
            ch.append_child_value("type", kind)
        acq = desc.append_child("acquisition")
        acq.append_child_value("manufacturer", "synchub")
        meta = desc.append_child("synchub")
        for key, value in spec.synchub:
            meta.append_child_value(key, value)
        return info

    def push(self, stream: str, chunk: Chunk) -> None:
        outlet = self.outlets.get(stream)
        if outlet is None or chunk.n == 0:
            return
        spec = self.specs[stream]
        stamps = lsl_stamps(chunk.ref_ns, self.offset_ns)
        data = samples_of(chunk, spec.channel_format)
        if spec.channel_format == "string":
            for sample, ts in zip(data, stamps.tolist(), strict=True):
                outlet.push_sample(sample, ts)
        else:  # one stamp per sample; a single sample's as a float (pylsl takes a 1-element list as a float too)
            outlet.push_chunk(data, float(stamps[0]) if chunk.n == 1 else stamps)
        self.pushed[stream] += chunk.n

    def close(self) -> None:
        self.outlets.clear()  # pylsl destroys an outlet with its last reference
