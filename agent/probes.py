"""Round-trip probes: bookkeeping for drivers that can ask their device for its clock, and LSL-style offsets.

Pure (no I/O).  A driver whose device answers a time request (the sync box, a serial device with a ``T?``
command) uses a ``ProbeTracker``: ``due(now)`` says when to send the next one, ``sent(id, t)`` records the host send
time, ``reply(id, device_ns, t)`` turns the answer into a ``Probe`` (evidence for the ClockModel, which does the
min-RTT filtering and one-way bounds).  Replies that match no request, come back after ``timeout_ns`` or twice are
counted, never used.

``lsl_offset`` is what liblsl's ``time_correction`` computes from a burst of probes (the offset of the probe with
the smallest round trip, midpoint convention); the benchmark writes it into XDF ClockOffset chunks.
"""

from __future__ import annotations

from collections import OrderedDict

from .evidence import Probe


class ProbeTracker:
    """Schedules probes every ``interval_ns`` (bursts of ``burst`` back to back) and pairs replies with requests."""

    def __init__(self, stream: str, interval_ns: int = 1_000_000_000, burst: int = 1, timeout_ns: int = 1_000_000_000,
                 max_outstanding: int = 16):
        if interval_ns <= 0 or burst < 1 or timeout_ns <= 0:
            raise ValueError("probe interval, burst and timeout must be positive")
        self.stream = stream
        self.interval = int(interval_ns)
        self.burst = int(burst)
        self.timeout = int(timeout_ns)
        self.max_outstanding = int(max_outstanding)
        self._next_ns: int | None = None
        self._left_in_burst = 0
        self._outstanding: OrderedDict[int, int] = OrderedDict()
        self._next_id = 0
        self.counts: dict[str, int] = {}

    def _count(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1

    def due(self, now_ns: int) -> bool:
        """True when a probe should be sent now."""
        if self._left_in_burst > 0:
            return True
        if self._next_ns is None or now_ns >= self._next_ns:
            self._left_in_burst = self.burst
            self._next_ns = int(now_ns) + self.interval
            return True
        return False

    def next_id(self) -> int:
        pid = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFF_FFFF
        return pid

    def sent(self, probe_id: int, host_send_ns: int) -> None:
        self._left_in_burst = max(self._left_in_burst - 1, 0)
        self._outstanding[int(probe_id)] = int(host_send_ns)
        while len(self._outstanding) > self.max_outstanding:
            self._outstanding.popitem(last=False)
            self._count("lost")

    def reply(self, probe_id: int, device_ns: int, host_recv_ns: int) -> Probe | None:
        send = self._outstanding.pop(int(probe_id), None)
        if send is None:
            self._count("unknown_reply")
            return None
        rtt = int(host_recv_ns) - send
        if rtt < 0:
            self._count("negative_rtt")
            return None
        if rtt > self.timeout:
            self._count("timeout")
            return None
        self._count("ok")
        return Probe(self.stream, send, int(device_ns), int(host_recv_ns))

    def expire(self, now_ns: int) -> int:
        """Drop requests older than the timeout (counted as lost); returns how many."""
        old = [k for k, t in self._outstanding.items() if now_ns - t > self.timeout]
        for k in old:
            del self._outstanding[k]
            self._count("lost")
        return len(old)


def lsl_offset(probes: list[Probe]) -> tuple[int, int, int] | None:
    """LSL's estimate from a burst: ``(host time, offset = host - device, rtt)`` of the minimum-RTT probe."""
    best = None
    for p in probes:
        rtt = p.host_recv_ns - p.host_send_ns
        if rtt < 0:
            continue
        if best is None or rtt < best[2]:
            mid = p.host_send_ns + rtt // 2
            best = (mid, mid - p.device_ns, rtt)
    return best
