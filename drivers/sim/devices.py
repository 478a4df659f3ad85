"""Simulated devices: what each device produces, chunk by chunk, and when its bytes reach the host.  Pure (no
I/O, no threads, no wall clock): the rig (``rig.py``) calls ``render_until`` in real time and writes the packets
to a pty at their arrival times; a benchmark can call it as fast as it likes.

Times: ``true_ns`` is the reference clock (absolute: ``origin_ns`` + world-relative time); ``device_ns`` is the
device's own clock (``DeviceClock``), restarting at a reset (``segment`` counts resets).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from synchub.agent.clock.barcode import encode_barcode
from synchub.agent.core.units import NS
from synchub.drivers.serial import frames as F
from synchub.drivers.serial import lines as L

from . import render as R
from .clocks import DeviceClock
from .settings import SimDevice, SimTrigger
from .world import World


def device_seed(seed: int, name: str, stream: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode()), stream])


class SampleSchedule:
    """Regular sampling at ``rate_hz`` of a device clock, produced chunk by chunk without gaps or repeats.

    Sample ``k`` of a segment is taken at device time ``round(k / rate)``; after a reset the index restarts
    from the reset's device time.  ``counter`` is the running count of samples taken in the segment."""

    def __init__(self, clock: DeviceClock, rate_hz: float, start_rel_ns: int = 0):
        self.clock = clock
        self.period = NS / rate_hz
        self.seg = int(clock.segment_of(np.array([clock.origin_ns + start_rel_ns]))[0])
        d0 = int(clock.to_device(np.array([clock.origin_ns + start_rel_ns]))[0])
        self.k = int(np.ceil(d0 / self.period))
        self.k_start = self.k
        self.done_rel = start_rel_ns

    def until(self, end_rel_ns: int):
        """Samples with reference time before ``end_rel_ns``: (true_ns, device_ns, segment, counter)."""
        c = self.clock
        out = []
        while self.done_rel < end_rel_ns:
            seg_end = int(c.resets_ns[self.seg]) if self.seg < len(c.resets_ns) else None
            lim = end_rel_ns if seg_end is None else min(end_rel_ns, seg_end)
            dev_lim = int(c.to_device(np.array([c.origin_ns + lim - 1]))[0])
            k1 = int(np.floor(dev_lim / self.period))
            if k1 >= self.k:
                ks = np.arange(self.k, k1 + 1, dtype=np.int64)
                dev = np.rint(ks * self.period).astype(np.int64)
                true = c.to_true(dev, self.seg)
                out.append((true, dev, np.full(len(ks), self.seg, np.int32), ks - self.k_start))
                self.k = k1 + 1
            self.done_rel = lim
            if seg_end is not None and lim == seg_end:
                self.seg += 1
                d0 = int(c.to_device(np.array([c.origin_ns + seg_end]))[0])
                self.k = self.k_start = int(np.ceil(d0 / self.period))
        if not out:
            z = np.zeros(0, np.int64)
            return z, z.copy(), np.zeros(0, np.int32), z.copy()
        return tuple(np.concatenate(parts) for parts in zip(*out, strict=True))


@dataclass
class Packet:
    """Bytes one serial device hands to its link at once, and what they carry (for the truth record)."""

    arrival_ns: int
    data: bytes
    kind: str  # "samples" | "edge" | "pong" | "lines"
    true_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per sample carried
    device_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    segment: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    extra: tuple = ()  # edge: (true_ns, level, counter); pong: (token, true_ns, device_ns)


@dataclass
class Period:
    """One capture buffer (ALSA period / V4L2 buffer) delivered to the host at ``delivery_ns``."""

    delivery_ns: int
    data: np.ndarray
    true_ns: np.ndarray
    device_ns: np.ndarray
    segment: np.ndarray
    index: int  # period/frame sequence number on the device (V4L2 ``sequence``), gaps = drops


class _Base:
    def __init__(self, spec: SimDevice, world: World, origin_ns: int, seed: int, duration_s: float):
        self.spec = spec
        self.name = spec.name
        self.world = world
        self.origin_ns = int(origin_ns)
        ss = device_seed(seed, spec.name, 0).spawn(4)
        self.clock = DeviceClock(spec.clock, duration_s, int(ss[0].generate_state(1)[0]), self.origin_ns)
        self.noise_rng = np.random.default_rng(ss[1])
        self.link_rng = np.random.default_rng(ss[2])
        self.misc_rng = np.random.default_rng(ss[3])
        self.usb_phase_ns = float(self.link_rng.uniform(0, max(spec.clock.latency_max_ms, 0.001) * 1e6))
        self.params = None
        if spec.modality in R.PARAMS:
            cls = R.PARAMS[spec.modality]
            self.params = cls() if spec.params_seed < 0 else cls.random(np.random.default_rng(spec.params_seed))
        self.dropped = 0
        self.chunk_ns = int(spec.chunk_ms * 1e6)
        self.done_rel = 0
        self._last_arrival = 0

    def _arrive(self, true_ns: np.ndarray) -> np.ndarray:
        arr = self.clock.arrivals(true_ns, self.link_rng, phase_ns=self.usb_phase_ns)
        arr = np.maximum(arr, self._last_arrival)
        if len(arr):
            self._last_arrival = int(arr[-1])
        return arr


