"""sd_notify without libsystemd: READY=1, STATUS=..., WATCHDOG=1 datagrams to ``$NOTIFY_SOCKET``.

``Notifier.watchdog(progress)`` pings only when ``progress`` changed since the last ping (the collector's loop
turned); ``Notifier.keepalive()`` pings on time, for a caller that decided it is alive (the agent: every loop turned,
``liveness.Liveness``).  A stalled loop therefore stops pinging and systemd's ``WatchdogSec=`` restarts the service.
Pings go at most every ``interval_s``, half of ``$WATCHDOG_USEC``.  Without ``NOTIFY_SOCKET`` every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, env: dict | None = None):
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self.addr = ("\0" + addr[1:]) if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC", "")
        self.interval_s = int(usec) / 1e6 / 2 if usec.isdigit() and int(usec) > 0 else 5.0
        self._sock = None
        self._last_ping = 0.0
        self._last_progress = None
        if self.addr:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, text: str) -> bool:
        if self._sock is None:
            return False
        try:
            self._sock.sendto(text.encode(), self.addr)
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self, progress) -> bool:
        """Ping ``WATCHDOG=1`` at most every ``interval_s`` (half of ``WatchdogSec``), and only if ``progress`` (a
        counter or tuple of counters) changed since the last ping: a stalled loop stops pinging."""
        now = time.monotonic()
        if now - self._last_ping < self.interval_s or progress == self._last_progress:
            return False
        self._last_progress = progress
        self._last_ping = now
        return self.send("WATCHDOG=1")

    def keepalive(self) -> bool:
        """Ping ``WATCHDOG=1`` if ``interval_s`` passed since the last ping; the caller checked it is alive."""
        now = time.monotonic()
        if now - self._last_ping < self.interval_s:
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


_default: Notifier | None = None


def notify(text: str) -> bool:
    """Send one sd_notify datagram (``"READY=1"``, ``"WATCHDOG=1"``, ...) to ``$NOTIFY_SOCKET``; a no-op without it.
    The caller decides when: ``synchub agent`` pings with ``Notifier.keepalive`` while all its loops turn."""
    global _default
    if _default is None:
        _default = Notifier()
    return _default.send(text)
