"""The agent's state as people and systemd see it (pure: no I/O): per stream state, rate, age of the last sample,
clock method, sigma and lock, gaps; the spool; the connection to the collector.

``AgentStatus`` is what a running agent reports (``synchub status`` over its control socket, and systemd's
``STATUS=``); this module classifies and formats it: ``status_line`` (one line for ``STATUS=``, degraded streams
first), ``table`` (the terminal view), ``to_dict``/``from_dict`` (JSON).  A missing device is a *state* of its stream
(``missing``), never a reason to restart: the agent keeps running and says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

NS = 1_000_000_000  # as synchub.agent.core.units.NS; not imported from there: `synchub status` needs no numpy (< 0.2 s)

STALL_MIN_S = 2.0  # a stream is stalled when no sample came for max(this, STALL_PERIODS sample periods)
STALL_PERIODS = 10
SPOOL_WARN = 0.8  # spool fill fraction that makes the agent degraded


@dataclass(frozen=True)
class StreamStatus:
    name: str
    connected: bool = True  # the driver holds its device (port open, capture program running)
    nominal_rate: float = 0.0  # Hz, 0: irregular
    rate_hz: float = 0.0  # measured over the last window
    last_sample_age_ns: int | None = None  # None: no sample yet
    method: str = ""  # correction method in use (triggers, probes, arrival, neural, ...)
    sigma_ns: int | None = None  # 1-sigma uncertainty of the latest corrected sample
    locked: bool = False  # the clock model has current evidence
    gaps: int = 0  # samples recorded as lost
    detail: str = ""  # why it is not ok, in the driver's words (e.g. "no such port /dev/serial0")

    @property
    def state(self) -> str:
        """``missing`` (device not held), ``waiting`` (held, no sample yet), ``stalled``, ``ok``; an irregular stream
        (event log, markers) is never stalled by silence."""
        if not self.connected:
            return "missing"
        if self.last_sample_age_ns is None:
            return "waiting"
        if self.nominal_rate > 0:
            limit = max(STALL_MIN_S, STALL_PERIODS / self.nominal_rate) * NS
            if self.last_sample_age_ns > limit:
                return "stalled"
        return "ok"


@dataclass(frozen=True)
class AgentStatus:
    agent: str
    streams: tuple[StreamStatus, ...] = ()
    session: str = ""
    connection: str = "connecting"  # connected | connecting | down | local (an in-process outlet)
    collector: str = ""
    spool_bytes: int = 0
    spool_max_bytes: int = 0
    uptime_s: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def spool_fill(self) -> float:
        return self.spool_bytes / self.spool_max_bytes if self.spool_max_bytes else 0.0

    def problems(self) -> list[str]:
        """Why the agent is degraded, most important first; empty when all is well."""
        out = []
        for s in self.streams:
            if s.state == "missing":
                out.append(f"{s.name} missing" + (f" ({s.detail})" if s.detail else ""))
            elif s.state == "stalled":
                out.append(f"{s.name} stalled {s.last_sample_age_ns / NS:.1f} s")
        out += [f"loop {d} not turning" for d in self.extra.get("dead_loops", ())]
        if self.connection not in ("connected", "local"):
            out.append(f"collector {self.connection}")
        if self.spool_fill >= SPOOL_WARN:
            out.append(f"spool {100 * self.spool_fill:.0f} % full")
        return out


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def status_line(st: AgentStatus, width: int = 200) -> str:
    """One line for systemd's ``STATUS=``: ``DEGRADED: <problems>; ...`` or ``ok: ...``, cut to ``width``."""
    problems = st.problems()
    waiting = [s.name for s in st.streams if s.state == "waiting"]
    ok = sum(s.state == "ok" for s in st.streams)
    parts = [f"{ok}/{len(st.streams)} streams ok"]
    if waiting:
        parts.append(f"waiting for {', '.join(waiting)}")
    parts.append(f"spool {_mb(st.spool_bytes)}")
    if st.connection == "connected":
        parts.append("collector connected")
    head = f"DEGRADED: {', '.join(problems)}; " if problems else "ok: "
    line = head + "; ".join(parts)
    return line if len(line) <= width else line[: width - 3] + "..."


def _fmt_age(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / NS:.1f} s"


def table(st: AgentStatus) -> str:
    """The terminal view: one row per stream, then spool and connection."""
    head = f"{'stream':12} {'state':8} {'rate Hz':>9} {'nominal':>8} {'last':>8} {'method':10} {'sigma':>10} " \
           f"{'lock':5} {'gaps':>6}"
    rows = [f"agent {st.agent}" + (f", session {st.session}" if st.session else "") +
            f", up {st.uptime_s:.0f} s", head, "-" * len(head)]
    for s in st.streams:
        sigma = "-" if s.sigma_ns is None else (f"{s.sigma_ns / 1e3:.1f} us" if s.sigma_ns < 1_000_000
                                                  else f"{s.sigma_ns / 1e6:.2f} ms")
        rows.append(f"{s.name[:12]:12} {s.state:8} {s.rate_hz:9.1f} {s.nominal_rate:8.1f} "
                    f"{_fmt_age(s.last_sample_age_ns):>8} {s.method[:10] or '-':10} {sigma:>10} "
                    f"{'yes' if s.locked else 'no':5} {s.gaps:6d}" + (f"  {s.detail}" if s.detail else ""))
    fill = f" ({100 * st.spool_fill:.0f} % of {_mb(st.spool_max_bytes)})" if st.spool_max_bytes else ""
    rows += [f"latency {line}" for line in st.extra.get("latency", ())]
    rows.append(f"spool {_mb(st.spool_bytes)}{fill}; collector {st.collector or '?'}: {st.connection}")
    problems = st.problems()
    rows.append("DEGRADED: " + ", ".join(problems) if problems else "ok")
    return "\n".join(rows)


def to_dict(st: AgentStatus) -> dict:
    d = dataclasses.asdict(st)
    d["streams"] = [{**dataclasses.asdict(s), "state": s.state} for s in st.streams]
    d["status_line"] = status_line(st)
    return d


def from_dict(d: dict) -> AgentStatus:
    names = {f.name for f in dataclasses.fields(StreamStatus)}
    streams = tuple(StreamStatus(**{k: v for k, v in s.items() if k in names}) for s in d.get("streams", ()))
    keep = {f.name for f in dataclasses.fields(AgentStatus)} - {"streams"}
    return AgentStatus(streams=streams, **{k: v for k, v in d.items() if k in keep})