class SerialDevice(_Base):
    """A device on a serial link speaking imu-bin, tlm-nmea or log-text."""

    def __init__(self, spec: SimDevice, world: World, origin_ns: int, seed: int, duration_s: float,
                 triggers: dict[str, SimTrigger] | None = None):
        super().__init__(spec, world, origin_ns, seed, duration_s)
        self.fmt = spec.wire_format
        self.schedule = SampleSchedule(self.clock, spec.rate_hz) if spec.rate_hz > 0 else None
        self.triggers = [t for name, t in (triggers or {}).items() if name in spec.triggers]
        self.edge_counter = 0
        self.pings = 0

    def _ticks(self, dev: np.ndarray) -> np.ndarray:
        return self.clock.ticks(dev)

    def render_until(self, end_rel_ns: int) -> list[Packet]:
        """Everything the device produces with reference time in ``[done, end_rel_ns)``, as packets in order."""
        lo, hi = self.done_rel, int(end_rel_ns)
        if hi <= lo:
            return []
        self.done_rel = hi
        items: list[tuple[int, int, Packet]] = []  # (true_ns, order, packet without arrival)
        if self.schedule is not None:
            true, dev, seg, counter = self.schedule.until(hi)
            if len(true):
                keep = ~self.clock.drop_mask(len(true), self.misc_rng) if self.clock.spec.drop_rate > 0 else None
                data = R.render(self.world, self.spec.modality, true - self.origin_ns, self.params, self.noise_rng)
                ticks = self._ticks(dev)
                if keep is not None:
                    self.dropped += int((~keep).sum())
                    true, dev, seg, counter, data, ticks = (a[keep] for a in (true, dev, seg, counter, data, ticks))
                if self.fmt == "imu-bin":
                    raw = F.imu_to_raw(data).tolist()
                    enc = [F.encode_imu_sample(int(t), int(c), r) for t, c, r in zip(ticks, counter, raw, strict=True)]
                else:
                    enc = [L.encode_tlm(int(t), int(c), v) for t, c, v in zip(ticks, counter, data.tolist(), strict=True)]
                for i, b in enumerate(enc):
                    items.append((int(true[i]), 0, Packet(0, b, "samples", true[i : i + 1], dev[i : i + 1], seg[i : i + 1])))
        if self.fmt == "log-text":
            for t_rel, text in R.render_log(self.world, lo, hi):
                true = np.array([t_rel + self.origin_ns], np.int64)
                dev = self.clock.to_device(true, jitter=True)
                seg = self.clock.segment_of(true)
                level = "WARN" if text.startswith("impact") else "INFO"
                b = L.encode_log(int(self._ticks(dev)[0]), level, text)
                items.append((int(true[0]), 0, Packet(0, b, "samples", true, dev, seg)))
        for trig in self.triggers:
            for t_abs, pol in trigger_edges(trig, lo, hi, self.origin_ns):
                level = 1 if pol > 0 else 0
                # the device's pin interrupt stamps the edge a few us late, on its own clock
                true = np.array([t_abs + int(self.misc_rng.uniform(2_000, 6_000))], np.int64)
                dev = self.clock.to_device(true, jitter=True)
                self.edge_counter += 1
                b = F.encode_edge(int(self._ticks(dev)[0]), self.edge_counter, level)
                edge = Packet(0, b, "edge", extra=(t_abs, level, self.edge_counter, int(dev[0])))
                items.append((int(true[0]), 1, edge))
        if not items:
            return []
        items.sort(key=lambda x: (x[0], x[1]))
        arrivals = self._arrive(np.array([x[0] for x in items], np.int64))
        return _group([p for _, _, p in items], arrivals)

    def pong(self, token: int, true_ns: int) -> Packet:
        """The answer to a ping whose bytes reached the device at reference time ``true_ns``."""
        self.pings += 1
        t = np.array([int(true_ns)], np.int64)
        dev = self.clock.to_device(t, jitter=True)
        tick = int(self._ticks(dev)[0])
        if self.fmt == "imu-bin":
            b = F.encode_pong(token, tick)
        elif self.fmt == "tlm-nmea":
            b = L.encode_tlm_pong(token, tick)
        else:
            b = L.encode_log_pong(token, tick)
        return Packet(int(self._arrive(t)[0]), b, "pong", extra=(token, int(true_ns), int(dev[0])))

    def command_decoder(self):
        return F.ImuDecoder() if self.fmt == "imu-bin" else L.TextPingDecoder()


