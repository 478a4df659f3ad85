"""The agent's TOML config, validated into typed, frozen settings.

Layout of a config file (see README's config reference and ``examples/``)::

    [agent]            # who this agent is and where it sends data
    [clock]            # reference clock, UTC mapping, correction method
    [sim]              # optional: run the simulated rig in-process (``port = "sim:NAME"`` points at it)
    [[trigger]]        # host-side trigger inputs (GPIO lines, a GPS PPS line)
    [[stream]]         # one table per stream; ``driver`` picks the driver, whose own keys sit beside the
                       # common ones and are validated by that driver's settings class

Every problem raises ``ConfigError`` naming the file, the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synchub.agent.clock.settings import ClockSettings
from synchub.agent.core.options import StreamCommon, TriggerSettings
from synchub.agent.core.settings import Where, build, read_toml, setting, suggest


@dataclass(frozen=True)
class AgentSettings:
    name: str = setting("synchub-agent", doc="agent name; recorded with every stream as its host")
    collector: tuple[str, ...] = setting(
        ("tcp://127.0.0.1:7100",), doc="collector endpoints (ZeroMQ), tried in order for failover"
    )
    queue_chunks: int = setting(1024, min=1, doc="bound of the queue between drivers and transport, in chunks")
    overflow: str = setting(
        "block",
        choices=("block", "drop-oldest"),
        doc="when the queue is full: block the driver (lossless) or drop the oldest chunk (counted, recorded as a gap)",
    )
    chunk_ms: float = setting(20.0, min=0.1, max=10_000.0, doc="drivers batch samples into chunks of about this length")
    log_level: str = setting("info", choices=("debug", "info", "warning", "error"), doc="log verbosity")
    spool_dir: str = setting("", doc="on-disk spool directory (empty: a spool under the state directory)")
    spool_max_mb: float = setting(512.0, min=1.0, doc="bound of the on-disk spool")
    curve_secret_key: str = setting("", doc="agent's CURVE secret key file (empty: plain text, needs --insecure)")
    collector_public_key: str = setting("", doc="collector's CURVE public key file")
    fusion: bool = setting(
        False, doc="record fused multimodal vectors + per-stream anomaly scores (ONNX encoders) as stream 'fused'"
    )
    fusion_window_s: float = setting(1.0, min=0.1, max=60.0, doc="window of one fused vector")


@dataclass(frozen=True)
class StreamSettings:
    common: StreamCommon
    driver: Any  # the driver's own frozen settings

    @property
    def name(self) -> str:
        return self.common.name


@dataclass(frozen=True)
class Config:
    file: str
    agent: AgentSettings
    clock: ClockSettings
    streams: tuple[StreamSettings, ...]
    triggers: tuple[TriggerSettings, ...]
    sim: Any = None  # synchub.drivers.sim settings when a [sim] table is present

    def stream(self, name: str) -> StreamSettings:
        for s in self.streams:
            if s.name == name:
                return s
        raise KeyError(name)


TOP_LEVEL = ("agent", "clock", "sim", "trigger", "stream")


def driver_settings_class(name: str, where: Where) -> type:
    """The settings class of a driver, from ``synchub.drivers.registry``."""
    from synchub.drivers import registry

    try:
        entry = registry.DRIVERS[name]
    except KeyError:
        hint = suggest(name, registry.DRIVERS)
        raise where.error(f"unknown driver {name!r}{hint}; allowed: {', '.join(sorted(registry.DRIVERS))}") from None
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise where.error(f"driver {name!r} is unavailable on this machine: {exc}") from None
    return getattr(module, entry.settings)


def _build_stream(table: Any, where: Where) -> StreamSettings:
    if not isinstance(table, dict):
        raise where.error("expected a table")
    common_keys = {f.name for f in dataclasses.fields(StreamCommon)}
    common_table = {k: v for k, v in table.items() if k in common_keys}
    if "driver" not in common_table:
        raise where.child("driver").error("required key missing (string): driver that reads this stream")
    driver_cls = driver_settings_class(common_table["driver"], where.child("driver"))
    driver_keys = {f.name for f in dataclasses.fields(driver_cls)}
    rest = {k: v for k, v in table.items() if k not in common_keys}
    unknown = set(rest) - driver_keys
    if unknown:
        key = sorted(unknown)[0]
        allowed = sorted(common_keys | driver_keys)
        hint = suggest(key, allowed)
        raise where.child(key).error(
            f"unknown key{hint} for driver {common_table['driver']!r}; allowed keys: {', '.join(allowed)}"
        )
    common = build(StreamCommon, common_table, where)
    driver = build(driver_cls, rest, where)
    return StreamSettings(common=common, driver=driver)


def parse_config(data: dict[str, Any], file: str = "<config>") -> Config:
    where = Where(file)
    for key in data:
        if key not in TOP_LEVEL:
            hint = suggest(key, TOP_LEVEL)
            raise where.child(key).error(f"unknown section{hint}; allowed: {', '.join(TOP_LEVEL)}")
    agent = build(AgentSettings, data.get("agent", {}), where.child("agent"))
    clock = build(ClockSettings, data.get("clock", {}), where.child("clock"))
    triggers_raw = data.get("trigger", [])
    streams_raw = data.get("stream", [])
    for key, raw in (("trigger", triggers_raw), ("stream", streams_raw)):
        if not isinstance(raw, list):
            raise where.child(key).error(f"expected [[{key}]] tables (an array of tables)")
    triggers = tuple(build(TriggerSettings, t, where.child("trigger").child(i)) for i, t in enumerate(triggers_raw))
    streams = tuple(_build_stream(s, where.child("stream").child(i)) for i, s in enumerate(streams_raw))
    sim = None
    if "sim" in data:
        from synchub.drivers.sim.settings import SimSettings

        sim = build(SimSettings, data["sim"], where.child("sim"))
    _check_names(streams, triggers, where)
    return Config(file=file, agent=agent, clock=clock, streams=streams, triggers=triggers, sim=sim)


def _check_names(streams, triggers, where: Where) -> None:
    seen: dict[str, int] = {}
    for i, s in enumerate(streams):
        if s.name in seen:
            raise where.child("stream").child(i).child("name").error(f"duplicate stream name {s.name!r}")
        seen[s.name] = i
    trig_names = {t.name for t in triggers}
    if len(trig_names) != len(triggers):
        raise where.child("trigger").error("duplicate trigger names")
    for i, s in enumerate(streams):
        if s.common.trigger and s.common.trigger not in trig_names and s.common.trigger not in seen:
            allowed = ", ".join(sorted(trig_names | set(seen))) or "none defined"
            raise where.child("stream").child(i).child("trigger").error(
                f"no trigger or stream named {s.common.trigger!r}; allowed: {allowed}"
            )
        if s.common.align_to and s.common.align_to not in seen:
            raise where.child("stream").child(i).child("align_to").error(
                f"no stream named {s.common.align_to!r}; allowed: {', '.join(sorted(seen))}"
            )


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file."""
    return parse_config(read_toml(path), str(path))
