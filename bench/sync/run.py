"""``synchub bench sync --scenario FILE [--json OUT]``: timestamp error against truth, per stream and method.

Runs in virtual time: every device's samples, trigger edges, probes and arrival times are generated at once
(``synchub.bench.sync.simulate``), recorded as the agent would ship them (chunks of ``chunk_ms`` of host time, cut where the
driver saw a reset, with its ``device_reset`` gaps), and corrected by the code users run: ``StreamClocks`` built from
the recorded clock config, fed by ``synchub.agent.clock.replay`` (the agent's ``LiveCorrector`` live, the two-sided rerun
offline), ``synchub align``'s ``correct_recording`` for the rerun of the whole recording.

Methods, side by side on the same data:

``arrival``         the raw host receive time (what a naive logger records).
``pyxdf``           the LSL way: the arrival-stamped streams written to XDF with ``synchub.agent.formats.xdf`` (with the
                    ClockOffset chunks LSL's inlet would record: outlet and recorder share the host here, so they are
                    LSL-style min-RTT loopback probes near zero), loaded with the real
                    ``pyxdf.load_xdf(..., synchronize_clocks=True, dejitter_timestamps=True)``.
``envelope``        synchub's arrival-only model (lower envelope of arrival - device time).
``probes``          synchub's round-trip probe model (min-RTT filter, midpoint of the one-way bounds).
``triggers``        the clock layer with every piece of evidence (edges, and probes where the device answers them),
                    two-sided, the evaluation samples corrected as one block.
``triggers-align``  the same recording as ``synchub align`` corrects it: every sample, chunk by chunk in recorded
                    order (``correct_recording``).  Equal to ``triggers`` within 1 ns (``checks.streams.*.block_vs_align_ns``).
``triggers-live``   what the agent sends live: ``synchub align --live``, each chunk corrected with the evidence the
                    agent had ``correction_delay_ms`` (a trigger period + 0.5 s) after its last sample arrived.

``bound_us`` is the least-squares bound for each trigger-wired stream: the RMS over the evaluation points of the
posterior standard deviation of the optimal linear smoother (``synchub.agent.clock.kalman.least_squares_bound``: the *true*
edge jitter, counter quantization ``tick**2/12`` and random-walk intensity, on the sync edges the device actually saw,
per clock segment).  Errors are measured against the true time of the instant each sample was stamped.

JSON: ``{"scenario", "results": [{"stream", "method", "rms_us", "median_us", "p99_us", "max_us", "drift_err_ppm",
"within_tol_pct"}], "bound_us": {stream: us}, "checks": {...}}`` (``synchub.bench.sync.report``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from synchub.agent.clock.layer import StreamClocks
from synchub.agent.clock.probes import lsl_offset
from synchub.agent.clock.replay import correct_recording, feed_offline
from synchub.agent.clock.settings import ClockLayerConfig, ClockSettings, StreamClockOptions, default_delay_ns
from synchub.agent.core.evidence import ClockReset, Probe, TriggerEdge
from synchub.agent.core.options import TriggerSettings
from synchub.agent.core.settings import ConfigError
from synchub.agent.core.stream import Chunk
from synchub.agent.core.units import NS
from synchub.agent.formats.xdf import XdfWriter
from synchub.errors import UserError
from synchub.extras import require

from .report import print_report, report
from .scenario import SCENARIO_DIR, Scenario, load_scenario, scenario_reference
from .simulate import GPIO_READ_NS, SimStream, pulse_times, reference_edges

METHODS = ("arrival", "pyxdf", "envelope", "probes", "triggers", "triggers-align", "triggers-live")


class Recording:
    """A scenario as the collector would have recorded it: stream infos, the agent's clock config, the chunks
    (samples as shipped), the evidence and the driver-reported resets."""

    def __init__(self, sc: Scenario):
        self.sc = sc
        pulses = pulse_times(sc)
        self.ref_true, self.ref_stamp, self.ref_width = reference_edges(sc)
        self.streams = [SimStream(sc, i, pulses) for i in range(len(sc.device))]
        self.infos = {s.name: s.info for s in self.streams}
        self.resets = [ClockReset(s.name, int(i)) for s in self.streams for i in s.driver_resets]
        self.chunks = [c for s in self.streams for c in self._chunks(s)]
        self.ref_edges = [TriggerEdge("sync", int(t), "ref", 1, int(w), -1, int(t) + GPIO_READ_NS)
                          for t, w in zip(self.ref_stamp.tolist(), self.ref_width.tolist(), strict=True)]

    def _chunks(self, s: SimStream) -> list[Chunk]:
        """Chunks of ``chunk_ms`` of host time, cut where the driver saw a reset (drivers end a chunk there)."""
        cid = s.host // int(self.sc.chunk_ms * 1e6)
        cuts = set((np.flatnonzero(np.diff(cid)) + 1).tolist()) | set(s.driver_resets) | {0, len(s.host)}
        bounds = sorted(cuts)
        zeros = np.zeros((len(s.host), 1), dtype=np.float32)
        return [Chunk(s.name, a, zeros[a:b], s.device_ns[a:b], s.host[a:b])
                for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]

    def config(self, method: str) -> ClockLayerConfig:
        """The clock config the agent would record (``Agent.clock_config``), every stream on ``method``."""
        t = self.sc.trigger
        trigger = TriggerSettings(name="sync", period_s=0.0 if t.irregular else t.period_s, role="sync",
                                  min_width_us=t.width_ms * 500.0,
                                  edge="rising", backend="sim")
        return ClockLayerConfig(clock=ClockSettings(window_s=self.sc.window_s), triggers=(trigger,),
                                streams={s.name: StreamClockOptions(trigger="sync" if s.spec.trigger else "",
                                                                    method=method) for s in self.streams},
                                correction_delay_ms=default_delay_ns([t.period_s]) / 1e6)

    def evidence(self, kinds: set[str]) -> list:
        ev: list = []
        if "edges" in kinds:
            ev += self.ref_edges
            for s in self.streams:
                ev += s.edges
        if "probes" in kinds:
            for s in self.streams:
                ev += s.probes
        return ev


# ------------------------------------------------------------------------------------------- methods
def _block(rec: Recording, method: str, kinds: set[str], evals) -> dict:
    """The two-sided rerun's feeding, then the evaluation samples of each stream corrected as one block."""
    clocks = StreamClocks(rec.infos, rec.config(method))
    feed_offline(clocks, rec.chunks, rec.evidence(kinds) + rec.resets)
    out: dict = {"_unc": {}, "_segment": {}}
    for s, idx in zip(rec.streams, evals, strict=True):
        c = clocks.correct(Chunk(s.name, 0, np.zeros((len(idx), 1), np.float32), s.device_ns[idx], s.host[idx]),
                           smooth=True)
        out[s.name], out["_unc"][s.name], out["_segment"][s.name] = c.ref_ns, c.unc_ns, c.segment
    out["_state"] = clocks.state()
    out["_segments"] = {s.name: clocks.segments(s.name) for s in rec.streams}
    return out


