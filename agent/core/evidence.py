"""Clock evidence: what drivers and aligners learn about a stream's clock, fed to the clock layer.

All times are int64 ns.  ``device_ns`` is the stream device's (unwrapped) clock; ``ref_ns`` and ``host_*`` are
the reference clock (host CLOCK_MONOTONIC, or a sync box's clock once mapped).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class TriggerEdge:
    """A trigger edge.

    ``source`` is a stream name (the device saw the edge on its own input and stamped it with its clock, so
    ``clock == "device"``) or a trigger name (a host GPIO line stamped by the kernel, ``clock == "ref"``).
    ``polarity`` is +1 rising, -1 falling.  ``width_ns`` is the pulse width when known (0 otherwise).
    ``seq`` is the source's own edge sequence number when it has one (gpiod line_seqno), else -1.
    """

    source: str
    t_ns: int
    clock: str  # "device" or "ref"
    polarity: int = 1
    width_ns: int = 0
    seq: int = -1
    host_ns: int = 0  # host receive time of the report (0 when not known)


@dataclass(frozen=True)
class Probe:
    """A round-trip probe: the host sent at ``host_send_ns``, the device stamped ``device_ns``, the reply came
    back at ``host_recv_ns`` (both host times on the reference clock).  The device time lies in between."""

    stream: str
    host_send_ns: int
    device_ns: int
    host_recv_ns: int


@dataclass(frozen=True)
class OffsetEstimate:
    """ref_time - device_time at ``device_ns``, with a 1-sigma ``sigma_ns``, from an aligner
    (``source`` "neural", "classical" or "hybrid").  ``shared_ns``: the 1-sigma of an error every estimate of
    this source shares (a modality pair's bias no window shows, from a fitted sigma table): added to what the
    estimates map, never averaged down by their number."""

    stream: str
    device_ns: int
    offset_ns: int
    sigma_ns: int
    source: str = "neural"
    confidence: float = 1.0
    shared_ns: int = 0
    host_ns: int = 0  # host time the agent had the estimate (its window ended later than device_ns); 0: not known


@dataclass(frozen=True)
class ClockReset:
    """A driver saw its device clock reset (a reboot, a restarted capture): sample ``seq`` of ``stream`` (device
    time ``device_ns``) is the first of a new timeline, ``previous_ns`` the last device time before it.  Drivers
    report it with ``DriverSink.reset``; the pipeline's hub numbers it (``seq``)."""

    stream: str
    seq: int = -1
    device_ns: int = 0
    previous_ns: int = 0
    detail: str = ""


@dataclass(frozen=True)
class UtcSample:
    """The reference clock read against UTC: host CLOCK_MONOTONIC ``mono_ns`` was UTC ``utc_ns`` (ns since the
    epoch) within ``sigma_ns`` (1-sigma), from ``source`` ("system": the host's CLOCK_REALTIME, "ntp": corrected by
    NTP).  GPS PPS edges refine the mapping in the clock layer."""

    mono_ns: int
    utc_ns: int
    sigma_ns: int
    source: str = "system"


Evidence = TriggerEdge | Probe | OffsetEstimate | ClockReset | UtcSample


_TYPES = {"edge": TriggerEdge, "probe": Probe, "offset": OffsetEstimate, "reset": ClockReset, "utc": UtcSample}
_NAMES = {cls: name for name, cls in _TYPES.items()}
#: Before issue 10 a UTC sample was recorded as an ``OffsetEstimate`` of this pseudo stream.
LEGACY_UTC_STREAM = "_utc"


def evidence_to_dict(item: Evidence) -> dict:
    """Plain dict (msgpack-able) of an evidence item, for the recording; ``evidence_from_dict`` reverses it."""
    d = dataclasses.asdict(item)
    d["type"] = _NAMES[type(item)]
    return d


def evidence_from_dict(d: dict) -> Evidence:
    """Rebuild an evidence item from ``evidence_to_dict`` output (also of recordings made before ``UtcSample``
    existed); raises ValueError on anything else."""
    try:
        cls = _TYPES[d["type"]]
    except (KeyError, TypeError):
        raise ValueError(f"not an evidence record: {d!r:.80}") from None
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        item = cls(**{k: v for k, v in d.items() if k in names})
    except TypeError as exc:
        raise ValueError(f"bad {d['type']} evidence record: {exc}") from None
    if isinstance(item, OffsetEstimate) and item.stream == LEGACY_UTC_STREAM:
        return UtcSample(item.device_ns, item.device_ns + item.offset_ns, item.sigma_ns, item.source)
    return item
