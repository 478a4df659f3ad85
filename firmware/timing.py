"""Run a sync box output setting in simavr under load and check every output edge against its tick.

``run_output`` starts the firmware in ``SimBox``, SETs and STARTs an output, and loads the CPU the way the limits
in PROTOCOL.md must survive: input edges on D8 timed to land just before output edges (the capture handler is
then running, or queued ahead of the compare handler, when the compare match comes), occasionally in pairs, and
ping traffic on the UART.  It then compares the output pin (the harness's compare-match cycles) with the edges
the reported codes should have, tick by tick.

Cycle numbers are simulated AVR cycles; ``c0`` is the cycle at which the device clock read 0.  Used by
tests/firmware/test_firmware.py (short runs at the limits) and bench/firmware.py (sweeps below them, with a
``CHECK_TIMING=0`` build whose SET accepts what the firmware cannot meet).
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

from synchub.agent.clock.barcode import barcode_levels, harp_levels
from synchub.drivers.syncbox import protocol as P
from synchub.drivers.syncbox.driver import SyncBoxClient

from . import harness


def _edges(levels: list[int], t0: int, slot: int, idle: int) -> list[tuple[int, int]]:
    out, cur = [], idle
    for k, lvl in enumerate(levels + [idle]):
        if lvl != cur:
            out.append((t0 + k * slot, lvl))
            cur = lvl
    return out


def code_edges(pulse: P.Pulse, mode: int, width: int, bit: int, ticks_per_s: int) -> list[tuple[int, int]]:
    """The (tick, level) edges of the code a PULSE message reports (PROTOCOL.md, SET modes)."""
    if mode == P.MODE_PULSE:
        return [(pulse.t, 1), (pulse.t + width, 0)]
    if mode == P.MODE_BARCODE:
        return _edges(barcode_levels(pulse.value), pulse.t, bit, 0)
    return _edges(harp_levels(pulse.value), pulse.t, ticks_per_s // 1000, 1)


@dataclass
class OutputRun:
    """What ``run_output`` saw; ``ok`` when every edge of every reported code was on its tick."""

    setting: tuple[int, int, int, int]  # mode, period, width, bit (ticks)
    codes: int = 0  # codes reported (PULSE messages) and checked
    edges: int = 0  # output edges those codes should have
    on_tick: int = 0  # ... found on the pin at exactly their tick
    off_tick: list[tuple[int, int]] = field(default_factory=list)  # (expected tick, error in cycles) of the rest
    extra: int = 0  # pin edges no reported code explains
    index_gaps: int = 0  # places where the next reported index is not the previous one + 1
    unreported: int = 0  # codes on the pin whose PULSE frame did not arrive (dropped: counted by the box)
    period_errors: int = 0  # codes not exactly one period after the previous one
    late_edges: int = 0  # STATUS late edges
    tx_dropped: int = 0
    lost_frames: int = 0
    rejected: dict = field(default_factory=dict)  # frames the host's decoder rejected, by reason
    ev_dropped: int = 0
    sim_tx_lost: int = 0  # bytes the harness dropped because this host did not read the pty in time
    inputs: int = 0  # input edges injected
    pings: int = 0
    compa_latency_max: int | None = None  # cycles from a compare match to its handler (vectors=True)

    @property
    def on_time(self) -> bool:
        """Every output edge exactly on its tick, none late, none extra."""
        return (self.codes > 1 and self.on_tick == self.edges and not self.extra and not self.period_errors
                and not self.late_edges)

    @property
    def ok(self) -> bool:
        """On time, and every code reported once, in order."""
        return self.on_time and not self.index_gaps and not self.unreported

    def summary(self) -> dict:
        worst = max((abs(e) for _, e in self.off_tick), default=0)
        return {"mode": self.setting[0], "period": self.setting[1], "width": self.setting[2], "bit": self.setting[3],
                "on_time": self.on_time, "ok": self.ok, "codes": self.codes, "edges": self.edges, "on_tick": self.on_tick,
                "worst_error_cycles": worst, "extra_edges": self.extra, "index_gaps": self.index_gaps, "unreported": self.unreported,
                "late_edges": self.late_edges, "tx_dropped": self.tx_dropped, "lost_frames": self.lost_frames,
                "ev_dropped": self.ev_dropped, "rejected": self.rejected, "sim_tx_lost": self.sim_tx_lost,
                "inputs": self.inputs, "pings": self.pings, "compa_latency_max_cycles": self.compa_latency_max}


def _c0(pulses: list[P.Pulse], edges: list[tuple[int, int]], level: int, prescaler: int) -> int | None:
    """Device-clock origin: the offset that puts the first reported codes on pin edges of their level."""
    at = {x for x, lv in edges if lv == level}
    for x in sorted(at):
        o = x - pulses[0].t * prescaler
        if all(p.t * prescaler + o in at for p in pulses):
            return o
    return None


def run_output(mode: int, period: int, width: int = 0, bit: int = 0, *, sim_s: float = 0.3,
               elf=None, inputs: int = 4, ping_every_s: float = 0.005, vectors: bool = False,
               timeout: float = 30.0) -> OutputRun:
    """SET/START an output in a fresh simulated box, load it for ``sim_s`` simulated seconds (real-time paced),
    STOP, and check the pin against the reported codes.  Raises ``SyncBoxError`` when SET is refused."""
    run = OutputRun((mode, period, width, bit))
    # backpressure: a host slowed down by machine load must not lose frames the box sent (it would look like
    # a reporting failure of the firmware)
    with harness.SimBox(elf, realtime=True, vectors=vectors, backpressure=True) as box:
        c = SyncBoxClient(box.port, timeout=5.0)
        try:
            v = c.hello()
            presc, tps = v.prescaler, v.ticks_per_s
            c.request(P.set_config, mode, period, width, bit)
            msgs = []
            c.on_message = lambda m, _ns: msgs.append(m)
            c.request(P.simple, P.CMD_START)
            pulses = lambda: [m for m in msgs if isinstance(m, P.Pulse)]  # noqa: E731
            end = time.monotonic() + timeout
            while len(pulses()) < 2 and time.monotonic() < end:
                msgs += [m for m, _ in c.poll()]
            first = pulses()[:2]
            level0 = code_edges(first[0], mode, width, bit, tps)[0][1] if first else 1
            c0 = None
            while len(first) == 2 and c0 is None and time.monotonic() < end:  # the pin log may trail the UART
                c0 = _c0(first, [(e[2], e[1]) for e in list(box.out_edges)], level0, presc)
                time.sleep(0.02)
            if c0 is None:
                raise RuntimeError(f"no codes on the pin for {run.setting}: {len(first)} reported")
            now, _ = box.now()
            stop_at = now + int(sim_s * harness.F_CPU)
            if inputs:  # input edges just before every ``inputs``-th scheduled output edge (some in pairs)
                sched, k = [], 0
                t, idx = first[-1].t, first[-1].index
                step = period if mode != P.MODE_HARP else tps
                while (c0 + t * presc) < stop_at:
                    t += step
                    idx += 1
                    proto = P.Pulse(0, idx, idx if mode == P.MODE_BARCODE else t // tps, t)
                    for tick, _ in code_edges(proto, mode, width, bit, tps):
                        cyc = c0 + tick * presc
                        k += 1
                        if cyc > now + harness.F_CPU // 50 and k % inputs == 0:
                            lead = (37 * k) % 600  # the capture handler starts up to 600 cycles before the edge
                            sched.append(cyc - lead)
                            if k % (5 * inputs) == 0:  # a pair: a second capture queued behind the first
                                sched.append(cyc - lead + 90)
                sched = sorted(set(sched))
                for i, cyc in enumerate(sched):
                    box.inject(cyc, (i + 1) % 2)
                run.inputs = len(sched)
            token, sent_at, gap = 0, None, int(ping_every_s * harness.F_CPU)
            while (at := box.now()[0]) < stop_at:
                # one ping per ``ping_every_s`` of simulated time: paced by the wall clock alone, a simulation that
                # fell behind on a loaded machine and caught up found several queued at once, a burst of replies
                # beyond the load designed here (a CI run: 2 frames dropped at the shortest gap; not reproduced)
                if sent_at is None or at - sent_at >= gap:
                    token += 1
                    c.ser.write(b"\x00" + P.ping(0xFFFE, token))  # not waited for: replies are polled below
                    run.pings += 1
                    sent_at = at
                msgs += [m for m, _ in c.poll()]
                time.sleep(ping_every_s)
            c.request(P.simple, P.CMD_STOP)
            st = c.status()
            msgs += [m for m, _ in c.poll()]
            run.late_edges, run.tx_dropped, run.lost_frames = st.late_edges, st.tx_dropped, c.lost_frames
            run.ev_dropped, run.rejected = st.ev_dropped, dict(c.decoder.rejected)
        finally:
            c.close()
    run.sim_tx_lost = box.tx_lost
    _check(run, [m for m in msgs if isinstance(m, P.Pulse)], box, c0, presc, tps)
    if vectors:
        run.compa_latency_max = _compa_latency(box)
    return run


def _check(run: OutputRun, pulses: list[P.Pulse], box, c0: int, presc: int, tps: int) -> None:
    """Every code from the first to the last reported one (a code whose PULSE frame was dropped is computed
    from its index) must be on the pin edge for edge, and nothing else may be; reported codes must sit
    exactly on the period grid."""
    mode, period, width, bit = run.setting
    run.codes = len(pulses)
    if not pulses:
        return
    first, step = pulses[0], tps if mode == P.MODE_HARP else period
    seen = {p.index for p in pulses}
    run.unreported = (pulses[-1].index - first.index + 1) - len(seen)
    run.index_gaps = sum(b.index != a.index + 1 for a, b in zip(pulses, pulses[1:], strict=False))
    run.period_errors = sum(p.t != first.t + (p.index - first.index) * step for p in pulses)
    codes = []
    for i in range(first.index, pulses[-1].index):  # the STOP may cut the last code short: not checked
        t = first.t + (i - first.index) * step
        codes.append(P.Pulse(0, i, i if mode == P.MODE_BARCODE else t // tps if mode == P.MODE_HARP else 0, t))
    want = sorted({(c0 + t * presc, lv) for p in codes for t, lv in code_edges(p, mode, width, bit, tps)})
    run.edges = len(want)
    if not want:
        return
    lo, hi = want[0][0], want[-1][0]
    got = {x: lv for x, lv in sorted((e[2], e[1]) for e in box.out_edges) if lo <= x <= hi}
    xs = sorted(got)
    for x, lv in want:
        if got.get(x) == lv:
            run.on_tick += 1
            continue
        i = bisect.bisect_left(xs, x)
        near = [xs[j] for j in (i - 1, i) if 0 <= j < len(xs) and got[xs[j]] == lv]
        run.off_tick.append(((x - c0) // presc, min((n - x for n in near), key=abs) if near else 1 << 30))
    run.extra = len(xs) - run.on_tick


def _compa_latency(box) -> int | None:
    """Worst cycles from a compare match (an output edge) to the entry of TIMER1_COMPA (vector 11)."""
    entries = sorted(c for v, c in box.vectors if v == 11)
    worst = None
    for x, _ in sorted((e[2], e[1]) for e in box.out_edges):
        i = bisect.bisect_left(entries, x)
        if i < len(entries) and entries[i] - x < 20_000:
            worst = max(worst or 0, entries[i] - x)
    return worst