def _as_align(rec: Recording, evals, smooth: bool) -> dict:
    """The whole recording corrected by ``synchub align`` (``--live``: causally, as the agent did)."""
    evidence = rec.evidence({"edges", "probes"}) + rec.resets
    t0 = time.perf_counter()
    corrected, clocks = correct_recording(rec.infos, rec.config("auto"), evidence, rec.chunks, smooth=smooth)
    cost = time.perf_counter() - t0
    out: dict = {"_unc": {}, "_segment": {}}
    for s, idx in zip(rec.streams, evals, strict=True):
        mine = sorted((c for c in corrected if c.stream == s.name), key=lambda c: c.seq)
        ref = np.concatenate([c.ref_ns for c in mine])
        out[s.name], out["_unc"][s.name] = ref[idx], np.concatenate([c.unc_ns for c in mine])[idx]
        out["_segment"][s.name] = np.concatenate([c.segment for c in mine])[idx]
    out["_state"] = clocks.state()
    n_ev = len(evidence)
    out["_cost"] = {"us_per_item": 1e6 * cost / max(len(rec.chunks) + n_ev, 1), "chunks": len(rec.chunks),
                    "evidence": n_ev}
    return out


def run_pyxdf(rec: Recording, evals, workdir: str) -> dict:
    import pyxdf


    sc = rec.sc
    path = os.path.join(workdir, f"{sc.name}.xdf")
    rng = np.random.default_rng([sc.seed, 4242])
    with XdfWriter(path) as w:
        for s in rec.streams:
            sid = w.add_stream(s.info)
            # LSL's inlet measures outlet-vs-recorder clock offsets every 5 s: 8 probes, keep the min-RTT one.
            # Outlet and recorder share this host's clock, so only loopback asymmetry is left.
            for tc in range(int(2 * NS), int(sc.duration_s * NS), 5 * NS):
                out = rng.uniform(15_000, 100_000, 8)
                back = rng.uniform(15_000, 100_000, 8)
                probes = [Probe(s.name, tc, int(tc + o), int(tc + o + b)) for o, b in zip(out, back, strict=True)]
                mid, off, _ = lsl_offset(probes)
                w.write_clock_offset(sid, mid, off)
            step = 4096
            for a in range(0, len(s.host), step):
                w.write_samples(sid, s.host[a:a + step], np.zeros((min(step, len(s.host) - a), 1), np.float32))
    loaded, _ = pyxdf.load_xdf(path, synchronize_clocks=True, dejitter_timestamps=True)
    by_name = {st["info"]["name"][0]: st for st in loaded}
    out = {}
    for s, idx in zip(rec.streams, evals, strict=True):
        ts = np.asarray(by_name[s.name]["time_stamps"], dtype=np.float64)
        out[s.name] = np.rint(ts[idx] * NS).astype(np.int64)
    return out


