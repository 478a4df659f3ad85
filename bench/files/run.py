"""``synchub bench align-files [--json OUT] [--quick]``: ``synchub align``'s engine on recordings it did not make.

1. **XDF clock sync vs pyxdf** on LabRecorder's example files (``/work/shared/data/xdf-example-files`` or
   ``--examples DIR``): per stream the median and largest difference from ``pyxdf.load_xdf(...,
   synchronize_clocks=True)`` (goal: 0.1 ms / 0.5 ms), and the clock resets found.
2. **XDF clock sync vs truth** (``simulate.sim_xdf``): a sender whose crystal wanders, rebooted half way, 3 % late
   round trips; and a plain one (linear drift, no late round trip).  RMS error of synchub and of pyxdf per stream
   and pooled over streams and seeds (the eeg stream against when its samples were taken, both dejitter it; the
   marker stream against where the true clock mapping puts its stamps).
3. **Sync edges in data channels** (``simulate.sim_sync_pair``): a CSV at 500 Hz with a TTL or photodiode channel and
   a 16 kHz WAV with a click per pulse, on clocks 100 ppm apart; random or periodic pulses.  The WAV's clock mapped
   onto the CSV's against the truth: RMS and largest error, against one sample period of the coarser stream and
   against the least-squares bound: the expected one (each side's quantization, a sample period squared / 12) and
   the one on this run's own edges (the optimal linear estimator given the very pairs used).
4. **One hour, eight streams** (``simulate.write_long``: XDF with eeg 500 Hz x 16, emg 1 kHz x 4, accel, gaze, markers;
   a CSV with a TTL and an event column; an 8 kHz WAV with clicks), aligned to an XDF output by a separate process
   (``synchub align``): wall time and peak RSS (VmHWM of the child), and every
   stream's clock mapping against the truth.  Goal: <= 120 s, <= 500 MB.
5. **A synchub session** (``session.session_rerun``: the ``lab-10min`` scenario as a collector writes it): ``synchub
   align SESSION.mcap -o COPY`` streamed against the in-memory rerun, each in its own process: the same times
   (exactly), wall time and peak RSS.
6. **Marker logs and a microphone** from the real-signal corpus (flite speech, recorded sound effects; needs the
   corpus's Debian packages): share of logs the aligner ties, and their median error.
7. **Neuropixels rig** (``ephys``): a SpikeGLX probe and an Open Ephys board tied to an NI-DAQ by the sync lines
   their files declare (TPrime's job), against the simulated clocks' truth: every edge paired, largest error within
   one NI sample period.
8. **Cameras' own video files** (``camera``, the video extra): a camera with a microphone (MP4) tied to the rig's
   microphone, and a silent camera (MKV) filming a lamp tied to the lamp's log 20-40 s off, against simulated clocks.

Numbers from this machine go to ``bench/results/align-files.json``; ``--quick`` is the short version the tests run.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from synchub.agent.align.files.engine import AlignError, FileAlignment, InputSpec
from synchub.agent.clock.kalman import least_squares_bound
from synchub.agent.formats.file_output import json_default
from synchub.agent.formats.readers.base import InputOptions
from synchub.argtypes import positive
from synchub.extras import require
from synchub.models import corpus
from synchub.models.corpus import missing

from .camera import camera_files
from .ephys import ephys_sync
from .session import ALIGN, child_rss, session_rerun
from .simulate import sim_sync_pair, sim_xdf, write_long

NS = 1_000_000_000
EXAMPLES = "/work/shared/data/xdf-example-files"
CLICK = InputOptions(sync_kind="click")


def add_arguments(p) -> None:
    p.add_argument("--json", help="write the results here (e.g. bench/results/align-files.json)")
    p.add_argument("--quick", action="store_true", help="short runs (what the test suite runs)")
    p.add_argument("--examples", default=EXAMPLES, help="folder of XDF example files")
    p.add_argument("--hours", type=positive, default=1.0, help="length of the long recording")
    p.add_argument("--corpus", type=int, default=3, help="corpus recordings per kind (0: none)")
    p.add_argument("--session-s", type=positive, default=600.0, help="length of the synchub session rerun (s)")


def _check(out: list, name: str, value, goal: str, ok: bool) -> None:
    out.append({"name": name, "value": value, "goal": goal, "pass": bool(ok)})


def xdf_examples(folder: str, checks: list) -> list[dict]:
    pyxdf = require("pyxdf")
    rows = []
    for path in sorted(glob.glob(os.path.join(folder, "*.xdf"))):
        fa = FileAlignment([InputSpec([path])])
        fa.gather()
        inp = fa.inputs[0]
        ours: dict[str, list] = {}
        for tr in inp.tracks.values():
            tr.restart()
        for p in fa._read(inp, evidence=False):
            ours.setdefault(p.stream, []).append(inp.tracks[p.stream].file_times(p)[1])
        streams, _ = pyxdf.load_xdf(path)
        for s in streams:
            name = s["info"]["name"][0]
            if not len(s["time_stamps"]):
                continue
            d = np.abs(np.concatenate(ours[name]) / NS - s["time_stamps"]) * 1e6
            tr = inp.tracks[name]
            rows.append({"file": os.path.basename(path), "stream": name, "samples": len(d),
                         "median_us": float(np.median(d)), "max_us": float(d.max()),
                         "segments": len(tr.xdf.segments) if tr.xdf else 0})
    for r in rows:
        _check(checks, f"xdf example {r['file']} {r['stream']}: median / max vs pyxdf (us)",
               [round(r["median_us"], 2), round(r["max_us"], 1)], "<= 100 / 500", r["median_us"] <= 100
               and r["max_us"] <= 500)
    resets = [r for r in rows if r["file"] == "clock_resets.xdf"]
    if resets:
        _check(checks, "clock_resets.xdf: resets found", [r["segments"] for r in resets], "2 segments per stream",
               all(r["segments"] == 2 for r in resets))
    return rows


def xdf_simulated(quick: bool, checks: list) -> list[dict]:
    pyxdf = require("pyxdf")
    scenarios = {"wander-reset-late-round-trips": dict(duration_s=1200.0, rate_hz=200.0, reset_at_s=600.0,
                                                       random_walk_ppm=1.0, outlier_rate=0.03),
                 "linear-drift-only": dict(duration_s=600.0, rate_hz=200.0, reset_at_s=300.0, random_walk_ppm=0.0,
                                           outlier_rate=0.0)}
    seeds = [11] if quick else [11, 12, 13, 14, 15, 16]
    if quick:  # fewer samples (the clock's evidence is the same)
        scenarios = {k: {**v, "rate_hz": 50.0} for k, v in scenarios.items()}
    out = []
    with tempfile.TemporaryDirectory() as d:
        for name, kw in scenarios.items():
            if quick and name != "wander-reset-late-round-trips":
                continue
            sq = {"ours": [], "pyxdf": []}
            runs = []
            for seed in seeds:
                truth = sim_xdf(f"{d}/s.xdf", seed=seed, **kw)
                FileAlignment([InputSpec([f"{d}/s.xdf"])]).write(f"{d}/o.xdf")
                o, _ = pyxdf.load_xdf(f"{d}/o.xdf", synchronize_clocks=False, dejitter_timestamps=False)
                p, _ = pyxdf.load_xdf(f"{d}/s.xdf")
                row = {"seed": seed}
                for stream, key in (("eeg", "eeg"), ("markers", "markers_mapped")):
                    t = truth[key] / NS
                    for who, got in (("ours", o), ("pyxdf", p)):
                        ts = next(s for s in got if s["info"]["name"][0] == stream)["time_stamps"]
                        ms = float(np.mean((ts - t) ** 2))
                        sq[who].append(ms)
                        row[f"{stream}_{who}_rms_us"] = np.sqrt(ms) * 1e6
                runs.append(row)
            pooled = {k: float(np.sqrt(np.mean(v)) * 1e6) for k, v in sq.items()}
            out.append({"scenario": name, **kw, "runs": runs, "pooled_rms_us": pooled})
            _check(checks, f"simulated XDF {name}: pooled RMS synchub / pyxdf (us)",
                   [round(pooled["ours"], 2), round(pooled["pyxdf"], 2)], "synchub <= pyxdf (the wandering one)",
                   pooled["ours"] <= pooled["pyxdf"] or name == "linear-drift-only")
    return out


def sync_edges(quick: bool, checks: list) -> list[dict]:
    cases = [("ttl", False), ("ttl", True), ("photodiode", False)]
    seeds = [4] if quick else [4, 5, 6, 7]
    out = []
    with tempfile.TemporaryDirectory() as d:
        for kind, periodic in cases:
            for seed in seeds:
                sp = sim_sync_pair(d, duration_s=120.0 if quick else 600.0, kind=kind, periodic=periodic, seed=seed)
                fa = FileAlignment([InputSpec([str(sp.table)]), InputSpec([str(sp.wav)], CLICK)])
                fa.gather()
                link = fa.inputs[1].link
                span = (120.0 if quick else 600.0) - 2.0
                pts = np.arange(1 * NS, int(span * NS), 50_000_000, dtype=np.int64)
                g, unc = link.map(pts, np.zeros(len(pts), dtype=np.int64))
                err = (g - sp.wav_to_table(pts)).astype(float)
                pairs = link.pairs[0]
                ta, tb = NS / sp.table_rate, NS / sp.audio_rate
                mse, _ = least_squares_bound(pairs.src, ta**2 / 12 + tb**2 / 12, 0.0, pts)
                bias = ((pairs.ref - pairs.src) - (sp.wav_to_table(pairs.src) - pairs.src)).astype(float)
                mse_r, _ = least_squares_bound(pairs.src, 1.0, 0.0, pts, edge_bias=bias)
                rms = float(np.sqrt(np.mean(err**2)))
                # a photodiode crosses its half level tau ln 2 after the light (simulate: tau = 0.3 ms): a constant
                # delay of the sensor, which the edges carry and no alignment can see
                delay = 3e5 * np.log(2) if kind == "photodiode" else 0.0
                out.append({"kind": kind, "periodic": periodic, "seed": seed, "pairs": pairs.n, "how": pairs.how,
                            "sensor_delay_us": delay / 1e3,
                            "rms_without_sensor_delay_us": float(np.sqrt(np.mean((err - delay) ** 2))) / 1e3,
                            "rms_us": rms / 1e3, "max_us": float(np.max(np.abs(err))) / 1e3,
                            "coarser_period_us": ta / 1e3, "bound_us": float(np.sqrt(mse.mean())) / 1e3,
                            "bound_on_these_edges_us": float(np.sqrt(mse_r.mean())) / 1e3,
                            "median_unc_us": float(np.median(unc)) / 1e3})
    for kind, periodic in cases:
        rows = [r for r in out if r["kind"] == kind and r["periodic"] == periodic]
        tag = f"{kind} {'periodic' if periodic else 'random'}"
        worst = max(r["max_us"] / r["coarser_period_us"] for r in rows)
        _check(checks, f"sync edges {tag}: largest error / coarser sample period", round(worst, 3), "<= 1",
               worst <= 1)
        pooled = np.sqrt(np.mean([r["rms_us"] ** 2 for r in rows]))
        bound = np.sqrt(np.mean([r["bound_us"] ** 2 for r in rows]))
        real = np.sqrt(np.mean([r["bound_on_these_edges_us"] ** 2 for r in rows]))
        _check(checks, f"sync edges {tag}: RMS / LS bound (expected; on these edges)",
               [round(float(pooled / bound), 3), round(float(pooled / real), 3)], "<= 1.2 (on these edges)",
               pooled <= 1.2 * real)
    return out


def long_run(hours: float, checks: list) -> dict:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.monotonic()
        sim = write_long(d, duration_s=hours * 3600.0)
        gen_s = time.monotonic() - t0
        manifest = Path(d) / "in.toml"
        manifest.write_text(f'[[input]]\npath = "{sim["xdf"]}"\n[[input]]\npath = "{sim["rig"]}"\n'
                            f'[[input]]\npath = "{sim["mic"]}"\nsync_kind = "click"\n')
        argv = ["--manifest", str(manifest), "--out", f"{d}/out.xdf", "--json", f"{d}/report.json"]
        wall, peak_mb, _ = child_rss(ALIGN, *argv)
        size = os.path.getsize(f"{d}/out.xdf")
        report = json.loads(Path(f"{d}/report.json").read_text())
        errors = _long_errors(sim, d)
    res = {"duration_s": hours * 3600.0, "streams": len(report["streams"]), "generate_s": gen_s, "wall_s": wall,
           "peak_rss_mb": peak_mb, "peak_rss_note": "VmHWM of the aligning process", "output_bytes": size,
           "methods": {s["name"]: s["method"] for s in report["streams"]}, "errors_us": errors}
    _check(checks, f"{hours:g} h, {res['streams']} streams: wall time (s)", round(wall, 1), "<= 120 per hour",
           wall <= 120 * max(hours, 0.1))
    _check(checks, f"{hours:g} h: peak RSS (MB)", round(res["peak_rss_mb"], 1), "<= 500", res["peak_rss_mb"] <= 500)
    return res


def _long_errors(sim: dict, folder: str) -> dict:
    """Each stream's clock mapping against the truth, on a grid of true times (the reference is the recorder's
    clock, which is the truth's): the XDF streams' offsets, the CSV's and the WAV's links."""
    fa = FileAlignment([InputSpec([str(sim["xdf"])]), InputSpec([str(sim["rig"])]),
                        InputSpec([str(sim["mic"])], CLICK)])
    logging.disable(logging.WARNING)
    try:
        fa.gather()
    finally:
        logging.disable(logging.NOTSET)
    clocks = sim["clocks"]
    dur = clocks["eeg"].duration_s - 5.0
    true = (np.arange(2.0, dur - 2.0, 1.0) * NS).astype(np.int64)
    out = {}
    for name in ("eeg", "emg", "accel", "gaze"):
        tr = fa.inputs[0].tracks[name]
        d = clocks[name].to_device(true)
        tr.xdf.restart()
        g, _, _ = tr.xdf.map(d)
        out[name] = _rms_max(g - true)
    for k, name in ((1, "rig"), (2, "mic")):
        d = clocks[name].to_device(true)
        g, _ = fa.inputs[k].link.map(d, np.zeros(len(d), dtype=np.int64))
        out[name] = _rms_max(g - true)
    return out


def _rms_max(e: np.ndarray) -> dict:
    e = e.astype(float) / 1e3
    return {"rms": float(np.sqrt(np.mean(e**2))), "max": float(np.max(np.abs(e)))}


def corpus_logs(n: int, checks: list) -> list[dict]:
    if n <= 0:
        return []
    sf = require("soundfile")
    out = []
    with tempfile.TemporaryDirectory() as d:
        for kind in ("speech", "events"):
            for spec in corpus.plan("heldout", n, kind, 60.0):
                why = [m for m in (missing(v) for v in (*spec.voices, *spec.babble_voices, *spec.sounds)) if m]
                if why:
                    out.append({"recording": spec.name, "skipped": "; ".join(why)})
                    continue
                rec = corpus.render(spec, cache=corpus.ClipCache(corpus.default_cache_dir()))
                a, m = rec.tracks["audio"], rec.tracks["text"]
                sf.write(f"{d}/mic.wav", np.asarray(a.data, np.float32), int(a.rate_hz), subtype="FLOAT")
                with open(f"{d}/log.csv", "w") as f:
                    f.write("time,event\n")
                    f.writelines(f"{t // NS}.{t % NS:09d},{e}\n" for t, e in zip(m.device_ns.tolist(), m.data,
                                                                                strict=True))
                row = {"recording": spec.name, "kind": kind, "background": list(spec.background),
                       "snr_db": spec.snr_db}
                try:
                    fa = FileAlignment([InputSpec([f"{d}/mic.wav"]), InputSpec([f"{d}/log.csv"])])
                    fa.gather()
                    g, _ = fa.inputs[1].link.map(m.device_ns, np.zeros(len(m.device_ns), dtype=np.int64))
                    err = np.abs(g - (rec.markers["log_ns"] - a.true_ns[0])) / 1e6
                    row.update(tied=True, median_ms=float(np.median(err)), p95_ms=float(np.percentile(err, 95)))
                except AlignError as exc:
                    row.update(tied=False, why=str(exc).split(": ", 1)[-1][:200])
                out.append(row)
    for kind in ("speech", "events"):
        rows = [r for r in out if r.get("kind") == kind]
        if rows:
            tied = [r for r in rows if r["tied"]]
            _check(checks, f"corpus {kind} + marker log: tied by the aligner, median error (ms)",
                   [f"{len(tied)}/{len(rows)}", round(float(np.median([r["median_ms"] for r in tied])), 1)
                    if tied else None], "reported (the aligner's accuracy)", True)
    return out


def session_part(seconds: float, checks: list) -> dict:
    r = session_rerun(seconds)
    tag = f"synchub session {seconds / 60:g} min"
    _check(checks, f"{tag}: streamed rerun = in-memory rerun (every ref_ns, unc_ns)", r["same_times"], "same",
           r["same_times"])
    s, m = r["streamed"], r["in_memory"]
    _check(checks, f"{tag}: peak RSS streamed / in memory (MB)", [round(s["peak_rss_mb"], 1),
           round(m["peak_rss_mb"], 1)], "streamed <= 500 and below in memory",
           s["peak_rss_mb"] <= 500 and (s["peak_rss_mb"] < m["peak_rss_mb"] or seconds < 120))
    _check(checks, f"{tag}: wall streamed / in memory (s)", [round(s["wall_s"], 1), round(m["wall_s"], 1)],
           "reported", True)
    return r


def run(args) -> int:
    checks: list = []
    res: dict = {"machine": "2 shared x86 cores (other jobs ran beside it)", "quick": bool(args.quick)}
    t0 = time.monotonic()
    res["xdf_examples"] = xdf_examples(args.examples, checks)
    res["xdf_simulated"] = xdf_simulated(args.quick, checks)
    res["sync_edges"] = sync_edges(args.quick, checks)
    res["long"] = long_run(0.02 if args.quick else args.hours, checks)
    res["session"] = session_part(10.0 if args.quick else args.session_s, checks)
    res["corpus"] = corpus_logs(0 if args.quick else args.corpus, checks)
    res["ephys_sync"] = ephys_sync(args.quick, checks, _check)
    res["camera"] = camera_files(args.quick, checks, _check)
    res["checks"] = checks
    res["bench_s"] = time.monotonic() - t0
    for c in checks:
        print(f"[{'PASS' if c['pass'] else 'FAIL'}] {c['name']}: {c['value']} (goal {c['goal']})")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=json_default))
    return 0 if all(c["pass"] for c in checks) else 1

