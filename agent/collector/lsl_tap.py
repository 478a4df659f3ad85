"""``synchub collector --lsl-outlet``: every recorded stream of every agent session re-published as an LSL outlet on
the collector's host, so LabRecorder in the lab records the whole fleet from one place.

**What goes out.**  ``LslTap.took(session, message)`` is called by the collector right after it recorded a message
(``Collector._record``, so the ZeroMQ and the NATS collector both have it): of a chunk only the samples the ledger
recorded now (not a duplicate, not a resend), once each; a chunk the collector refused (schema) is not published.
A session's first recorded message opens the outlets of all its streams (``synchub.drivers.lsl.outlet``: the same
spec, type/format tables and push as the agent's ``[lsl] outlet``), named ``PREFIX + AGENT/STREAM`` with the source
id ``synchub-collector:AGENT:STREAM``: unique across agents, distinct from the agent's own outlet, and the same for a
restarted agent's next session, so LabRecorder re-attaches.  A new session of the same agent takes the outlet over
(the same one when its description is unchanged); a session that ends (``bye``) or that the collector forgets
(``sweep``: silent for its idle time) closes its outlets.

**Clock.**  Chunks carry ``ref_ns`` on the agent's reference clock (its ``CLOCK_MONOTONIC``); this host's LSL clock is
another one.  The bridge is UTC: ``stamp = ref_ns + agent(UTC - mono) - collector(UTC - local_clock)``
(``lsl_offset_ns``, pure).  The agent's side comes from its hello (``utc_ns``/``mono_ns`` at session start) and from
later ``meta`` updates carrying ``utc_minus_mono_ns``; the collector's is measured back to back at open and every
``remeasure_s`` (a step of this host's UTC).  So the stamps are as good as the two hosts' NTP/PTP sync (written in the
outlet's ``desc``, ``synchub/clock_accuracy``); for sub-millisecond LSL times use the agent's own outlet.  Samples not
corrected on the agent go out at their host receive time (counted).  A session without a UTC mapping is not
published (counted, logged) until a ``meta`` update gives one.

**Never in the way.**  A push only copies into liblsl's per-inlet buffers (a slow inlet loses its oldest samples,
never blocks); whatever fails here is counted (``errors``) and logged, and the recording goes on.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter
from typing import Any

import numpy as np

from synchub.agent.core.stream import Chunk
from synchub.agent.transport import wire
from synchub.drivers.lsl.inlet import import_pylsl
from synchub.drivers.lsl.outlet import clock_offset_ns, lsl_stamps, outlet_spec, push, stream_info

from .ledger import Ledger

log = logging.getLogger("synchub.agent.collector")

TIMESTAMPS = ("the agent's corrected reference times (its CLOCK_MONOTONIC) mapped through UTC onto this host's LSL "
              "local_clock: ref_ns + agent(UTC - mono) - collector(UTC - local_clock)")
ACCURACY = ("that of the agent's and the collector's NTP/PTP sync; for sub-millisecond times use the agent's own "
            "outlet ([lsl] outlet = true)")


def hello_utc_minus_ref_ns(env: dict[str, Any]) -> int | None:
    """The agent's UTC - CLOCK_MONOTONIC from its hello; None when it sent none."""
    utc, mono = env.get("utc_ns"), env.get("mono_ns")
    if not isinstance(utc, int) or not isinstance(mono, int) or utc <= 0 or mono <= 0:
        return None
    return utc - mono


def meta_utc_minus_ref_ns(meta: Any) -> int | None:
    """A later, better mapping from a ``meta`` update (``utc_minus_mono_ns``), as the readers take it."""
    off = meta.get("utc_minus_mono_ns") if isinstance(meta, dict) else None
    return off if isinstance(off, int) and not isinstance(off, bool) else None


def lsl_offset_ns(agent_utc_minus_ref_ns: int, collector_utc_minus_lsl_ns: int) -> int:
    """What to add to an agent's ``ref_ns`` for this host's LSL clock: through UTC (exact integers)."""
    return int(agent_utc_minus_ref_ns) - int(collector_utc_minus_lsl_ns)


def stamp_times(c: Chunk) -> tuple[np.ndarray, int]:
    """Per sample: the corrected time, or the host receive time where the agent has none; and how many of those."""
    if c.ref_ns is None:
        return np.asarray(c.host_ns, dtype=np.int64), c.n
    ref = np.asarray(c.ref_ns, dtype=np.int64)
    missing = ref < 0
    if not missing.any():
        return ref, 0
    return np.where(missing, np.asarray(c.host_ns, dtype=np.int64), ref), int(missing.sum())