def run_scenario(sc: Scenario, methods=METHODS, workdir: str | None = None) -> dict:
    t_start = time.perf_counter()
    rec = Recording(sc)
    rng = np.random.default_rng([sc.seed, 5])
    evals = [np.sort(rng.choice(len(s.true), min(sc.eval_points, len(s.true)), replace=False)) for s in rec.streams]
    results, timings = {}, {"simulate": round(time.perf_counter() - t_start, 2)}
    for m in methods:
        t0 = time.perf_counter()
        if m == "arrival":
            results[m] = {s.name: s.host[idx] for s, idx in zip(rec.streams, evals, strict=True)}
        elif m == "pyxdf":
            with tempfile.TemporaryDirectory() as tmp:
                results[m] = run_pyxdf(rec, evals, workdir or tmp)
        elif m == "envelope":
            results[m] = _block(rec, "arrival", set(), evals)
        elif m == "probes":
            results[m] = _block(rec, "probes", {"probes"}, evals)
        elif m == "triggers":
            results[m] = _block(rec, "auto", {"edges", "probes"}, evals)
        elif m == "triggers-align":
            results[m] = _as_align(rec, evals, smooth=True)
        elif m == "triggers-live":
            results[m] = _as_align(rec, evals, smooth=False)
        else:
            raise ValueError(f"unknown method {m!r}; allowed: {', '.join(METHODS)}")
        timings[m] = round(time.perf_counter() - t0, 2)
    out = report(sc, rec.streams, evals, results, dict(zip(rec.ref_true.tolist(), rec.ref_stamp.tolist(), strict=True)))
    out["checks"]["seconds"] = {**timings, "total": round(time.perf_counter() - t_start, 2)}
    return out


# ------------------------------------------------------------------------------------------- CLI
def add_arguments(p) -> None:
    p.add_argument("--scenario", help="scenario TOML file, or the name of a shipped one (bench/scenarios/NAME.toml)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {', '.join(METHODS)}")
    p.add_argument("--reference", action="store_true", help="print the scenario file schema and exit")
    p.add_argument("--list", action="store_true", help="list the shipped scenarios and exit")


def _resolve(name: str) -> Path:
    p = Path(name)
    if p.exists():
        return p
    shipped = SCENARIO_DIR / f"{name}.toml"
    return shipped if shipped.exists() else p


def run(args) -> int:
    if args.reference:
        print(scenario_reference())
        return 0
    if args.list:
        for f in sorted(SCENARIO_DIR.glob("*.toml")):
            try:  # the folder is shared with other benchmarks' scenario files
                print(f"{f.stem}: {' '.join(load_scenario(f).doc.split())[:100]}")
            except ConfigError:
                continue
        return 0
    if not args.scenario:
        raise UserError("--scenario FILE is required (or --list / --reference)")
    sc = load_scenario(_resolve(args.scenario))
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise UserError(f"unknown method {bad[0]!r}; allowed: {', '.join(METHODS)}")
    if "pyxdf" in methods:
        require("pyxdf", "the pyxdf method (leave it out with --methods)")
    try:
        res = run_scenario(sc, methods)
    except ValueError as exc:  # a scenario the simulator cannot render (e.g. a device with no samples)
        raise UserError(f"scenario {sc.name!r}: {exc}") from None
    print_report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=_json_default))
    return 0


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)
