"""Simulated device clocks: offset, drift with a thermal random walk, resets, counter wrap, timestamp jitter,
transport latency and dropped samples.  Pure and vectorized: the ground truth for every benchmark.

Times: ``true_ns`` is the reference clock (what a perfect clock model would output), int64 ns.  ``device_ns`` is
the device's own clock in ns at its nominal tick rate, restarting at each reset.  ``ticks`` is the raw counter as the
device sends it (``device_ns`` at ``tick_hz``, modulo ``2**counter_bits``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synchub.agent.core.settings import setting
from synchub.agent.core.units import NS


@dataclass(frozen=True)
class ClockSpec:
    """One device's clock and link.  Also the ``[device.clock]`` table of a bench scenario file."""

    offset_s: float = setting(0.0, doc="device time minus reference time at t=0, seconds")
    drift_ppm: float = setting(0.0, min=-10_000.0, max=10_000.0, doc="initial rate error, ppm (device runs fast if > 0)")
    random_walk_ppm: float = setting(
        0.0, min=0.0, doc="thermal drift random walk: ppm per sqrt(hour) (0.1-2 typical for a crystal near a heater)"
    )
    jitter_us: float = setting(0.0, min=0.0, doc="1-sigma timestamp jitter of the device's own stamps, us")
    latency_min_ms: float = setting(0.5, min=0.0, doc="transport latency lower bound, ms")
    latency_max_ms: float = setting(2.0, min=0.0, doc="transport latency upper bound, ms")
    latency_kind: str = setting(
        "uniform",
        choices=("uniform", "usb-buffer", "exponential", "bimodal"),
        doc="uniform: i.i.d. in [min, max]; usb-buffer: bytes wait for the next latency-timer tick (period max) "
        "after min; exponential: min + Exp(mean=(max-min)/3), clipped at max; bimodal: uniform in [min, max], "
        "but a fraction slow_fraction of the transfers take slow_latency_ms (+ the same spread)",
    )
    slow_latency_ms: float = setting(30.0, min=0.0, doc="bimodal latency: the slow transfers' latency, ms")
    slow_fraction: float = setting(0.1, min=0.0, max=1.0, doc="bimodal latency: fraction of slow transfers")
    drop_rate: float = setting(0.0, min=0.0, max=0.5, doc="fraction of samples dropped before reaching the host")
    drop_burst: int = setting(1, min=1, doc="dropped samples come in bursts of this mean length")
    resets_at_s: tuple[float, ...] = setting((), doc="reference times (s) at which the device clock resets to 0")
    reset_offset_s: float = setting(0.0, doc="device time right after a reset (a reboot restarts the counter)")
    reset_to_s: tuple[float, ...] = setting(
        (), doc="device time right after each reset, one per resets_at_s (overrides reset_offset_s)")
    reset_jump_s: tuple[float, ...] = setting(
        (), doc="per reset: the device clock jumps by this much from where it was (> 0 forward, e.g. a saved RTC "
        "restored at reboot; < 0 backward), one per resets_at_s (overrides reset_to_s and reset_offset_s)")
    reset_downtime_s: float = setting(0.0, min=0.0, doc="after each reset the device is silent this long (a reboot)")
    counter_bits: int = setting(64, min=8, max=64, doc="width of the raw tick counter (16/32 wrap)")
    tick_hz: float = setting(1_000_000.0, min=1.0, doc="raw counter rate")

    def __post_init__(self) -> None:
        for name in ("reset_to_s", "reset_jump_s"):
            got = len(getattr(self, name))
            if got and got != len(self.resets_at_s):
                raise ValueError(f"{name} has {got} values, resets_at_s {len(self.resets_at_s)}: one per reset")


