"""LSL-style clock offsets from round-trip probes.

Drivers whose device answers a time request (the sync box, the serial devices' ping) turn each round trip into a
``Probe`` (evidence for the ClockModel, which does the min-RTT filtering and one-way bounds).  ``lsl_offset`` is
what liblsl's ``time_correction`` computes from a burst of probes (the offset of the probe with the smallest round
trip, midpoint convention); the benchmark writes it into XDF ClockOffset chunks.
"""

from __future__ import annotations

from synchub.agent.core.evidence import Probe


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
