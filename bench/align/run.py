"""``synchub bench align --scenario FILE [--json OUT]``: alignment accuracy of arrival, classical, neural and hybrid.

What it does, per seed of the scenario:

1. renders one simulated world (``drivers/sim/render.py``) into every modality the pairs need: IMU 200 Hz,
   audio 16 kHz, video 30 fps, image (still frames at 1 fps), telemetry ("metadata") 10 Hz, text (event log lines);
2. gives every stream its own ``DeviceClock``: an offset drawn in +-``offset_max_s`` (1.5 s), a drift in
   +-``drift_max_ppm`` (100 ppm), the link's latency and the device's timestamp jitter from ``[link.<modality>]``.
   Samples are taken on the device's own clock, stamped by it (with jitter) and received by the host later;
3. per pair, the *reference* stream is taken as already on the reference clock (its trigger line put it there:
   its corrected times are the true times plus ``ref_jitter_us`` of noise), and each *target* stream is aligned
   against it in windows of ``window_s`` hopped by ``hop_s`` of target device time, every window independently
   searched over +-2 s around zero (no prior from earlier windows), by every method on the same data:

   * ``arrival``: the target's raw host receive times (what a hub without clock evidence records);
   * ``classical``: onset correlation of hand-made features (``agent/align/onsets.py``), coarse then fine;
   * ``neural``: encoders only: coarse lag from embedding similarity + parabolic vertex (``EncoderRunner``);
   * ``hybrid``: neural coarse + fine onset correlation, cross-checked against the classical wide search,
     bounded by the arrival times (a sample cannot arrive before it was taken: offset <= min(host - device) over
     the window), fused with the trigger edges of targets listed in ``triggered`` in the target's ``ClockModel``.

   classical and neural map a window's events with that window's offset and the drift fitted (Theil-Sen) over the
   windows accepted so far; hybrid maps them with the ClockModel after adding that window's evidence (causal: a
   live agent has the same information one window later), except the events before the target's third offset or
   trigger edge: the model has only the arrival envelope for them, late by a link latency nothing has judged yet
   (one or two offsets cannot tell a late envelope from a wrong offset), so they wait (up to ``hold_s``, 60 s of
   device time) for three and are mapped with them, as the offline pass (``synchub align``) maps them, and
   on while the next window still sharpens that mapping (``bench/align/hold.py``; ``held_pct`` and
   ``held_max_s`` say how many, and the longest wait).

**What counts as an event (accuracy).**  Every onset of a world event (tap, motion, flash, sound, marker) inside
the evaluated span, as the target stream's device clock stamps it, is mapped to the reference clock by each
method; its error is |mapped - true time|.  That is what a user means by "the streams are aligned": an event seen
in the target lands at the right moment on the common timeline.  Each event belongs to the window whose centre is
nearest.  ``within_tol_pct`` is the share of all events mapped within tolerance, where an event a method could not
map (its window abstained, or hybrid had no evidence yet) counts as a miss.  ``median_ms``/``p95_ms`` are over the
mapped events.  Tolerance = max(1 ms, half the coarser stream's sample period; text has no period).
``abstain_pct`` = share of windows where the method said "not aligned".  ``drift_err_ppm`` = |estimated - true|
drift at the end of the session, median over seeds (arrival: slope of a line through host - device).

**Uncertainty.**  ``cover_1sigma_pct``/``cover_2sigma_pct``: share of mapped events within 1 / 2 of their reported
sigma (hybrid: calibrated by the simulator's sigma table).  A world's events share that world's bias, so the
worlds are the samples: ``cover_1sigma_ci95`` is the coverage's 95 % interval bootstrapped over them, and
``pooled_hybrid`` every two-stream pair's events together (with its interval).  Few worlds, wide intervals.

Seeds: use seeds the encoders never saw (``models/simdata.py`` trains on seeds >= 1_000_000 and validates on
>= 9_000_000; the shipped scenarios use 1000+).  Numbers belong in the JSON this writes, not in unit tests.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from synchub.agent.align.calibration import SIM_TABLE, SigmaTable
from synchub.agent.align.markers import rules_from
from synchub.agent.align.tracker import calibrated_settings
from synchub.agent.align.window import load_runners
from synchub.drivers.sim.world import MARKER_RULES, World, WorldSpec
from synchub.errors import UserError

from . import files, onsets, real, replay
from .calibrate import checked, fit_pairs, fit_windows
from .pairs import PairOutcome, pooled_coverage, run_pair, summarize, tolerance_ns
from .scenario import DEFAULT_PAIRS, BenchSpec, load_scenario
from .streams import render_streams


def add_arguments(p) -> None:
    p.add_argument("--scenario", help="scenario TOML (bench/scenarios/align-*.toml); or --real")
    p.add_argument("--json", default="", help="write results here")
    p.add_argument("--seeds", default="", help="override the scenario's seeds: a comma list of integers and inclusive "
                   "ranges, e.g. 1000-1029 or 3000..3059,3100")
    p.add_argument("--quiet", action="store_true", help="no per-pair table")
    real.add_arguments(p)  # the real-signal corpus variant (``--real``)
    replay.add_arguments(p)  # recorded demo sessions, live vs offline (``--replay``)
    files.add_arguments(p)  # synchub align on the corpus's WAV + marker CSV files (``--real-files``)
    onsets.add_arguments(p)  # the onset check on the corpus's sounds mapped right and late (``--onset-check``)


def bench_align(bench: BenchSpec, world_spec: WorldSpec, links: dict, scenario: str, log=print,
                table: SigmaTable | None = None, fit: bool = False) -> dict:
    """Every pair of the scenario on every seed; ``table`` calibrates the hybrid's sigma and weighs its two window
    estimates (default: the shipped simulator table); ``fit``: two passes, the first with no table (the classical
    and neural window sigmas' scales fitted on it), the second with those scales (the hybrid's output table fitted
    on it): the result carries ``sigma_table`` fitted on these seeds."""
    if table is None:
        table = SigmaTable((), {}) if fit or not SIM_TABLE.exists() else checked(SigmaTable.load(SIM_TABLE), log)
    pairs = [(p.name, p.ref, p.targets) for p in bench.pairs] or list(DEFAULT_PAIRS)
    modalities = {m for _, r, ts in pairs for m in (r, *ts)}
    runners = {}
    if "neural" in bench.methods or "hybrid" in bench.methods:
        runners = load_runners(sorted(modalities))
        for m, r in sorted(runners.items()):
            if isinstance(r, str):
                log(f"  encoder {m}: {r}")
    windows: list = []
    if fit:
        per_pair = _bench_pass(bench, world_spec, links, pairs, modalities, runners, table, log)
        samples: dict = {}
        for o in (o for outs in per_pair.values() for o in outs):
            for key, (e, sg) in o.window_by_pair.items():
                samples.setdefault(key, ([], []))[0].extend(e)
                samples[key][1].extend(sg)
        windows = fit_windows(samples)
        table = SigmaTable((), {}, tuple((w["pair"][0], w["pair"][1], w["method"], w["scale"]) for w in windows))
        log("  window scales: " + ", ".join(f"{w['pair'][0]}-{w['pair'][1]} {w['method']} x{w['scale']}"
                                            for w in windows))
    per_pair = _bench_pass(bench, world_spec, links, pairs, modalities, runners, table, log)
    results = []
    for name, ref_m, targets in pairs:
        results.extend(summarize(name, tolerance_ns(ref_m, targets), per_pair[name], bench.methods))
    # every pair's hybrid events together (the three-stream pair repeats two pairs' targets: left out)
    pooled = pooled_coverage({n: per_pair[n] for n, _r, ts in pairs if len(ts) == 1})
    out = {"scenario": scenario, "sigma_table": table.source, "results": results, "pooled_hybrid": pooled}
    if fit:
        samples = {}
        for o in (o for outs in per_pair.values() for o in outs):
            for key, (e, sg) in o.hybrid_by_pair.items():
                samples.setdefault(key, ([], []))[0].extend(e)
                samples[key][1].extend(sg)
        out["sigma_table"] = {**fit_pairs(samples, {"split": f"scenario {scenario}, seeds "
                                                    f"{','.join(str(s) for s in bench.seeds)}", "method": "hybrid"}),
                              "windows": windows}
    return out


def _bench_pass(bench, world_spec, links, pairs, modalities, runners, table: SigmaTable, log) -> dict:
    settings = calibrated_settings(table, True, rules_from(MARKER_RULES))  # the simulated rig's log vocabulary
    per_pair: dict[str, list[PairOutcome]] = {name: [] for name, _, _ in pairs}
    for seed in bench.seeds:
        t0 = time.time()
        world = World(bench.duration_s, seed=int(seed), spec=world_spec)
        streams = render_streams(world, modalities, bench, links, int(seed))
        t1 = time.time()
        emb_cache: dict = {}  # target-stream embeddings on their device clocks, shared by the pairs
        for name, ref_m, targets in pairs:
            rng = np.random.default_rng([int(seed), len(name)])
            per_pair[name].append(run_pair(streams, world, ref_m, targets, bench, runners, settings, rng,
                                           emb_cache, table))
        log(f"  seed {seed}: rendered in {t1 - t0:.1f} s, aligned in {time.time() - t1:.1f} s")
    return per_pair


def parse_seeds(text: str) -> tuple[int, ...]:
    """``--seeds``: integers and inclusive ranges (``A-B`` or ``A..B``), comma separated, in the order given."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        lo, sep, hi = part.replace("..", "-").partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise UserError(f"--seeds: expected integers or ranges like 1000-1029, got {part!r}") from None
        if b < a:
            raise UserError(f"--seeds: range {part!r} runs backwards")
        out.extend(range(a, b + 1))
    return tuple(out)


