"""What ``synchub bench sync`` feeds the clock layer: every simulated device's samples, trigger edges, probes and
arrival times, generated at once in virtual time from a scenario, as the agent would see them, plus the truth.

Pure (numpy), seeded.  ``SimStream`` is one device; ``reference_edges`` the host's GPIO stamps of the trigger line.

Truth: ``SimStream.true`` is the reference time of the instant the device's clock showed the time it stamped on the
sample (its counter truncates: at 30 Hz on a 1 MHz counter, or on a 32.768 kHz counter, a sample is stamped up to
one tick before it was taken); a perfect clock mapping gives exactly that.  Edges are stamped with the tick they
happened in; the driver's reading is the tick's centre (uniform error of one tick: ``tick**2 / 12``, which the
least-squares bound includes).
"""

from __future__ import annotations

import numpy as np

from synchub.agent.clock.unwrap import Unwrapper
from synchub.agent.core.evidence import Probe, TriggerEdge
from synchub.agent.core.stream import StreamInfo
from synchub.agent.core.units import NS
from synchub.drivers.sim.clocks import DeviceClock

from .scenario import Scenario

GPIO_READ_NS = 50_000  # the host reads a GPIO edge this long after its kernel stamp


def pulse_times(sc: Scenario) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True times and widths (ns) of every pulse on the trigger line, and which are the sync pulses: the others come
    from a second TTL source on the same line (``extra_pulses_per_s``) that the reference and every wired device see
    too."""
    t = sc.trigger
    rng = np.random.default_rng([sc.seed, 98])
    if t.irregular > 0:  # an aperiodic line: intervals spread around the period
        n_max = int(sc.duration_s / (t.period_s * (1.0 - t.irregular))) + 2
        gaps = t.period_s * rng.uniform(1.0 - t.irregular, 1.0 + t.irregular, n_max)
        sync = t.phase_s + np.concatenate([[0.0], np.cumsum(gaps)])
        sync = (sync[sync < sc.duration_s] * NS).astype(np.int64)
    else:
        sync = (np.arange(t.phase_s, sc.duration_s, t.period_s) * NS).astype(np.int64)
    width = int(t.width_ms * 1e6)
    n = rng.poisson(t.extra_pulses_per_s * sc.duration_s)
    extra = np.sort(rng.uniform(0.0, sc.duration_s, n) * NS).astype(np.int64)
    ew = int((t.extra_width_ms or t.width_ms) * 1e6)
    times = np.concatenate([sync, extra])
    widths = np.concatenate([np.full(len(sync), width), np.rint(ew * rng.uniform(0.9, 1.1, n)).astype(np.int64)])
    sync_mask = np.concatenate([np.ones(len(sync), bool), np.zeros(n, bool)])
    order = np.argsort(times, kind="stable")
    return times[order], widths[order], sync_mask[order]


def reference_edges(sc: Scenario) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true times, the host's stamps, widths) of the rising edges on the trigger line."""
    true, widths, _ = pulse_times(sc)
    rng = np.random.default_rng([sc.seed, 99])
    stamp = true + np.rint(rng.normal(0, sc.trigger.ref_jitter_us * 1e3, len(true))).astype(np.int64)
    return true, stamp, widths


def burst_mask(n: int, rate: float, burst: int, rng: np.random.Generator) -> np.ndarray:
    """True for a fraction ``rate`` of ``n`` items, in runs of mean length ``burst`` (1: independent)."""
    if rate <= 0 or n == 0:
        return np.zeros(n, dtype=bool)
    if burst <= 1:
        return rng.random(n) < rate
    out = np.zeros(n, dtype=bool)
    starts = rng.integers(0, n, rng.binomial(n, rate / burst))
    for s, length in zip(starts.tolist(), np.maximum(1, rng.poisson(burst, len(starts))).tolist(), strict=True):
        out[s:s + length] = True
    return out