class DeviceClock:
    """The true behaviour of one simulated device clock over ``[0, duration_s]`` of reference time.

    ``origin_ns`` is the reference time of t=0 (the demo uses the host's monotonic clock at start).
    """

    GRID_S = 1.0

    def __init__(self, spec: ClockSpec, duration_s: float, seed: int, origin_ns: int = 0):
        self.spec = spec
        self.origin_ns = int(origin_ns)
        self.duration_s = float(duration_s)
        rng = np.random.default_rng(seed)
        self._rng = rng
        n = int(np.ceil(duration_s / self.GRID_S)) + 3
        t = np.arange(n) * self.GRID_S - self.GRID_S  # grid from -1 s so interpolation covers t slightly < 0
        step_sigma = spec.random_walk_ppm * np.sqrt(self.GRID_S / 3600.0)
        steps = rng.normal(0.0, step_sigma, n) if step_sigma > 0 else np.zeros(n)
        steps[:2] = 0.0
        drift = spec.drift_ppm + np.cumsum(steps)  # ppm at each grid point
        # phase(t) = integral of drift: device time gained over reference time, in ns (trapezoid on the grid)
        inc = 0.5 * (drift[1:] + drift[:-1]) * 1e-6 * self.GRID_S * NS
        phase = np.concatenate([[0.0], np.cumsum(inc)])
        phase -= np.interp(0.0, t, phase)
        self._t_grid = t
        self._drift_grid = drift
        self._phase_grid = phase
        order = sorted((r, i) for i, r in enumerate(spec.resets_at_s) if 0 < r < duration_s)
        self.resets_ns = np.array([int(r * NS) for r, _ in order], dtype=np.int64)
        # device time right after each reset (segment k >= 1 starts at dev0[k])
        dev0 = [int(spec.offset_s * NS)]
        for k, (_, i) in enumerate(order):
            if spec.reset_jump_s:  # the clock keeps its value and jumps by this much (no restart from zero)
                before = dev0[k] + (self.resets_ns[k] - self._start(k)) + int(round(
                    float(self._phase(np.array([self.resets_ns[k]]))[0] - self._phase(np.array([self._start(k)]))[0])))
                dev0.append(before + int(round(spec.reset_jump_s[i] * NS)))
            elif spec.reset_to_s:
                dev0.append(int(round(spec.reset_to_s[i] * NS)))
            else:
                dev0.append(int(spec.reset_offset_s * NS))
        self._dev0 = np.array(dev0, dtype=np.int64)
        self.downtime_ns = int(round(spec.reset_downtime_s * NS))

    def _start(self, k: int) -> int:
        return 0 if k == 0 else int(self.resets_ns[k - 1])

    # ---- true (reference) -> device
    def _phase(self, rel_ns: np.ndarray) -> np.ndarray:
        return np.interp(rel_ns / NS, self._t_grid, self._phase_grid)

    def drift_ppm_at(self, true_ns) -> np.ndarray:
        rel = (np.asarray(true_ns, dtype=np.int64) - self.origin_ns) / NS
        return np.interp(rel, self._t_grid, self._drift_grid)

    def segment_of(self, true_ns) -> np.ndarray:
        rel = np.asarray(true_ns, dtype=np.int64) - self.origin_ns
        return np.searchsorted(self.resets_ns, rel, side="right").astype(np.int32)

    def _segment_base(self, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(reference start rel ns, device time at start ns) of each segment index."""
        starts = np.concatenate([[0], self.resets_ns]).astype(np.int64)
        return starts[seg], self._dev0[seg]

    def up(self, true_ns) -> np.ndarray:
        """False where the device is rebooting (``reset_downtime_s`` after a reset): it takes, stamps and sends
        nothing then."""
        rel = np.asarray(true_ns, dtype=np.int64) - self.origin_ns
        if not self.downtime_ns or not len(self.resets_ns):
            return np.ones(rel.shape, dtype=bool)
        k = np.searchsorted(self.resets_ns, rel, side="right") - 1
        since = rel - self.resets_ns[np.maximum(k, 0)]
        return (k < 0) | (since >= self.downtime_ns)

    def to_device(self, true_ns, jitter: bool = False) -> np.ndarray:
        """Device time (ns) of reference instants ``true_ns``; with ``jitter`` the device's stamping noise."""
        true_ns = np.asarray(true_ns, dtype=np.int64)
        rel = true_ns - self.origin_ns
        seg = self.segment_of(true_ns)
        start, dev0 = self._segment_base(seg)
        phase = self._phase(rel) - self._phase(start)
        dev = dev0 + (rel - start) + np.rint(phase).astype(np.int64)
        if jitter and self.spec.jitter_us > 0:
            dev = dev + np.rint(self._rng.normal(0.0, self.spec.jitter_us * 1e3, len(dev))).astype(np.int64)
        return dev

    def to_true(self, device_ns, segment) -> np.ndarray:
        """Reference time of device instants ``device_ns`` in clock segment ``segment`` (inverse of to_device)."""
        device_ns = np.asarray(device_ns, dtype=np.int64)
        seg = np.broadcast_to(np.asarray(segment, dtype=np.int32), device_ns.shape)
        start, dev0 = self._segment_base(seg)
        ph0 = self._phase(start)
        rel = start + (device_ns - dev0)
        for _ in range(3):  # fixed point: phase changes by ~1e-4 of the step, converges to < 1 ns
            rel = start + (device_ns - dev0) - np.rint(self._phase(rel) - ph0).astype(np.int64)
        return rel + self.origin_ns

    def regular_samples(self, rate_hz: float, start_s: float = 0.0, end_s: float | None = None):
        """Samples taken at a regular rate of the *device* clock.

        Returns ``(true_ns, device_ns, segment)``; after a reset the sampling restarts on the new segment.
        """
        end_s = self.duration_s if end_s is None else end_s
        period = NS / rate_hz
        out_true, out_dev, out_seg = [], [], []
        bounds = [int(start_s * NS)] + [int(r) for r in self.resets_ns if start_s * NS < r < end_s * NS]
        bounds.append(int(end_s * NS))
        for a, b in zip(bounds[:-1], bounds[1:], strict=False):
            if a in self.resets_ns:
                a = min(a + self.downtime_ns, b)  # rebooting: the first sample after the downtime
            if a >= b:
                continue
            a_abs, b_abs = a + self.origin_ns, b + self.origin_ns
            seg = int(self.segment_of(np.array([a_abs]))[0])
            d_a = int(self.to_device(np.array([a_abs]))[0])
            d_b = int(self.to_device(np.array([b_abs - 1]))[0])
            k0 = int(np.ceil(d_a / period))
            k1 = int(np.floor(d_b / period))
            if k1 < k0:
                continue
            dev = np.rint(np.arange(k0, k1 + 1) * period).astype(np.int64)
            out_dev.append(dev)
            out_true.append(self.to_true(dev, seg))
            out_seg.append(np.full(len(dev), seg, dtype=np.int32))
        if not out_dev:
            z = np.zeros(0, dtype=np.int64)
            return z, z.copy(), np.zeros(0, dtype=np.int32)
        return np.concatenate(out_true), np.concatenate(out_dev), np.concatenate(out_seg)

    def ticks(self, device_ns) -> np.ndarray:
        """The raw counter the device sends: device time at ``tick_hz``, wrapped to ``counter_bits``."""
        device_ns = np.asarray(device_ns, dtype=np.int64)
        ns_per_tick = NS / self.spec.tick_hz
        if float(ns_per_tick).is_integer():
            t = np.floor_divide(device_ns, int(ns_per_tick))
        else:
            t = np.floor(device_ns / ns_per_tick).astype(np.int64)
        if self.spec.counter_bits < 64:
            t = np.bitwise_and(t, (1 << self.spec.counter_bits) - 1)
        return t

    # ---- link to the host
    def arrivals(self, true_ns, rng: np.random.Generator | None = None, phase_ns: float | None = None) -> np.ndarray:
        """Host receive time of data produced at ``true_ns`` (monotone, as bytes on one link arrive in order).

        ``phase_ns`` fixes the usb-buffer latency timer's phase (a device rendered chunk by chunk passes the same
        phase for every chunk); by default it is drawn from ``rng``."""
        rng = rng or self._rng
        true_ns = np.asarray(true_ns, dtype=np.int64)
        lo, hi = self.spec.latency_min_ms * 1e6, max(self.spec.latency_max_ms, self.spec.latency_min_ms) * 1e6
        kind = self.spec.latency_kind
        if kind == "uniform":
            lat = rng.uniform(lo, hi, len(true_ns)) if hi > lo else np.full(len(true_ns), lo)
            arr = true_ns + np.rint(lat).astype(np.int64)
        elif kind == "bimodal":  # mostly fast, a fraction of the transfers stuck behind something slow
            lat = rng.uniform(lo, hi, len(true_ns)) if hi > lo else np.full(len(true_ns), lo)
            slow = rng.random(len(true_ns)) < self.spec.slow_fraction
            lat[slow] += self.spec.slow_latency_ms * 1e6 - lo
            arr = true_ns + np.rint(lat).astype(np.int64)
        elif kind == "exponential":
            lat = lo + np.minimum(rng.exponential(max(hi - lo, 1.0) / 3.0, len(true_ns)), hi - lo)
            arr = true_ns + np.rint(lat).astype(np.int64)
        else:  # usb-buffer: a latency timer of period `hi` flushes the buffer; phase random per device
            period = max(hi, 1.0)
            phase = rng.uniform(0, period) if phase_ns is None else float(phase_ns) % period
            ready = true_ns + int(lo)
            arr = (np.ceil((ready - phase) / period) * period + phase).astype(np.int64)
            arr += np.rint(rng.uniform(0, 0.05 * period, len(arr))).astype(np.int64)  # USB frame scheduling
        return np.maximum.accumulate(arr)

    def drop_mask(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """True where a sample is dropped before it reaches the host (bursty when drop_burst > 1)."""
        rng = rng or self._rng
        keep = np.ones(n, dtype=bool)
        if self.spec.drop_rate <= 0 or n == 0:
            return ~keep
        burst = self.spec.drop_burst
        n_bursts = rng.binomial(n, self.spec.drop_rate / burst)
        starts = rng.integers(0, n, n_bursts)
        lengths = np.maximum(1, rng.poisson(burst, n_bursts))
        for s, length in zip(starts, lengths, strict=False):
            keep[s : s + length] = False
        keep[0] = True  # the first sample always arrives (it anchors the stream)
        return ~keep
