"""What the running agent reports about itself: ``Monitor`` reads the parts of an ``Agent`` (drivers, hub, shipper,
sender) into an ``AgentStatus`` (``status_view``), and their heartbeats into a ``Liveness``.

Reading only: counters and times the parts keep anyway, no locks taken on the data path.  ``RateMeter`` (pure)
turns sample counters into rates over a sliding window.
"""

from __future__ import annotations

import collections
import os
import threading

from synchub.agent.clock.choice import UNKNOWN_UNC_NS
from synchub.agent.core.units import NS

from .liveness import Liveness
from .status_view import AgentStatus, StreamStatus

RATE_WINDOW_S = 5.0
UNLOCKED = ("none", "identity", "arrival")  # methods without clock evidence of their own: not locked


class RateMeter:
    """Samples per second of each stream over the last ``window_s``, from (time, cumulative count) readings."""

    def __init__(self, window_s: float = RATE_WINDOW_S):
        self.window_ns = int(window_s * NS)
        self._hist: dict[str, collections.deque] = {}

    def update(self, name: str, now_ns: int, count: int) -> float:
        h = self._hist.setdefault(name, collections.deque())
        h.append((int(now_ns), int(count)))
        while len(h) > 2 and h[1][0] <= now_ns - self.window_ns:
            h.popleft()
        (t0, c0), (t1, c1) = h[0], h[-1]
        return (c1 - c0) * NS / (t1 - t0) if t1 > t0 else 0.0


def _thread_alive(part) -> bool:
    t = getattr(part, "_thread", None)
    return isinstance(t, threading.Thread) and t.is_alive()


class Monitor:
    """Status and liveness of one ``Agent``; call from one thread (the agent's main loop or its control socket's,
    serialized by the caller)."""

    def __init__(self, agent, liveness_limit_s: float = 5.0):
        self.agent = agent
        self.rates = RateMeter()
        self.liveness = Liveness(liveness_limit_s)
        self._lock = threading.Lock()

    def watch(self, now_ns: int) -> None:
        """Start watching the agent's loops (after ``Agent.start``)."""
        a = self.agent
        for name in ["main", "shipper", *(f"driver {d.info.name}" for d in a.drivers)]:
            self.liveness.watch(name, now_ns)
        if a._house_thread is not None:
            self.liveness.watch("housekeeping", now_ns)
        if _thread_alive(a.outlet):
            self.liveness.watch("sender", now_ns)

    def dead_loops(self, now_ns: int) -> list[str]:
        """Loops that stopped turning (stuck or died); empty while the agent is alive, device or not."""
        a, lv = self.agent, self.liveness
        with self._lock:
            lv.beat("shipper", a.shipper.heartbeat_ns if a.shipper.is_alive() else 0)
            lv.beat("housekeeping", a.house_beat_ns)
            if "sender" in lv.loops and _thread_alive(a.outlet):
                lv.beat("sender", now_ns)
            for d in a.drivers:
                if d.heartbeat_ns:  # a driver whose loop beats
                    lv.beat(f"driver {d.info.name}", d.heartbeat_ns)
                elif _thread_alive(d) or not hasattr(d, "_thread"):
                    lv.beat(f"driver {d.info.name}", now_ns)
            return lv.dead(now_ns)

    def snapshot(self, now_ns: int) -> AgentStatus:
        a = self.agent
        drivers = {d.info.name: d for d in a.drivers}
        streams = []
        with self._lock:
            for name, info in a.infos.items():
                st = a.hub.stats[name]
                d = drivers.get(name)
                held = d.holds_device() if d is not None and hasattr(d, "holds_device") else True
                last = a.hub.last_host_ns.get(name, 0)
                method, sigma = a.shipper.clock_view.get(name, ("", None))
                if sigma is not None and sigma >= UNKNOWN_UNC_NS:
                    sigma = None
                streams.append(StreamStatus(
                    name=name, connected=held, nominal_rate=float(info.nominal_srate),
                    rate_hz=round(self.rates.update(name, now_ns, st.samples), 2),
                    last_sample_age_ns=max(0, now_ns - last) if last else None, method=method, sigma_ns=sigma,
                    locked=bool(method) and method not in UNLOCKED and sigma is not None, gaps=st.gaps,
                    detail="" if held else getattr(d, "last_error", "")))
        out = a.outlet
        spool = getattr(out, "spool", None)
        connected = getattr(out, "connected", None)
        if connected is None:
            connection = "local"  # an in-process outlet (tests, the demo's direct sink)
        else:
            connection = "connected" if connected else ("down" if getattr(out, "last_error", "") else "connecting")
        return AgentStatus(
            agent=a.config.agent.name, streams=tuple(streams), session=getattr(out, "session", ""),
            connection=connection, collector=getattr(out, "endpoint", "") or ", ".join(getattr(out, "endpoints", ())),
            spool_bytes=int(getattr(spool, "live_bytes", 0)), spool_max_bytes=int(getattr(spool, "max_bytes", 0)),
            uptime_s=round((now_ns - a.started_ns) / NS, 1) if a.started_ns else 0.0,
            extra={"pid": os.getpid(), "queue": len(a.queue), "dead_loops": self.dead_loops(now_ns),
                   "dropped": sum(s.dropped for s in a.hub.stats.values()),
                   "latency": (a.latency.summary() if getattr(a, "latency", None) is not None else [])
                   + [v for _, v in sorted(dict(getattr(a.shipper, "clock_notes", {})).items())]})