class SimStream:
    """Everything one simulated device produces, as the agent would see it, plus the truth."""

    def __init__(self, sc: Scenario, idx: int, pulses: tuple[np.ndarray, np.ndarray, np.ndarray]):
        dev = sc.device[idx]
        self.spec = dev
        self.name = dev.name
        c = dev.clock
        self.clock = clk = DeviceClock(c, sc.duration_s, seed=sc.seed * 1000 + idx)
        rng = np.random.default_rng([sc.seed, idx, 7])
        # samples on the device clock
        if dev.rate_hz > 0:
            taken, devns, seg = clk.regular_samples(dev.rate_hz)
        else:
            n = rng.poisson(dev.mean_rate_hz * sc.duration_s)
            taken = np.sort(rng.uniform(0.05, sc.duration_s, n) * NS).astype(np.int64)
            taken = taken[clk.up(taken)]
            seg = clk.segment_of(taken)
            devns = clk.to_device(taken)
        keep = ~clk.drop_mask(len(taken), rng)
        taken, seg, devns = taken[keep], seg[keep], devns[keep]
        if len(taken) == 0:
            raise ValueError(f"device {dev.name!r} produces no samples in {sc.duration_s:g} s")
        self.host = clk.arrivals(taken, rng)
        # the driver's view: raw counter ticks, unwrapped (wraps and resets told apart with host times)
        self.ns_per_tick = NS / c.tick_hz
        self.modulus = 1 << c.counter_bits
        ticks = clk.ticks(devns)
        unw = Unwrapper(c.counter_bits, c.tick_hz)
        u = unw.unwrap(ticks, self.host)
        self.device_ns, self.segment, self.wraps = u.device_ns, seg, unw.wraps
        # sample indices where the driver saw the counter jump (its device_reset gaps), when it reports them
        self.driver_resets = list(u.resets) if dev.report_resets else []
        # truth: the instant the device's counter showed the stamped value
        self.true = clk.to_true(self._tick_start(devns), seg)
        self._ticks = ticks
        self.wrap_true_ns = self._wrap_instants(ticks)
        self.resets_true = len(clk.resets_ns)
        self.info = StreamInfo(dev.name, "other", float(dev.rate_hz), 1)
        self.edges: list[TriggerEdge] = []
        self.edge_dev_true = np.zeros(0, dtype=np.int64)  # exact device times of the sync edges it saw (bound)
        self.edge_seg = np.zeros(0, dtype=np.int32)
        self.edge_true = np.zeros(0, dtype=np.int64)  # true times of the sync edges it saw
        self.edge_report_true = np.zeros(0, dtype=np.int64)
        self.edge_stamp = np.zeros(0, dtype=np.int64)
        if dev.trigger:
            self._make_edges(sc, clk, rng, *pulses)
        self.probes: list[Probe] = []
        if dev.probes and sc.probes.rate_hz > 0:
            self._make_probes(sc, clk, rng)

    def _tick_start(self, devns: np.ndarray) -> np.ndarray:
        if float(self.ns_per_tick).is_integer():
            return np.floor_divide(devns, int(self.ns_per_tick)) * int(self.ns_per_tick)
        return np.rint(np.floor(devns / self.ns_per_tick) * self.ns_per_tick).astype(np.int64)

    def _make_edges(self, sc: Scenario, clk: DeviceClock, rng, pulse_t: np.ndarray, pulse_w: np.ndarray,
                    is_sync: np.ndarray) -> None:
        """Trigger edges the device stamps: missed ones (in bursts) dropped, none while it reboots, glitches
        added (narrow, or as wide as real pulses; anywhere, or near the real edges like a bouncing switch)."""
        dev = self.spec
        seen = ~burst_mask(len(pulse_t), dev.miss_rate, dev.miss_burst, rng) & clk.up(pulse_t)
        te, tw = pulse_t[seen], pulse_w[seen]
        sync = te[is_sync[seen]]
        self.edge_true = sync
        self.edge_dev_true, self.edge_seg = clk.to_device(sync), clk.segment_of(sync)
        d_jit = clk.to_device(te, jitter=True)
        # the device's stamp of each sync edge on its own (continuous) clock: the tick it fell in, read at its centre
        self.edge_stamp = self._tick_start(d_jit[is_sync[seen]]) + int(round(self.ns_per_tick / 2))
        n_sp = rng.poisson(dev.spurious_per_s * sc.duration_s)
        if dev.spurious_near_ms > 0 and len(te):
            ts = te[rng.integers(0, len(te), n_sp)] + np.rint(
                rng.uniform(-dev.spurious_near_ms, dev.spurious_near_ms, n_sp) * 1e6).astype(np.int64)
        else:
            ts = rng.uniform(0, sc.duration_s, n_sp) * NS
        ts = np.sort(ts).astype(np.int64)
        ts = ts[(ts > 0) & clk.up(ts)]
        if dev.spurious_width_ms > 0:
            ws = np.rint(dev.spurious_width_ms * 1e6 * rng.uniform(0.9, 1.1, len(ts))).astype(np.int64)
        else:
            ws = rng.integers(1_000, 3_000_000, len(ts))
        all_t = np.concatenate([te, ts])
        all_d = np.concatenate([d_jit, clk.to_device(ts, jitter=True)])
        widths = np.concatenate([tw, ws])
        order = np.argsort(all_t, kind="stable")
        all_t, all_d, widths = all_t[order], all_d[order], widths[order]
        dd = self._side_device_ns(all_t, all_d)
        rep = clk.arrivals(all_t + widths, rng)  # reported once the pulse ended
        self.edges = [TriggerEdge(dev.name, int(d), "device", 1, int(w), -1, int(h))
                      for d, w, h in zip(dd.tolist(), widths.tolist(), rep.tolist(), strict=True)]
        self.edge_report_true = all_t  # true time of each reported edge (glitches included)

    def _make_probes(self, sc: Scenario, clk: DeviceClock, rng) -> None:
        p = sc.probes
        tp = (np.arange(0.2, sc.duration_s - 0.1, 1.0 / p.rate_hz) * NS).astype(np.int64)
        tp += rng.integers(0, int(NS / p.rate_hz / 10) + 1, len(tp))
        out = rng.uniform(p.out_latency_min_ms, max(p.out_latency_max_ms, p.out_latency_min_ms), len(tp)) * 1e6
        t_dev = tp + np.rint(out).astype(np.int64)
        up = clk.up(t_dev)
        tp, t_dev = tp[up], t_dev[up]
        d_p = self._side_device_ns(t_dev, clk.to_device(t_dev, jitter=True))
        recv = clk.arrivals(t_dev, rng)
        self.probes = [Probe(self.name, int(s), int(d), int(r))
                       for s, d, r in zip(tp.tolist(), d_p.tolist(), recv.tolist(), strict=True)]

    def _side_device_ns(self, t_true: np.ndarray, d_exact: np.ndarray) -> np.ndarray:
        """A side reading (edge, probe reply) as the driver unwraps it: the representative of its raw ticks nearest
        the last sample's unwrapped time in the same segment (``Unwrapper.peek``), plus half a tick: an event is
        stamped with the counter value it happened in, i.e. truncated."""
        if len(t_true) == 0:
            return np.zeros(0, dtype=np.int64)
        ticks = self.clock.ticks(d_exact)
        seg = self.clock.segment_of(t_true)
        i = np.clip(np.searchsorted(self.true, t_true, side="right") - 1, 0, len(self.true) - 1)
        wrong = (self.segment[i] != seg) & (i + 1 < len(self.true))
        i[wrong] += 1
        m = self.modulus
        if m >= 1 << 63:
            d = ticks - self._ticks[i]
        else:
            d = (ticks - self._ticks[i]) % m
            d = np.where(d >= m // 2, d - m, d)
        half = int(self.ns_per_tick // 2)
        if float(self.ns_per_tick).is_integer():
            return self.device_ns[i] + d * int(self.ns_per_tick) + half
        return self.device_ns[i] + np.rint(d * self.ns_per_tick).astype(np.int64) + half

    def _wrap_instants(self, ticks: np.ndarray) -> np.ndarray:
        if self.modulus >= 1 << 63 or len(ticks) < 2:
            return np.zeros(0, dtype=np.int64)
        w = np.flatnonzero((np.diff(ticks) < 0) & (np.diff(self.segment) == 0)) + 1
        return self.true[w]
