"""Loading an agent config: a TOML file validated into a ``Config`` (``synchub.agent.config.schema``).

Each ``[[stream]]`` table is split into the keys every driver shares (``StreamCommon``) and its driver's own keys,
validated by that driver's settings class (found through ``synchub.drivers.registry``).  Every problem raises
``ConfigError`` naming the file, the key and what is allowed (with a did-you-mean).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from synchub.agent.align.markers import rules_from
from synchub.agent.clock.settings import ClockSettings
from synchub.agent.core.options import StreamCommon, TriggerSettings
from synchub.agent.core.settings import ConfigError, Where, build, read_toml, suggest
from synchub.agent.transport import wire
from synchub.agent.transport.endpoints import check_endpoint
from synchub.drivers import registry
from synchub.drivers.sim.settings import SimSettings

from .schema import TOP_LEVEL, AgentSettings, Config, LslOutletSettings, StreamSettings


def driver_settings_class(name: str, where: Where) -> type:
    """The settings class of a driver, from ``synchub.drivers.registry``."""
    try:
        return registry.load(name).settings
    except KeyError:
        known = registry.names()
        raise where.error(f"unknown driver {name!r}{suggest(name, known)}; allowed: {', '.join(known)}") from None
    except ImportError as exc:  # DriverUnavailable: one line naming the driver (a missing extra, a broken plugin)
        raise where.error(str(exc)) from None


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
        sim = build(SimSettings, data["sim"], where.child("sim"))
    lsl = build(LslOutletSettings, data.get("lsl", {}), where.child("lsl"))
    _check_names(streams, triggers, where)
    _check_agent(agent, where.child("agent"))
    known = {st.name for st in streams}
    for i, name in enumerate(lsl.streams):
        if name not in known:
            raise where.child("lsl").child("streams").child(i).error(
                f"no stream named {name!r}{suggest(name, known)}; allowed: {', '.join(sorted(known)) or 'none'}")
    return Config(file=file, agent=agent, clock=clock, streams=streams, triggers=triggers, sim=sim, lsl=lsl)


def _check_agent(agent: AgentSettings, where: Where) -> None:
    """What the collector and the sockets would refuse later, refused now."""
    if not 1 <= len(agent.name) <= wire.MAX_NAME:
        raise where.child("name").error(f"{len(agent.name)} characters; allowed: 1-{wire.MAX_NAME} (the collector's "
                                        "limit)")
    if not agent.collector:
        raise where.child("collector").error("no endpoint; give at least one, e.g. [\"tcp://collector:7100\"]")
    for i, ep in enumerate(agent.collector):
        try:
            check_endpoint(ep)
        except ValueError as exc:
            raise where.child("collector").child(i).error(str(exc)) from None


def _check_names(streams, triggers, where: Where) -> None:
    seen: dict[str, int] = {}
    for kind, items in (("trigger", triggers), ("stream", streams)):
        for i, t in enumerate(items):
            if not 1 <= len(t.name) <= wire.MAX_NAME:
                raise where.child(kind).child(i).child("name").error(f"allowed: 1-{wire.MAX_NAME} characters")
            if not t.name.isprintable():  # names go into messages, file names and the wire: no control characters
                raise where.child(kind).child(i).child("name").error(f"{t.name!r}: allowed: printable characters")
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
        if s.common.markers:
            try:
                rules_from(s.common.markers)
            except ValueError as exc:
                raise where.child("stream").child(i).child("markers").error(str(exc)) from None
        if s.common.align_to and s.common.align_to not in seen:
            raise where.child("stream").child(i).child("align_to").error(
                f"no stream named {s.common.align_to!r}; allowed: {', '.join(sorted(seen))}"
            )


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file."""
    return parse_config(read_toml(path), str(path))


def require_streams(config: Config) -> Config:
    """An agent's config must record something (``synchub sim`` runs a [sim] table alone)."""
    if not config.streams and not config.triggers:
        raise ConfigError(f"{config.file}: no [[stream]] or [[trigger]] tables: nothing to record")
    return config
