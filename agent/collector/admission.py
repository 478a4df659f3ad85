"""What the collector lets one client key take, so that no key can stop another key's agents.  Pure.

* **Sessions per key**: at most ``max_sessions_per_key`` open (not finished) sessions per CURVE key (plain text: all
  clients share the key ""); a hello beyond it is refused with the reason.
* **File budget**: every session with data holds one open MCAP file; at most ``max_open_files`` are open (by default
  half of what ``RLIMIT_NOFILE`` leaves after a reserve, the other half for connections).  When the budget is full,
  the part file of the session silent the longest is finished (the session continues in a new part when it comes
  back); if every one is busy, the message waits (no ack: the agent resends).
* **In flight**: a key's sessions share ``key_credit_bytes`` of unacked data (each session's credit window is its
  share), so many sessions of one key cannot fill the collector's memory.
* **Eviction**: a finished session is forgotten ``linger_s`` after it ended, one silent for ``idle_s`` too (its file
  is finished; a session that comes back is welcomed from what is on disk), so memory stays flat.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

RESERVE_FDS = 64  # the collector's own sockets, pipes, the fsync thread, the live PUB, logging


def file_budget(nofile_soft: int) -> int:
    """Open MCAP files allowed under an ``RLIMIT_NOFILE`` soft limit."""
    return max(4, (nofile_soft - RESERVE_FDS) // 2)


@dataclass
class SessionView:
    """What admission needs to know of a session."""

    sid: str
    user: str
    closed: bool
    last_rx: float
    closed_at: float
    has_file: bool


class Admission:
    def __init__(self, max_open_files: int, max_sessions_per_key: int = 32, key_credit_bytes: int = 256 << 20,
                 idle_s: float = 600.0, linger_s: float = 30.0):
        self.max_open_files = max_open_files
        self.max_sessions_per_key = max_sessions_per_key
        self.key_credit_bytes = key_credit_bytes
        self.idle_s = idle_s
        self.linger_s = linger_s

    @staticmethod
    def open_by_key(sessions: list[SessionView]) -> Counter:
        return Counter(s.user for s in sessions if not s.closed)

    def refuse_hello(self, user: str, sessions: list[SessionView]) -> str:
        """Why a new session of ``user`` is refused ("" when it is not)."""
        n = self.open_by_key(sessions)[user]
        if n >= self.max_sessions_per_key:
            return (f"too many sessions for this key ({n} open, at most {self.max_sessions_per_key}); finished or "
                    f"silent sessions are released after {self.idle_s:g} s")
        return ""

    def credit_bytes(self, user: str, open_by_key: Counter, credit_bytes: int) -> int:
        """The credit window (bytes) of one session of ``user``: its share of the key's in-flight budget."""
        n = max(1, open_by_key[user])
        return max(1 << 20, min(credit_bytes, self.key_credit_bytes // n))

    def file_to_free(self, sessions: list[SessionView], now: float, busy_s: float = 2.0) -> str | None:
        """"" while the file budget has room; when it is full, the session whose part file to finish (silent the
        longest, and for more than ``busy_s``), or None when every open file is busy (the new one must wait)."""
        with_files = [s for s in sessions if s.has_file]
        if len(with_files) < self.max_open_files:
            return ""
        idle = [s for s in with_files if now - s.last_rx > busy_s]
        return min(idle, key=lambda s: s.last_rx).sid if idle else None

    def evictable(self, sessions: list[SessionView], now: float) -> list[str]:
        """Sessions to forget: finished ``linger_s`` ago, or silent for ``idle_s``."""
        return [s.sid for s in sessions
                if (s.closed and now - s.closed_at > self.linger_s) or (now - s.last_rx > self.idle_s)]


def session_views(sessions: dict, parts: dict) -> list[SessionView]:
    """What admission sees of the collector's sessions (``Ledger`` per id) and open part files."""
    return [SessionView(sid, s.user, s.closed, s.last_rx, s.closed_at, sid in parts) for sid, s in sessions.items()]
