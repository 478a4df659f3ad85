"""``bench align-files``, part 7: the field's acquisition systems tied as TPrime ties them.  A Neuropixels probe
(SpikeGLX ``.ap.bin``, 30 kHz, sync on bit 6 of its SY0 word, other status bits toggling), an NI-DAQ (SpikeGLX
``.nidq.bin``, 25 kHz, sync on digital line 0: the reference) and an Open Ephys acquisition board (binary format,
30 kHz, sync on TTL line 3 among a lick line's events, named: ``--sync TTL --sync-bit 2``) see SpikeGLX's default
sync source (1 Hz, half high), paced by the NI-DAQ's clock as SpikeGLX's own pulser is, on their own crystal clocks
(drift and a slow random walk), started a fraction of a second apart, as files from different machines are.
``synchub align`` maps every sample of the probe and the board onto the NI-DAQ's clock; the error is against the
simulated clocks' truth, per input, in sample periods of the coarser stream (the NI-DAQ's 40 us: the pulses sit at
one phase of its grid, a bias of up to half a sample that no fit averages away), and the share within the
uncertainty ``synchub align`` reports."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from synchub.agent.align.files.engine import FileAlignment, InputSpec
from synchub.agent.formats.readers.base import InputOptions
from synchub.drivers.sim.clocks import ClockSpec, DeviceClock

from . import ephys_files as ef

NS = 1_000_000_000
NI_HZ, PROBE_HZ, OE_HZ = 25000.0, 30000.0, 30000.0


def _levels(clock: DeviceClock, edges_true: np.ndarray, start_dev_ns: float, n: int, rate: float) -> np.ndarray:
    """0/1 per sample of a device sampling at ``rate`` from its device time ``start_dev_ns``: high for 0.5 s from each
    edge, as that device's clock sees it."""
    dev = clock.to_device(edges_true)
    return ef.pulses(n, rate, (dev - start_dev_ns) / NS)


def write_rig(folder: Path, duration_s: float, seed: int) -> dict:
    """The three recordings and the truth (the probe's and the board's clocks)."""
    rng = np.random.default_rng(seed)
    edges = ((0.5 + rng.uniform(0, 0.1) + np.arange(duration_s - 2.0)) * NS).astype(np.int64)
    ni = DeviceClock(ClockSpec(offset_s=0.0, drift_ppm=0.0), duration_s + 5, seed)
    probe = DeviceClock(ClockSpec(offset_s=float(rng.uniform(0.1, 0.4)), drift_ppm=float(rng.uniform(-30, 30)),
                                  random_walk_ppm=0.5), duration_s + 5, seed + 1)
    board = DeviceClock(ClockSpec(offset_s=float(rng.uniform(-0.4, -0.1)), drift_ppm=float(rng.uniform(-30, 30)),
                                  random_walk_ppm=0.5), duration_s + 5, seed + 2)
    n_ni = int(duration_s * NI_HZ)
    ni_sync = _levels(ni, edges, 0, n_ni, NI_HZ)
    ef.write_nidq(folder / "ni", np.column_stack([rng.integers(-100, 100, (n_ni, 1)), ni_sync]).astype(np.int16),
                  NI_HZ, sync_line=0)
    # the probe starts 0.2 s into the NI recording; its sample counter (firstSample) had run before
    first = int(round(int(probe.to_device(np.array([int(0.2 * NS)]))[0]) * PROBE_HZ / NS))
    n_p = int((duration_s - 0.5) * PROBE_HZ)
    sy = _levels(probe, edges, first * NS / PROBE_HZ, n_p, PROBE_HZ)  # sample i at (firstSample + i) / rate
    word = (sy << 6) | rng.integers(0, 2, n_p)  # bit 0: another status bit of the SY word, toggling
    ef.write_probe(folder / "probe", np.column_stack([rng.integers(-500, 500, (n_p, 2)), word]).astype(np.int16),
                   PROBE_HZ, first_sample=first)
    sn0 = int(round(int(board.to_device(np.array([int(0.35 * NS)]))[0]) * OE_HZ / NS))
    n_b = int((duration_s - 0.5) * OE_HZ)
    lvl = _levels(board, edges, sn0 * NS / OE_HZ, n_b, OE_HZ)  # sample number k at k / rate
    ev = [(int(k) + sn0, 3 if up else -3) for k, up in zip(*_changes(lvl), strict=True)]
    licks = np.sort(rng.integers(0, n_b, 2 * int(duration_s / 5)))  # a lick line: other events on the same word
    ev += [(int(k) + sn0, 1 if i % 2 == 0 else -1) for i, k in enumerate(licks)]
    oebin = ef.write_openephys(folder / "oe", rng.integers(-300, 300, (n_b, 2)).astype(np.int16), OE_HZ,
                               first_sample=sn0, events=sorted(ev))
    return {"ni": folder / "ni" / "run_g0_t0.nidq.bin", "probe": folder / "probe" / "run_g0_t0.imec0.ap.bin",
            "oebin": oebin, "clocks": {"probe": (probe, first, PROBE_HZ), "board": (board, sn0, OE_HZ)},
            "edges": len(edges)}


def _changes(level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.diff(np.concatenate([[0], level.astype(np.int64)]))
    k = np.nonzero(d)[0]
    return k, d[k] > 0


def ephys_sync(quick: bool, checks: list, check) -> list[dict]:
    duration = 60.0 if quick else 600.0
    out = []
    for seed in ([11] if quick else [11, 12, 13]):
        with tempfile.TemporaryDirectory() as d:
            rig = write_rig(Path(d), duration, seed)
            fa = FileAlignment([InputSpec([str(rig["ni"])]), InputSpec([str(rig["probe"])]),
                                InputSpec([str(rig["oebin"])], InputOptions(sync="TTL", sync_bit=2))])
            fa.gather()
            for i, name in ((1, "probe"), (2, "board")):
                link = fa.inputs[i].link
                clock, first, rate = rig["clocks"][name]
                pts = np.arange(int(first / rate * NS) + NS, int((first / rate + duration - 2.0) * NS), 20_000_000,
                                dtype=np.int64)
                g, unc = link.map(pts, np.zeros(len(pts), dtype=np.int64))
                err = (g - clock.to_true(pts, 0)).astype(float)
                pairs = link.pairs.get(0)
                out.append({"input": name, "seed": seed, "method": link.method, "pairs": pairs.n if pairs else 0,
                            "edges": rig["edges"], "rms_us": float(np.sqrt(np.mean(err ** 2))) / 1e3,
                            "max_us": float(np.max(np.abs(err))) / 1e3, "median_unc_us": float(np.median(unc)) / 1e3,
                            "within_2sigma_pct": 100.0 * float(np.mean(np.abs(err) <= 2 * unc)),
                            "coarser_period_us": 1e6 / NI_HZ})
    for name in ("probe", "board"):
        rows = [r for r in out if r["input"] == name]
        worst = max(r["max_us"] / r["coarser_period_us"] for r in rows)
        tied = all(r["method"] == "edges" and r["pairs"] >= r["edges"] - 2 for r in rows)
        cover = min(r["within_2sigma_pct"] for r in rows)
        check(checks, f"{name}: share within its reported 2-sigma (the lowest of the seeds, %)", round(cover, 1),
              ">= 90", cover >= 90)
        check(checks, f"{'SpikeGLX probe' if name == 'probe' else 'Open Ephys board'} -> NI-DAQ by their declared "
                      "sync lines: every edge paired; largest error / NI sample period", [tied, round(worst, 3)],
              "all paired; <= 1", tied and worst <= 1)
    return out