def run(args) -> int:
    if args.real_files:
        return files.run(args)
    if args.onset_check:
        return onsets.run(args)
    if args.real:
        return real.run(args)
    if args.replay:
        return replay.run(args)
    if not args.scenario:
        raise UserError("which data? --scenario FILE (simulator), --real (real-signal corpus), --real-files "
                        "(synchub align on its files), --onset-check or --replay DIR (recorded demo runs)")
    bench, world_spec, links = load_scenario(args.scenario)
    if args.seeds:
        seeds = parse_seeds(args.seeds)
        if args.fit_sigma and set(seeds) & set(bench.seeds):
            raise UserError("--fit-sigma: fit on seeds other than the scenario's own (those judge it)")
        bench = replace(bench, seeds=seeds)
    elif args.fit_sigma:
        raise UserError("--fit-sigma: give --seeds other than the scenario's own (those judge it)")
    t0 = time.time()
    out = bench_align(bench, world_spec, links, Path(args.scenario).stem, log=lambda s: print(s, file=sys.stderr),
                      fit=bool(args.fit_sigma))
    if not args.quiet:
        print(f"{'pair':22s} {'method':9s} {'median_ms':>10s} {'p95_ms':>9s} {'within%':>8s} {'drift_ppm':>9s} "
              f"{'abstain%':>8s} {'sigma':>7s} {'cov1%':>6s} {'cov2%':>6s}")
        for r in out["results"]:
            def f(v, w=9, p=3):
                return f"{v:{w}.{p}f}" if isinstance(v, (int, float)) else f"{'-':>{w}s}"
            print(f"{r['pair']:22s} {r['method']:9s} {f(r['median_ms'], 10)} {f(r['p95_ms'])} "
                  f"{f(r['within_tol_pct'], 8, 2)} {f(r['drift_err_ppm'])} {f(r['abstain_pct'], 8, 1)} "
                  f"{f(r['sigma_median_ms'], 7, 2)} {f(r['cover_1sigma_pct'], 6, 1)} {f(r['cover_2sigma_pct'], 6, 1)}")
        ci = [f"{r['pair']} {r['cover_1sigma_ci95'][0]}-{r['cover_1sigma_ci95'][1]}" for r in out["results"]
              if r.get("cover_1sigma_ci95")]
        print("hybrid 1-sigma coverage, 95 % interval over worlds: " + (", ".join(ci) or "-"))
        if (pc := out["pooled_hybrid"]):
            print(f"hybrid, every two-stream pair pooled ({pc['events']} events): 1-sigma {pc['cover_1sigma_pct']} % "
                  f"(worlds' 95 % interval {pc['cover_1sigma_ci95']}), 2-sigma {pc['cover_2sigma_pct']} %")
        held = [f"{r['pair']} {r['held_pct']}% ({r['held_max_s']} s)" for r in out["results"] if r.get("held_pct")]
        print("hybrid events held for the judging offsets: " + (", ".join(held) or "none"))
        print(f"({time.time() - t0:.1f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if args.fit_sigma:
        Path(args.fit_sigma).write_text(json.dumps(out["sigma_table"], indent=1) + "\n")
    return 0
