"""Is the agent alive?  Its loops turning, not its data flowing (pure: times come from the caller).

Every loop of the agent (the main loop, the shipper, the housekeeping thread, the control socket, each driver's
reader) beats once per turn.  ``Liveness.dead(now_ns)`` names the loops that have not beaten within their limit;
systemd's ``WATCHDOG=1`` is sent only while that list is empty.  A driver whose device is unplugged still turns
(it waits and retries), so a missing device keeps the watchdog fed: it is a degraded state in ``STATUS=``, never a
restart.  A loop stuck in a blocking call, or a dead thread, stops the pings and systemd restarts the agent.
"""

from __future__ import annotations

from synchub.agent.core.units import NS

DEFAULT_LIMIT_S = 5.0


class Liveness:
    """Heartbeats by loop name.  ``watch(name)`` before the loop starts (a loop that never beats is dead once its
    limit has passed since it was watched); ``beat(name, now_ns)`` every turn; ``forget(name)`` when it ends on
    purpose."""

    def __init__(self, limit_s: float = DEFAULT_LIMIT_S):
        self.limit_ns = int(limit_s * NS)
        self._last: dict[str, int] = {}
        self._limits: dict[str, int] = {}

    def watch(self, name: str, now_ns: int, limit_s: float | None = None) -> None:
        self._last[name] = int(now_ns)
        if limit_s is not None:
            self._limits[name] = int(limit_s * NS)

    def beat(self, name: str, now_ns: int) -> None:
        if name in self._last:  # only watched loops count; a late beat after forget() is ignored
            self._last[name] = max(self._last[name], int(now_ns))

    def forget(self, name: str) -> None:
        self._last.pop(name, None)
        self._limits.pop(name, None)

    @property
    def loops(self) -> list[str]:
        return sorted(self._last)

    def dead(self, now_ns: int) -> list[str]:
        """The loops silent for longer than their limit, with how long: ``["shipper (12.0 s)"]``."""
        out = []
        for name, last in sorted(self._last.items()):
            silent = int(now_ns) - last
            if silent > self._limits.get(name, self.limit_ns):
                out.append(f"{name} ({silent / NS:.1f} s)")
        return out

    def alive(self, now_ns: int) -> bool:
        return not self.dead(now_ns)
