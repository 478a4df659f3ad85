"""Recordings synchub did not make, simulated with their truth: XDF with ClockOffsets, CSV/TSV with a TTL or
photodiode channel, WAV with a click train, each on its own drifting clock (``drivers.sim.clocks.DeviceClock``).

* ``sim_xdf``: a LabRecorder-like XDF: a regular stream and a marker stream stamped on a sender's clock (offset,
  drift, thermal random walk, optionally a reset: the sender rebooted), stamps with push jitter, ClockOffset chunks
  every ``period_s`` as LSL measures them (noise, and a few late round trips: outliers), in recorder-clock order.
  The recorder's clock is the truth's.
* ``sim_sync_pair``: a table (``.csv``) sampled on clock A with a sync channel (``ttl``: a 0/1 level;
  ``photodiode``: the same pulses through a 2 ms first-order response) and a ``.wav`` on clock B with a click per
  pulse; pulses periodic (1 Hz) or at random intervals (0.5-1.5 s, as IBL/TPrime-style random trains).
* ``write_long``: the one-hour, eight-stream recording of the ``align-files`` benchmark (XDF, CSV, WAV), written a
  block at a time.

Truth comes back as arrays/clocks so tests and the benchmark compute errors and the least-squares bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synchub.agent.core.stream import StreamInfo
from synchub.agent.formats.xdf import XdfWriter
from synchub.drivers.sim.clocks import ClockSpec, DeviceClock

NS = 1_000_000_000


def sim_xdf(path, duration_s: float = 600.0, seed: int = 1, rate_hz: float = 250.0, drift_ppm: float = 25.0,
            random_walk_ppm: float = 0.3, reset_at_s: float | None = None, offset_noise_us: float = 40.0,
            outlier_rate: float = 0.03, stamp_jitter_us: float = 300.0, period_s: float = 5.0) -> dict:
    """Write the XDF; returns ``{"eeg": true ns of each sample, "markers": ..., "markers_mapped": the true clock
    mapping of each marker's (jittered) stamp, "clock": DeviceClock}``."""
    rng = np.random.default_rng(seed)
    spec = ClockSpec(offset_s=3000.0, drift_ppm=drift_ppm, random_walk_ppm=random_walk_ppm,
                     resets_at_s=(reset_at_s,) if reset_at_s else (), reset_to_s=(150.0,) if reset_at_s else (),
                     reset_downtime_s=5.0 if reset_at_s else 0.0)
    clock = DeviceClock(spec, duration_s, seed)
    true_s, dev_s, _ = clock.regular_samples(rate_hz)
    stamps = dev_s + np.rint(rng.normal(0, stamp_jitter_us * 1e3, len(dev_s))).astype(np.int64)
    data = rng.normal(0, 10, (len(dev_s), 4)).astype(np.float32)
    true_m = np.sort(rng.uniform(1, duration_s - 1, int(duration_s / 3)) * NS).astype(np.int64)
    true_m = true_m[clock.up(true_m)]
    dev_m = clock.to_device(true_m) + np.rint(rng.normal(0, 100e3, len(true_m))).astype(np.int64)
    labels = [f"event {i}" for i in range(len(true_m))]
    tc = (np.arange(period_s / 2, duration_s, period_s) * NS).astype(np.int64)
    tc = tc[clock.up(tc)]
    dc = clock.to_device(tc)

    def measured(n):
        v = (tc - dc) + np.rint(rng.normal(0, offset_noise_us * 1e3, n)).astype(np.int64)
        late = rng.random(n) < outlier_rate
        return v + np.where(late, np.rint(rng.uniform(0.5e6, 3e6, n)).astype(np.int64), 0)

    eeg = StreamInfo("eeg", "other", rate_hz, 4, "float32", channel_labels=("c1", "c2", "c3", "c4"))
    mk = StreamInfo("markers", "marker", 0.0, 1, "string")
    with XdfWriter(path) as w:
        a, b = w.add_stream(eeg), w.add_stream(mk)
        offs = [(int(t), s, int(d), int(v)) for s, vals in ((a, measured(len(tc))), (b, measured(len(tc))))
                for t, d, v in zip(tc, dc, vals, strict=True)]
        events: list = [(t, 1, ("off", (sid, d, v))) for t, sid, d, v in offs]
        step = int(0.5 * NS)
        for k in range(0, int(duration_s * NS) + step, step):
            sel = (true_s >= k) & (true_s < k + step)
            if sel.any():
                events.append((k + step, 0, ("eeg", sel)))
            selm = (true_m >= k) & (true_m < k + step)
            if selm.any():
                events.append((k + step, 0, ("mk", selm)))
        events.sort(key=lambda e: (e[0], e[1]))
        for _, _, (kind, what) in events:
            if kind == "eeg":
                w.write_samples(a, stamps[what], data[what])
            elif kind == "mk":
                w.write_samples(b, dev_m[what], [labels[i] for i in np.flatnonzero(what)])
            else:
                sid, d, v = what
                w.write_clock_offset(sid, d, v)
    # the markers' stamps carry their own jitter: the clock mapping's truth is where each stamp maps
    return {"eeg": true_s, "markers": true_m, "clock": clock, "eeg_device": dev_s,
            "markers_mapped": clock.to_true(dev_m, clock.segment_of(true_m))}


@dataclass
class SyncPair:
    table: Path
    wav: Path
    clock_a: DeviceClock  # the table's clock
    clock_b: DeviceClock  # the WAV's clock (device time 0 = its first sample)
    pulses_ns: np.ndarray  # true times of the pulses
    table_rate: float
    audio_rate: int

    def wav_to_table(self, wav_ns: np.ndarray) -> np.ndarray:
        """The truth: a WAV time on the table's clock."""
        return self.clock_a.to_device(self.clock_b.to_true(wav_ns, 0))


def pulse_train(duration_s: float, seed: int, periodic: bool) -> np.ndarray:
    rng = np.random.default_rng([seed, 7])
    if periodic:
        return (np.arange(0.5 + rng.uniform(0, 0.1), duration_s - 1, 1.0) * NS).astype(np.int64)
    return (np.cumsum(rng.uniform(0.5, 1.5, int(duration_s))) * NS).astype(np.int64)[:int(duration_s) - 2]


def ttl_level(true_ns: np.ndarray, pulses: np.ndarray, width_ns: int) -> np.ndarray:
    k = np.searchsorted(pulses, true_ns, side="right") - 1
    on = (k >= 0) & (true_ns - pulses[np.maximum(k, 0)] < width_ns)
    return on.astype(np.float64)


def photodiode_level(true_ns: np.ndarray, pulses: np.ndarray, width_ns: int, tau_ns: float = 3e5) -> np.ndarray:
    k = np.searchsorted(pulses, true_ns, side="right") - 1
    since = (true_ns - pulses[np.maximum(k, 0)]).astype(np.float64)
    rise = 1 - np.exp(-np.clip(since, 0, None) / tau_ns)
    top = 1 - np.exp(-width_ns / tau_ns)
    fall = top * np.exp(-np.clip(since - width_ns, 0, None) / tau_ns)
    return np.where(k < 0, 0.0, np.where(since < width_ns, rise, fall))


def click_signal(k0: int, n: int, rate: int, click_pos: np.ndarray, tau_s: float = 0.0005,
                 amp: float = 0.5) -> np.ndarray:
    """Samples ``k0 .. k0+n-1`` of a click train: a one-sided exponential pulse starting at each fractional sample
    position in ``click_pos``."""
    out = np.zeros(n)
    tau = tau_s * rate
    span = int(12 * tau) + 2
    for x in click_pos[(click_pos >= k0 - span) & (click_pos < k0 + n)].tolist():
        a = max(int(np.ceil(x)), k0)
        b = min(int(np.ceil(x)) + span, k0 + n)
        k = np.arange(a, b)
        out[a - k0:b - k0] += amp * np.exp(-(k - x) / tau)
    return out


def sim_sync_pair(folder, duration_s: float = 300.0, seed: int = 3, kind: str = "ttl", periodic: bool = False,
                  table_rate: float = 500.0, audio_rate: int = 16000, drift_a: float = 40.0,
                  drift_b: float = -60.0, offset_a_s: float = 12.5) -> SyncPair:
    import soundfile as sf

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    pulses = pulse_train(duration_s, seed, periodic)
    width = 50_000_000
    ca = DeviceClock(ClockSpec(offset_s=offset_a_s, drift_ppm=drift_a), duration_s + 5, seed + 1)
    cb = DeviceClock(ClockSpec(offset_s=0.0, drift_ppm=drift_b), duration_s + 5, seed + 2)
    true_a, dev_a, _ = ca.regular_samples(table_rate, 0.0, duration_s)
    level = ttl_level(true_a, pulses, width) if kind == "ttl" else photodiode_level(true_a, pulses, width)
    level = level + rng.normal(0, 0.01, len(level))
    emg = rng.normal(0, 1, len(level))
    table = folder / f"rig_{kind}.csv"
    with open(table, "w") as f:
        f.write(f"time,emg,{kind}\n")
        for t, e, v in zip(dev_a.tolist(), emg.tolist(), level.tolist(), strict=True):
            f.write(f"{t // NS}.{t % NS:09d},{e:.4f},{v:.4f}\n")
    n = int(duration_s * audio_rate)
    pos = cb.to_device(pulses) * audio_rate / NS  # fractional sample positions of the clicks
    wav = folder / "mic.wav"
    with sf.SoundFile(wav, "w", samplerate=audio_rate, channels=1, subtype="FLOAT") as f:
        for k0 in range(0, n, 1 << 16):
            m = min(1 << 16, n - k0)
            x = click_signal(k0, m, audio_rate, pos) + rng.normal(0, 0.001, m)
            f.write(x.astype(np.float32))
    return SyncPair(table, wav, ca, cb, pulses, table_rate, audio_rate)


def write_long(folder, duration_s: float = 3600.0, seed: int = 5) -> dict:
    """The benchmark's long recording: ``rec.xdf`` (eeg 500 Hz x 16, emg 1 kHz x 4, accel 100 Hz x 3, gaze 120 Hz x
    2, markers; a TTL channel in eeg), ``rig.csv`` (60 Hz with a TTL column and an event column: two streams),
    ``mic.wav`` (8 kHz, clicks).  Eight streams.  Written a block at a time; returns the paths and the truth's clocks."""
    import soundfile as sf

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    pulses = pulse_train(duration_s, seed, periodic=False)
    width = 50_000_000
    clocks = {name: DeviceClock(ClockSpec(offset_s=off, drift_ppm=dr, random_walk_ppm=0.2), duration_s + 5, seed + i)
              for i, (name, off, dr) in enumerate([("eeg", 1000.0, 20.0), ("emg", 2000.0, -35.0),
                                                   ("accel", 500.0, 50.0), ("rig", 7.0, 80.0), ("mic", 0.0, -45.0),
                                                   ("gaze", 300.0, -12.0)])}
    specs = {"eeg": (500.0, 16), "emg": (1000.0, 4), "accel": (100.0, 3), "gaze": (120.0, 2)}
    infos = {k: StreamInfo(k, "other", r, c, "float32",
                           channel_labels=tuple(["ttl"] + [f"c{i}" for i in range(1, c)]) if k == "eeg" else ())
             for k, (r, c) in specs.items()}
    xdf = folder / "rec.xdf"
    block = 10.0
    with XdfWriter(xdf) as w:
        sids = {k: w.add_stream(i) for k, i in infos.items()}
        mk = w.add_stream(StreamInfo("markers", "marker", 0.0, 1, "string"))
        for b0 in np.arange(0.0, duration_s, block):
            b1 = min(b0 + block, duration_s)
            for k, (rate, ch) in specs.items():
                true, dev, _ = clocks[k].regular_samples(rate, b0, b1)
                x = rng.normal(0, 1, (len(dev), ch)).astype(np.float32)
                if k == "eeg":
                    x[:, 0] = ttl_level(true, pulses, width)
                stamps = dev + np.rint(rng.normal(0, 2e5, len(dev))).astype(np.int64)
                w.write_samples(sids[k], stamps, x)
                tc = int((b0 + block / 2) * NS)
                dc = int(clocks[k].to_device(np.array([tc]))[0])
                w.write_clock_offset(sids[k], dc, tc - dc + int(rng.normal(0, 30e3)))
            tm = np.sort(rng.uniform(b0, b1, 3) * NS).astype(np.int64)
            w.write_samples(mk, tm, [f"trial {int(t // NS)}" for t in tm])
    rig = folder / "rig.csv"
    with open(rig, "w") as f:
        f.write("time,ttl,event\n")
        for b0 in np.arange(0.0, duration_s, block):
            true, dev, _ = clocks["rig"].regular_samples(60.0, b0, min(b0 + block, duration_s))
            lv = ttl_level(true, pulses, width)
            ev = np.where(rng.random(len(dev)) < 0.01, "lick", "")
            f.writelines(f"{t // NS}.{t % NS:09d},{v:.0f},{e}\n" for t, v, e in zip(dev.tolist(), lv.tolist(),
                                                                                     ev.tolist(), strict=True))
    mic = folder / "mic.wav"
    rate = 8000
    pos = clocks["mic"].to_device(pulses) * rate / NS
    n = int(duration_s * rate)
    with sf.SoundFile(mic, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        for k0 in range(0, n, 1 << 18):
            m = min(1 << 18, n - k0)
            f.write((click_signal(k0, m, rate, pos) + rng.normal(0, 0.001, m)).astype(np.float32))
    return {"xdf": xdf, "rig": rig, "mic": mic, "clocks": clocks, "pulses": pulses}