def _group(packets: list[Packet], arrivals: np.ndarray) -> list[Packet]:
    """Consecutive sample packets arriving at the same time become one write."""
    out: list[Packet] = []
    for p, a in zip(packets, arrivals.tolist(), strict=True):
        p.arrival_ns = int(a)
        last = out[-1] if out else None
        if last is not None and last.kind == "samples" and p.kind == "samples" and last.arrival_ns == p.arrival_ns:
            last.data += p.data
            last.true_ns = np.concatenate([last.true_ns, p.true_ns])
            last.device_ns = np.concatenate([last.device_ns, p.device_ns])
            last.segment = np.concatenate([last.segment, p.segment])
        else:
            out.append(p)
    return out


class CaptureDevice(_Base):
    """An audio or video device read in periods/buffers (ALSA/V4L2-like)."""

    def __init__(self, spec: SimDevice, world: World, origin_ns: int, seed: int, duration_s: float):
        super().__init__(spec, world, origin_ns, seed, duration_s)
        self.schedule = SampleSchedule(self.clock, spec.rate_hz)
        if spec.period_samples:
            self.period_samples = spec.period_samples
        else:
            self.period_samples = max(1, int(round(spec.rate_hz * 0.020))) if spec.modality == "audio" else 1
        self._pending: list[np.ndarray] | None = None
        self.index = 0

    def render_until(self, end_rel_ns: int) -> list[Period]:
        hi = int(end_rel_ns)
        if hi <= self.done_rel:
            return []
        self.done_rel = hi
        true, dev, seg, _ = self.schedule.until(hi)
        if len(true) == 0:
            return []
        data = R.render(self.world, self.spec.modality, true - self.origin_ns, self.params, self.noise_rng)
        if self.spec.modality == "audio":
            data = R.audio_to_int16(data)
        parts = [true, dev, seg, data]
        if self._pending is not None:
            parts = [np.concatenate([a, b]) for a, b in zip(self._pending, parts, strict=True)]
        true, dev, seg, data = parts
        p = self.period_samples
        # a period never straddles a reset: cut at segment changes too
        out_idx = []
        i = 0
        while i + p <= len(true):
            if seg[i] != seg[i + p - 1]:
                j = i + int(np.argmax(seg[i : i + p] != seg[i]))
                self.dropped += j - i  # the device restarts its buffer after a reset: the partial period is lost
                i = j
                continue
            out_idx.append(i)
            i += p
        self._pending = [a[i:] for a in (true, dev, seg, data)]
        if not out_idx:
            return []
        ends = np.array([true[j + p - 1] for j in out_idx], np.int64)
        delivery = self._arrive(ends)
        drop = self.clock.drop_mask(len(out_idx), self.misc_rng) if self.clock.spec.drop_rate > 0 else None
        out = []
        for n, j in enumerate(out_idx):
            idx = self.index
            self.index += 1
            if drop is not None and drop[n]:
                self.dropped += p
                continue
            s = slice(j, j + p)
            out.append(Period(int(delivery[n]), data[s], true[s], dev[s], seg[s], idx))
        return out


def trigger_edges(trig: SimTrigger, lo_rel: int, hi_rel: int, origin_ns: int) -> list[tuple[int, int]]:
    """(true_ns, polarity +1/-1) of a trigger train's edges whose time lies in ``[lo_rel, hi_rel)``, in order; none
    between ``stop_s`` and ``resume_s``."""
    out = _train_edges(trig, lo_rel, hi_rel, origin_ns)
    if trig.stop_s <= 0:
        return out
    off = (origin_ns + int(round(trig.stop_s * NS)),
           origin_ns + int(round(trig.resume_s * NS)) if trig.resume_s > 0 else None)
    return [(t, p) for t, p in out if t < off[0] or (off[1] is not None and t >= off[1])]


def _train_edges(trig: SimTrigger, lo_rel: int, hi_rel: int, origin_ns: int) -> list[tuple[int, int]]:
    """Every edge of the train in ``[lo_rel, hi_rel)``.

    ``mode = "pulse"``: a pulse of ``width_s`` every ``period_s``.  ``mode = "barcode"``: every ``period_s`` a
    32-bit barcode (``synchub.agent.clock.barcode``: 2T start, T gap, 32 bits LSB first, T = ``bit_s``) whose value is
    the barcode's index since the world's start."""
    params = R.TriggerParams(trig.period_s, trig.width_s, trig.phase_s)
    out = []
    if trig.mode == "barcode":
        bit = int(round(trig.bit_s * NS))
        period, phase = int(round(trig.period_s * NS)), int(round(trig.phase_s * NS))
        starts, _ = R.render_trigger(lo_rel - 35 * bit - 1, hi_rel, params)
        for t0 in starts.tolist():
            k = (t0 - phase) // period
            for t, level in encode_barcode(k & 0xFFFFFFFF, t0, bit):
                if lo_rel <= t < hi_rel:
                    out.append((t + origin_ns, 1 if level else -1))
        return out
    rises, widths = R.render_trigger(lo_rel - int(trig.width_s * NS) - 1, hi_rel, params)
    for r, w in zip(rises.tolist(), widths.tolist(), strict=True):
        for t, pol in ((r, 1), (r + w, -1)):
            if lo_rel <= t < hi_rel:
                out.append((t + origin_ns, pol))
    out.sort()
    return out
