"""What an LSL outlet of a synchub stream announces and pushes, shared by the agent's outlet
(``synchub.agent.pipeline.lsl_outlet``, ``[lsl] outlet = true``) and the collector's (``synchub.agent.collector.lsl_tap``,
``synchub collector --lsl-outlet``).

Pure: ``outlet_spec`` (name, content type, rate, format, source id, channel labels/units/types and a ``synchub``
element of the ``desc``), ``lsl_stamps`` (int ns -> float seconds with an offset), ``samples_of`` (a chunk as LSL
takes it), ``clock_offset_ns`` (LSL ``local_clock`` minus another clock, read back to back, clocks injected).  The
pylsl calls (``stream_info``, ``push``) take the pylsl module and an outlet, so both publishers build and push the
same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from synchub.agent.core.stream import Chunk, StreamInfo

NS = 1_000_000_000
#: synchub modality -> LSL content type (the XDF/LSL meta-data conventions' names where one fits)
LSL_TYPES = {"audio": "Audio", "video": "VideoRaw", "image": "VideoRaw", "marker": "Markers", "text": "Markers",
             "trigger": "Markers", "imu": "MoCap", "telemetry": "Telemetry", "fused": "Features", "other": "Other"}
#: synchub channel format -> LSL's (LSL has no uint8: video frames go out as int16, as in XDF)
OUTLET_FORMATS = {"float32": "float32", "double64": "double64", "string": "string", "int32": "int32",
                  "int16": "int16", "int8": "int8", "int64": "int64", "uint8": "int16"}
AGENT_TIMESTAMPS = "corrected onto the agent's reference clock (CLOCK_MONOTONIC = LSL local_clock)"


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


def outlet_spec(info: StreamInfo, agent: str, name: str, source_id: str | None = None,
                timestamps: str = AGENT_TIMESTAMPS, extra: tuple[tuple[str, str], ...] = ()) -> OutletSpec:
    """The outlet of one stream of ``agent``, called ``name`` (source id ``synchub:AGENT:STREAM`` unless given:
    stable across restarts, so LabRecorder re-attaches).  A stream that came from LSL keeps its LSL content type and
    channel types; ``timestamps`` says what the stamps are, ``extra`` adds to the ``synchub`` element."""
    q = info.quality_dict()
    lsl_type = q.get("lsl_type") or LSL_TYPES.get(info.type, "Other")
    types = q.get("lsl_channel_types", "").split(",") if q.get("lsl_channel_types") else []
    n = info.channel_count
    labels = info.channel_labels or tuple(f"ch{i}" for i in range(n))
    units = info.channel_units or ("",) * n
    types = types if len(types) == n else [lsl_type] * n
    channels = tuple(zip(labels, units, types, strict=True))
    meta = {"agent": agent, "stream": info.name, "modality": info.type, "source_id": info.source_id,
            "timestamps": timestamps, **dict(extra), **{f"quality_{k}": str(v) for k, v in sorted(q.items())}}
    return OutletSpec(name=name, type=lsl_type, channel_count=n, nominal_srate=float(info.nominal_srate),
                      channel_format=OUTLET_FORMATS[info.channel_format],
                      source_id=source_id or f"synchub:{agent}:{info.name}", channels=channels,
                      synchub=tuple(meta.items()))


def lsl_stamps(ref_ns: np.ndarray, lsl_minus_ref_ns: int = 0) -> np.ndarray:
    """Times (int ns) plus an offset (exact, in int64) as LSL timestamps (float seconds on the outlet host's
    ``local_clock``)."""
    return (np.asarray(ref_ns, dtype=np.int64) + np.int64(lsl_minus_ref_ns)) / NS


def samples_of(chunk: Chunk, fmt: str) -> Any:
    """The chunk's samples as LSL takes them: a C-contiguous (n, channels) array, or lists of strings."""
    if fmt == "string":
        return [[s] if isinstance(s, str) else [str(v) for v in s] for s in chunk.data]
    arr = np.asarray(chunk.data)
    return np.ascontiguousarray(arr.reshape(chunk.n, -1))


def clock_offset_ns(local_clock: Callable[[], float], other_ns: Callable[[], int], tries: int = 5) -> int:
    """LSL ``local_clock`` (float s) - ``other_ns`` (int ns), read back to back; the tightest of ``tries``."""
    best = None
    for _ in range(tries):
        a = other_ns()
        lsl = local_clock()
        b = other_ns()
        if best is None or b - a < best[0]:
            best = (b - a, int(round(lsl * NS)) - (a + b) // 2)
    return best[1]


def lsl_clock_offset_ns(local_clock, mono_ns=time.monotonic_ns, tries: int = 5) -> int:
    """LSL ``local_clock`` - CLOCK_MONOTONIC (the agent's reference); 0 when they are one clock."""
    off = clock_offset_ns(local_clock, mono_ns, tries)
    return 0 if abs(off) < 100_000 else off


def stream_info(lsl, spec: OutletSpec):
    """The ``pylsl.StreamInfo`` of ``spec``, with its ``desc``: channels, acquisition, the synchub element."""
    info = lsl.StreamInfo(spec.name, spec.type, spec.channel_count, spec.nominal_srate, spec.channel_format,
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


def push(outlet, spec: OutletSpec, chunk: Chunk, stamps: np.ndarray) -> None:
    """Every sample of ``chunk`` with its own stamp (seconds)."""
    data = samples_of(chunk, spec.channel_format)
    if spec.channel_format == "string":
        for sample, ts in zip(data, stamps.tolist(), strict=True):
            outlet.push_sample(sample, ts)
    else:  # one stamp per sample; a single sample's as a float (pylsl takes a 1-element list as a float too)
        outlet.push_chunk(data, float(stamps[0]) if chunk.n == 1 else stamps)