class LslTap:
    """The collector's outlets: ``open()``, ``took(session, message)`` (the recording hook), ``sweep(sessions)``,
    ``close()``; ``stats()`` for the log."""

    def __init__(self, prefix: str = "", collector: str = "", max_buffered_s: int = 360, remeasure_s: float = 10.0):
        self.prefix, self.collector = prefix, collector or socket.gethostname()
        self.max_buffered_s, self.remeasure_s = int(max_buffered_s), remeasure_s
        self.lsl = None
        self.utc_minus_lsl_ns = 0
        self._measured_at = 0.0
        self.outlets: dict[tuple[str, str], tuple[Any, Any, str]] = {}  # (agent, stream) -> (outlet, spec, sid)
        self.agent_utc: dict[str, int | None] = {}  # session -> agent UTC - mono
        self._next: dict[tuple[str, str], int] = {}  # (session, stream) -> next seq not yet published
        self.published: Counter = Counter()  # "agent/stream" -> samples
        self.counts: Counter = Counter()
        self._last_log: dict[str, float] = {}
        self._last_sweep = 0.0

    def open(self) -> LslTap:
        """Load pylsl (``MissingExtra``/``LslError``: one line) and measure this host's UTC - LSL clock."""
        self.lsl = import_pylsl()
        self._measure()
        return self

    def _measure(self) -> None:
        was = self.utc_minus_lsl_ns
        self.utc_minus_lsl_ns = -clock_offset_ns(self.lsl.local_clock, time.time_ns)
        self._measured_at = time.monotonic()
        if was and abs(self.utc_minus_lsl_ns - was) > 1_000_000:
            log.warning("collector LSL: this host's UTC stepped %+.3f ms against its LSL clock",
                        (self.utc_minus_lsl_ns - was) / 1e6)

    # ------------------------------------------------------------------ the hook
    def took(self, s: Ledger, msg: wire.Message) -> None:
        """Message ``msg`` of session ``s`` is recorded: publish what it adds.  Never raises."""
        try:
            self._took(s, msg)
        except Exception as exc:  # noqa: BLE001 - the recording goes on whatever LSL does
            self.counts["errors"] += 1
            self._complain("error", f"{type(exc).__name__}: {exc} ({self.counts['errors']} so far)")

    def _took(self, s: Ledger, msg: wire.Message) -> None:
        if self.lsl is None:
            return
        if time.monotonic() - self._measured_at > self.remeasure_s:
            self._measure()
        if msg.kind == "bye":
            self.end(s.sid, "session ended")
            return
        if s.sid not in self.agent_utc:
            self.agent_utc[s.sid] = hello_utc_minus_ref_ns(s.hello_env)
        self._ensure(s)
        if msg.kind == "meta":
            off = meta_utc_minus_ref_ns(msg.env.get("meta"))
            if off is not None:
                self.agent_utc[s.sid] = off
        elif msg.kind == "chunk":
            self._chunk(s, msg.chunk)

    def _ensure(self, s: Ledger) -> None:
        """The outlets of every stream of ``s`` (a new session of the agent takes over its outlets)."""
        for name, info in s.streams.items():
            key = (s.agent, name)
            have = self.outlets.get(key)
            if have is not None and have[2] == s.sid:
                continue
            spec = outlet_spec(info, s.agent, f"{self.prefix}{s.agent}/{name}", f"synchub-collector:{s.agent}:{name}",
                               TIMESTAMPS, (("clock_accuracy", ACCURACY), ("collector", self.collector)))
            if have is not None and have[1] == spec:
                self.outlets[key] = (have[0], spec, s.sid)
                continue
            self.outlets.pop(key, None)  # a changed description: a new outlet (the old one goes away)
            outlet = self.lsl.StreamOutlet(stream_info(self.lsl, spec), chunk_size=0,
                                           max_buffered=self.max_buffered_s)
            self.outlets[key] = (outlet, spec, s.sid)
            log.info("collector LSL: outlet %r (%s) for session %s", spec.name, spec.source_id, s.sid)

    def _chunk(self, s: Ledger, c: Chunk) -> None:
        end = s.next_seq.get(c.stream)
        if end != c.seq_end:  # the ledger did not record this chunk (a schema problem)
            return
        key = (s.sid, c.stream)
        start = max(c.seq, self._next.get(key, c.seq))
        self._next[key] = end
        if start >= end:
            return
        c = c.slice(start - c.seq, c.n) if start > c.seq else c
        utc = self.agent_utc.get(s.sid)
        if utc is None:
            self.counts["no_utc_samples"] += c.n
            self._complain("no_utc", f"session {s.sid} of {s.agent!r} has no UTC mapping: not published")
            return
        outlet, spec, _ = self.outlets[(s.agent, c.stream)]
        times, uncorrected = stamp_times(c)
        self.counts["host_time_samples"] += uncorrected
        push(outlet, spec, c, lsl_stamps(times, lsl_offset_ns(utc, self.utc_minus_lsl_ns)))
        self.published[f"{s.agent}/{c.stream}"] += c.n

    # ------------------------------------------------------------------ ends
    def end(self, sid: str, why: str) -> None:
        """Close the outlets session ``sid`` holds."""
        for key in [k for k, (_, _, owner) in self.outlets.items() if owner == sid]:
            log.info("collector LSL: outlet %r closed (%s)", self.outlets.pop(key)[1].name, why)
        self.agent_utc.pop(sid, None)
        self._next = {k: v for k, v in self._next.items() if k[0] != sid}

    def sweep(self, sessions, every_s: float = 5.0) -> None:
        """Close the outlets of sessions the collector forgot (``sessions``: its live session ids)."""
        now = time.monotonic()
        if now - self._last_sweep < every_s:
            return
        self._last_sweep = now
        for sid in {owner for _, _, owner in self.outlets.values()} - set(sessions):
            self.end(sid, "session forgotten")

    def close(self) -> None:
        self.outlets.clear()  # pylsl destroys an outlet with its last reference

    def stats(self) -> dict[str, Any]:
        return {"published": dict(self.published), "outlets": len(self.outlets), **dict(self.counts)}

    def _complain(self, reason: str, detail: str) -> None:
        now = time.monotonic()
        if now - self._last_log.get(reason, 0.0) > 5.0:
            self._last_log[reason] = now
            log.warning("collector LSL: %s", detail)
