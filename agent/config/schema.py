"""The agent's TOML config, typed: the tables of a config file and what they validate into.

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

from dataclasses import dataclass
from typing import Any

from synchub.agent.clock.settings import ClockSettings
from synchub.agent.core.options import StreamCommon, TriggerSettings
from synchub.agent.core.settings import setting
from synchub.drivers.sim.settings import SimSettings


@dataclass(frozen=True)
class AgentSettings:
    name: str = setting("synchub-agent", doc="agent name; recorded with every stream as its host (1-200 characters, "
                        "the collector's limit)")
    collector: tuple[str, ...] = setting(
        ("tcp://127.0.0.1:7100",), doc="collector endpoints (ZeroMQ: tcp://HOST:PORT with a port 1-65535, "
        "ipc://PATH), tried in order for failover; at least one"
    )
    queue_chunks: int = setting(1024, min=1, max=1_000_000,
                                doc="bound of the queue between drivers and transport, in chunks")
    overflow: str = setting(
        "block",
        choices=("block", "drop-oldest"),
        doc="when the queue is full: block the driver (lossless) or drop the oldest chunk (counted, recorded as a gap)",
    )
    chunk_ms: float = setting(20.0, min=0.1, max=10_000.0, doc="drivers batch samples into chunks of about this length")
    log_level: str = setting("info", choices=("debug", "info", "warning", "error"), doc="log verbosity")
    spool_dir: str = setting("", doc="on-disk spool directory (empty: a spool under the state directory)")
    calibration_file: str = setting("", doc="latency calibration file (empty: latency.json under the state directory)")
    spool_max_mb: float = setting(512.0, min=1.0, max=1_048_576.0, doc="bound of the on-disk spool (1 MiB..1 TiB)")
    curve_secret_key: str = setting("", doc="agent's CURVE secret key file (empty: plain text, needs --insecure)")
    collector_public_key: str = setting("", doc="collector's CURVE public key file")
    transport: str = setting("zmq", choices=("zmq", "nats"),
                             doc="zmq: to one collector (agent.collector); nats: to a NATS JetStream cluster (agent.nats)")
    site: str = setting("site", doc="NATS transport: the site this agent belongs to (its subjects' second token)")
    nats: tuple[str, ...] = setting(("tls://127.0.0.1:4222",), doc="NATS transport: the cluster's server URLs")
    nats_credentials: str = setting(
        "", doc="NATS transport: key file (nkey seed, .creds, user/password TOML or the CURVE secret key)")
    nats_ca: str = setting("", doc="NATS transport: the site CA file the servers' TLS certificates are checked against")
    fusion: bool = setting(
        False, doc="record fused multimodal vectors + per-stream anomaly scores (ONNX encoders) as stream 'fused'"
    )
    fusion_window_s: float = setting(1.0, min=0.1, max=60.0, doc="window of one fused vector")


@dataclass(frozen=True)
class LslOutletSettings:
    """``[lsl]``: corrected streams re-published as LSL outlets on the agent's host (``synchub.agent.pipeline.lsl_outlet``),
    so LabRecorder records them next to its own and pyxdf's clock sync maps them."""

    outlet: bool = setting(False, doc="re-publish corrected streams as LSL outlets (pylsl, the lsl extra)")
    streams: tuple[str, ...] = setting((), doc="only these streams (empty: every stream when outlet = true)")
    name_prefix: str = setting("", doc="prefix of the outlets' LSL names (the stream name follows)")
    max_buffered_s: float = setting(360.0, min=1.0, max=3600.0, doc="seconds an outlet keeps for a slow inlet")

    def wanted(self, names) -> list[str]:
        """The streams to publish, of ``names`` (every stream of the agent)."""
        if not self.outlet:
            return []
        return [n for n in names if not self.streams or n in self.streams]


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
    sim: SimSettings | None = None  # the in-process simulated rig, when a [sim] table is present
    lsl: LslOutletSettings = LslOutletSettings()

    def stream(self, name: str) -> StreamSettings:
        for s in self.streams:
            if s.name == name:
                return s
        raise KeyError(name)


TOP_LEVEL = ("agent", "clock", "sim", "trigger", "stream", "lsl")
