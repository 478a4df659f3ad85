"""The clock layer's one typed config: what builds a ``StreamClocks``, live, in ``synchub align`` and in the benchmarks.

``ClockSettings`` is the ``[clock]`` table of an agent config.  ``ClockLayerConfig`` adds the ``[[trigger]]`` tables,
each stream's clock options (``StreamClockOptions``: its trigger line, forced method, the stream it is aligned to,
a longer correction delay of its own) and the live correction delay.  The agent records it at the start of a
session (``to_dict``: the ``clock_config`` record of the ``_agent`` meta stream); ``from_dict`` reads it back, from
recordings of any synchub version: keys a version did not write take their defaults, keys this version does not
know are ignored, values are validated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from synchub.agent.core.options import STREAM_METHODS, StreamCommon, TriggerSettings
from synchub.agent.core.settings import Where, build, setting
from synchub.agent.core.units import NS

#: The record kind the agent writes (``_agent`` meta).
RECORD_KIND = "clock_config"


@dataclass(frozen=True)
class ClockSettings:
    reference: str = setting(
        "monotonic", choices=("monotonic", "pps"), doc="reference clock: host CLOCK_MONOTONIC, or a GPS PPS trigger"
    )
    utc: str = setting(
        "system", choices=("system", "ntp", "pps", "none"), doc="how the reference clock is mapped to UTC"
    )
    ntp_servers: tuple[str, ...] = setting((), doc="NTP servers queried with ntplib for clock health")
    ntp_interval_s: float = setting(64.0, min=1.0, doc="seconds between NTP health queries")
    method: str = setting(
        "auto",
        choices=("auto", "identity", "arrival", "triggers", "probes", "hybrid"),
        doc="correction method; auto uses the best evidence each stream has",
    )
    window_s: float = setting(120.0, min=1.0, doc="clock model window for slow (thermal) drift tracking")
    trigger_stale_s: float = setting(
        0.0, min=0.0, doc="a trigger-wired, aligned stream falls back on its aligner after this long without an edge "
                          "pair (0: 5 trigger periods, at least 3 s; 10 s for an aperiodic line)"
    )


@dataclass(frozen=True)
class StreamClockOptions:
    """What the clock layer needs of a ``[[stream]]`` table (``StreamCommon``)."""

    trigger: str = setting("", doc="the trigger line (or stream) whose pulses the device also sees")
    method: str = setting("auto", choices=STREAM_METHODS, doc="clock correction method")
    align_to: str = setting("", doc="neural alignment: the stream this one is aligned to")
    correction_delay_ms: float = setting(0.0, min=0.0, doc="hold chunks at least this long (0: the agent's delay)")

    @classmethod
    def of(cls, common: StreamCommon) -> StreamClockOptions:
        return cls(trigger=common.trigger, method=common.method, align_to=common.align_to,
                   correction_delay_ms=common.correction_delay_ms)


def default_delay_ns(trigger_periods_s: Iterable[float]) -> int:
    """How long the agent holds a chunk before correcting it: a little longer than the slowest trigger period, so
    that the edges on both sides of a sample are known (250 ms without triggers)."""
    periods = [float(p) for p in trigger_periods_s if p and p > 0]
    return int(round(((max(periods) + 0.5) if periods else 0.25) * NS))


@dataclass(frozen=True)
class ClockLayerConfig:
    """See the module docstring.  ``correction_delay_ms`` None: ``default_delay_ns`` of the trigger periods."""

    clock: ClockSettings = ClockSettings()
    triggers: tuple[TriggerSettings, ...] = ()
    streams: dict[str, StreamClockOptions] = field(default_factory=dict)
    correction_delay_ms: float | None = None

    @classmethod
    def of(cls, clock: ClockSettings, triggers: Iterable[TriggerSettings], streams: Iterable[StreamCommon],
           correction_delay_ms: float | None = None) -> ClockLayerConfig:
        """From an agent config's ``[clock]``, ``[[trigger]]`` and ``[[stream]]`` tables."""
        return cls(clock=clock, triggers=tuple(triggers),
                   streams={s.name: StreamClockOptions.of(s) for s in streams},
                   correction_delay_ms=correction_delay_ms)

    @property
    def delay_ns(self) -> int:
        """The live correction delay in ns."""
        if self.correction_delay_ms is None:
            return default_delay_ns(t.period_s for t in self.triggers)
        return int(round(float(self.correction_delay_ms) * 1e6))

    def stream_delays_ns(self) -> dict[str, int]:
        """The streams held longer than ``delay_ns`` (their ``correction_delay_ms``): stream -> delay in ns."""
        out = {}
        for name, o in self.streams.items():
            ns = int(round(float(o.correction_delay_ms) * 1e6))
            if ns > self.delay_ns:
                out[name] = ns
        return out

    @property
    def default_method(self) -> str:
        """The method of a stream whose own is ``auto`` (``identity`` in ``[clock]`` switches the layer off instead)."""
        return "auto" if self.clock.method == "identity" else self.clock.method

    def options(self, stream: str) -> StreamClockOptions:
        return self.streams.get(stream, StreamClockOptions())

    def to_dict(self) -> dict[str, Any]:
        """The ``clock_config`` record (plain, msgpack-able)."""
        return {"kind": RECORD_KIND, "clock": dataclasses.asdict(self.clock),
                "correction_delay_ms": self.correction_delay_ms,
                "triggers": [dataclasses.asdict(t) for t in self.triggers],
                "streams": {name: dataclasses.asdict(o) for name, o in self.streams.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "<recording>") -> ClockLayerConfig:
        """A ``to_dict`` record of any version (missing keys: defaults; unknown keys: ignored); ``ConfigError``
        naming the key when a value is not valid."""
        w = Where(where, RECORD_KIND)
        delay = d.get("correction_delay_ms")
        return cls(clock=_known(ClockSettings, d.get("clock", {}), w.child("clock")),
                   triggers=tuple(_known(TriggerSettings, t, w.child("triggers").child(i))
                                  for i, t in enumerate(d.get("triggers", []))),
                   streams={str(name): _known(StreamClockOptions, o or {}, w.child("streams").child(str(name)))
                            for name, o in d.get("streams", {}).items()},
                   correction_delay_ms=None if delay is None else float(delay))


def _known(cls: type, table: dict, where: Where):
    names = {f.name for f in dataclasses.fields(cls)}
    return build(cls, {k: v for k, v in table.items() if k in names}, where)
