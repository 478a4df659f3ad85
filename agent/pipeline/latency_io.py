"""The agent's latency calibration (``synchub.agent.align.latency``) at its edges: the file and the session.

``calibration_path``: ``[agent] calibration_file``, else ``$STATE_DIRECTORY/latency.json`` (systemd's
``StateDirectory=``), else ``$XDG_STATE_HOME`` (default ``~/.local/state``) ``/synchub/latency/<agent name>.json``.
``load_store`` reads it (missing: empty; foreign, damaged or truncated: one logged line, empty); ``save_store``
replaces it atomically.  ``SessionLatency`` is what the running agent holds: for each aligned stream that a
trigger line also maps it keeps the aligner's estimates and, at stop, measures them against the trigger path of the
final clock model; it also passes them on as they came to the stream's clock model, whose trigger fallback
(``synchub.agent.clock.fallback``) never lets them touch the trigger path but maps the stream by them once its edges
stop (the wire pulled, the trigger box off), corrected by the latency measured against the edges this session, else
by the one stored for the pair (``fallback``: the agent hands it to the clock layer).  For each aligned stream without a trigger it applies the stored latency of its pair
to every estimate before the clock model sees it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path

import numpy as np

from synchub.agent.align.latency import LatencyMeter, LatencyStore, PairKey, apply
from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.stream import safe_name
from synchub.agent.formats.file_output import atomic_output
from synchub.agent.transport.configure import state_path

log = logging.getLogger("synchub.agent")

#: Trigger-path mappings looser than this (1-sigma) measure no latency worth storing.
MAX_TRIGGER_UNC_NS = 1_000_000
#: the newest aligner estimates kept per session to measure at stop (30 minutes of 4 s hops per wired stream): a
#: week-long session holds no more, and the final clock model maps recent ones best
HELD_MAX = 450


def calibration_path(agent, env) -> Path:
    if agent.calibration_file:
        return Path(agent.calibration_file)
    return state_path(env, "latency.json", f"latency/{safe_name(agent.name)}.json")


def load_store(path: Path) -> LatencyStore:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LatencyStore()
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("latency calibration %s ignored: cannot read it (%s)", path, exc)
        return LatencyStore()
    try:
        return LatencyStore.from_text(text)
    except ValueError as exc:
        log.warning("latency calibration %s ignored: %s", path, exc)
        return LatencyStore()


def save_store(path: Path, store: LatencyStore) -> None:
    """Atomic (``atomic_output``: a temporary file in the same directory, fsynced, then renamed over the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as fh:
        fh.write(store.to_text().encode("utf-8"))


class SessionLatency:
    """``pairs``: aligned stream -> (its ``PairKey``, whether a trigger line maps it this session)."""

    def __init__(self, path: Path, pairs: dict[str, tuple[PairKey, bool]], session: str = ""):
        self.path, self.pairs, self.session = path, pairs, session
        self.store = load_store(path)
        self.applied = {s: self.store.get(k) for s, (k, wired) in pairs.items() if not wired and self.store.get(k)}
        self.measuring = {s for s, (_, wired) in pairs.items() if wired}
        # a wired stream's stored latency: its clock layer's fallback prior (``StreamClocks.latency_prior``)
        self.fallback = {s: self.store.get(k) for s, (k, wired) in pairs.items() if wired and self.store.get(k)}
        self.held: deque[OffsetEstimate] = deque(maxlen=HELD_MAX * max(1, len(self.measuring)))
        self.measured: dict[str, dict] = {}
        for s, lat in self.applied.items():
            log.info("latency calibration: %s corrected by %.3f ms (+-%.3f ms, %d windows, session %s)",
                     pairs[s][0].label(), lat.latency_ns / 1e6, lat.sigma_ns / 1e6, lat.n, lat.session or "?")

    def __call__(self, est: OffsetEstimate) -> OffsetEstimate:
        """An aligner estimate on its way to the clock model: a wired stream's as it came (also kept to measure at
        stop; its clock model uses it only while its trigger is stale, ``synchub.agent.clock.fallback``), an
        unwired one's corrected by the pair's stored latency."""
        if est.stream in self.measuring:
            self.held.append(est)
            return est
        lat = self.applied.get(est.stream)
        return apply(est, lat) if lat is not None else est

    def finish(self, clocks, save: bool = True) -> dict:
        """At stop, the clock layer's final trigger path against each held estimate; stores what agreed."""
        meter = LatencyMeter()
        models = getattr(clocks, "clocks", {})
        for est in self.held:
            sc = models.get(est.stream)
            if sc is None:
                continue
            for method in ("triggers", "probes"):
                ref, unc, _ = sc.model.map(np.array([est.device_ns]), method=method)
                if int(unc[0]) <= MAX_TRIGGER_UNC_NS:
                    meter.add(self.pairs[est.stream][0], est.offset_ns, int(ref[0]) - est.device_ns)
                    break
        results = meter.results()
        counts = meter.counts()
        for s in sorted(self.measuring):
            key = self.pairs[s][0]
            lat = results.get(key)
            self.measured[s] = ({"pair": key.label(), "latency_ns": lat.latency_ns, "sigma_ns": lat.sigma_ns,
                                 "n": lat.n, "rejected": lat.rejected} if lat is not None else
                                {"pair": key.label(), "windows": counts.get(key.label(), 0),
                                 "reason": "too few windows measured against the trigger path"})
            if lat is None:
                log.info("latency calibration: %s not measured (%d windows against the trigger path)", key.label(),
                         counts.get(key.label(), 0))
        if results and save:
            self.store.update(results, self.session, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            try:
                save_store(self.path, self.store)
                log.info("latency calibration: %d pair(s) stored in %s", len(results), self.path)
            except OSError as exc:
                log.warning("latency calibration: cannot store %s: %s", self.path, exc)
        return self.measured

    def summary(self) -> list[str]:
        """One line per aligned stream the calibration touches (``synchub status``)."""
        out = [f"{s}: aligner corrected by a stored latency of {v.latency_ns / 1e6:.2f} +- {v.sigma_ns / 1e6:.2f} ms "
               f"({v.n} windows, session {v.session or '?'})" for s, v in sorted(self.applied.items())]
        return out + [f"{s}: measuring its aligner's latency against the trigger path (the aligner is its fallback"
                      + (f", corrected by a stored {self.fallback[s].latency_ns / 1e6:.2f} ms" if s in self.fallback
                         else "") + ")" for s in sorted(self.measuring)]

    def describe(self) -> dict:
        """For the recording's metadata and the status: what was applied, what is measured, from which file."""
        return {"kind": "latency_calibration", "file": str(self.path),
                "applied": {s: {"pair": self.pairs[s][0].label(), "latency_ns": v.latency_ns,
                                "sigma_ns": v.sigma_ns, "n": v.n, "session": v.session,
                                "measured_utc": v.measured_utc} for s, v in sorted(self.applied.items())},
                "measuring": sorted(self.measuring), "measured": dict(self.measured),
                "fallback": {s: {"pair": self.pairs[s][0].label(), "latency_ns": v.latency_ns, "sigma_ns": v.sigma_ns,
                                 "session": v.session} for s, v in sorted(self.fallback.items())}}
