"""What a restarted agent finds in its spool: the sessions of earlier processes still to deliver, and for one that
died (its ``Marks`` file left behind, no bye) the ``agent_crash`` gaps of what it had read but not spooled."""

from __future__ import annotations

import logging

from . import wire
from .marks import Marks, crash_gaps, load_marks, marks_path
from .session import SenderSession
from .spool_entry import KIND_BYE, KIND_DATA, KIND_OTHER

log = logging.getLogger(__name__)


def sessions_from_spool(spool, current: str, hello: list[bytes]) -> dict[str, SenderSession]:
    """The sessions to deliver: those an earlier agent process left in ``spool`` (with a hello on record and
    something spooled), oldest first so they drain first, then ``current``."""
    out: dict[str, SenderSession] = {}
    for sid in spool.sessions():
        # a session whose records were all acked loads with last_mid 0; if it died (marks left), its crash gaps
        # still have to go out, numbered after what the collector acked
        crashed = spool.dir is not None and marks_path(spool.dir, sid).exists()
        if sid != current and crashed:
            spool.last_mid[sid] = max(spool.last_mid.get(sid, 0), spool.acked.get(sid, 0))
        if sid != current and spool.last_mid.get(sid, 0) == 0:
            spool.forget(sid)  # an earlier run that never sent anything
            continue
        old = out[sid] = SenderSession(sid, spool.hellos[sid])
        last = spool.last_mid.get(sid, 0)
        e = spool.entries.get((sid, last))
        if e is not None and e.kind == KIND_BYE:
            old.bye_mid = last
    out[current] = out.pop(current, None) or SenderSession(current, hello)
    return out


def crashed_and_new_marks(spool, sessions: dict[str, SenderSession], current: str, streams: list[str]) -> Marks:
    """Sessions of an earlier agent process that died (a marks file left behind, no bye) get their ``agent_crash``
    gaps appended; then the current session's ``Marks``."""
    for sid, s in sessions.items():
        path = marks_path(spool.dir, sid)
        if sid == current or not path.exists():
            continue
        if not s.bye_mid:
            spooled: dict[str, list[tuple[int, int]]] = {}
            for e in list(spool.entries.values()):
                if e.session == sid and e.kind == KIND_DATA:
                    spooled.setdefault(e.stream, []).append((e.seq, e.n))
            for gap in crash_gaps(load_marks(path), spooled):
                mid = spool.last_mid.get(sid, 0) + 1
                spool.append(sid, mid, wire.encode_gap(sid, mid, gap), KIND_OTHER, gap.stream)
                log.warning("transport: session %s ended in a crash: %d %s samples it had read are recorded as an "
                            "agent_crash gap", sid, gap.count, gap.stream)
        path.unlink()
    return Marks(marks_path(spool.dir, current), streams)
