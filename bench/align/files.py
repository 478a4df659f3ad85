"""``synchub bench align --real-files``: ``synchub align`` on the real-signal corpus as a new user runs it: a
microphone's WAV and a rig's marker log (CSV, on its own drifting clock) of each held-out recording, tied together
by the file engine (``agent/align/files``: the aligner link, two-sided, no host receive times).  Per recording and
per kind (speech: utterance markers; events: sound-effect markers), the error of every marker line of a sound
mapped onto the WAV's clock against the sound's start (what the line means: ``real.target_events``), its drift
error (the slope of those errors over the recording), and the share within the 1-/2-sigma ``synchub align``
reports.  A refused log (``AlignError``) counts its markers as not mapped.

``--split calibration --fit-sigma FILE`` runs the calibration split with the file engine's mapped uncertainty as
its clock model reports it and fits the table that calibrates it (``agent/align/sigma_calibration_files.json``:
``calibration.FILES_TABLE``), never on the held-out split.

``--mic SPEC``: the WAV as a real microphone delivers it (a DC offset, mains hum, a gain too low, 16-bit samples,
another rate, clipping, a room's reverberation, a lossy file: ``mic.py``), the same recordings otherwise.

``bench align --real`` measures the aligners on the same recordings with a hub's receive times (``live``) and a
causal clock model without them (``file``); this is the file engine itself, end to end, through the files.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from synchub.agent.align.calibration import FILES_TABLE
from synchub.agent.align.files.engine import AlignError, FileAlignment, InputSpec
from synchub.agent.core.units import NS
from synchub.errors import UserError

from .calibrate import fit_pairs
from .mic import AS_RENDERED, Mic, parse
from .recordings import cache_of, planned, rendered

GOAL = {"median_abs_ms": 5.0, "p95_abs_ms": 15.0, "drift_err_ppm": 10.0, "cover_1sigma_pct": [60.0, 80.0]}


def add_arguments(p) -> None:
    g = p.add_argument_group("synchub align on corpus files (--real-files; --speech, --sounds, --duration, --split "
                             "as --real)")
    g.add_argument("--real-files", action="store_true",
                   help="a WAV and a marker CSV per held-out corpus recording, tied by synchub align's file engine")
    g.add_argument("--mic", default="", metavar="SPEC",
                   help="the microphone as a real one delivers it: +-joined dc=A, hum=A, gain=DB, rate=HZ, clip=DB, "
                        "reverb=S, pcm16, ogg (bench/align/mic.py; e.g. gain=-40+pcm16)")
    g.add_argument("--durations", default="", metavar="S,S",
                   help="several recording lengths in one run (seconds, comma list; default: --duration): a sigma table "
                        "fitted on short and long recordings alike")


def write_files(rec, folder: Path, mic: Mic = AS_RENDERED) -> list[InputSpec]:
    """The recording's microphone (through ``mic``: as a real one delivers it) as ``mic.wav`` and its marker log as
    ``log.csv`` (device seconds, text) in ``folder``: the two inputs of ``synchub align``."""
    audio, log = rec.tracks["audio"], rec.tracks["text"]
    wav = folder / f"mic{mic.suffix}"
    mic.write(wav, audio.data, float(audio.rate_hz))
    with open(folder / "log.csv", "w") as f:
        f.write("time,event\n")
        f.writelines(f"{t // NS}.{t % NS:09d},{e}\n" for t, e in zip(log.device_ns.tolist(), log.data, strict=True))
    return [InputSpec([str(wav)]), InputSpec([str(folder / "log.csv")])]


def align_recording(rec, raw: bool = False, mic: Mic = AS_RENDERED) -> dict:
    """One recording through ``synchub align``: signed errors (ns), reported 1-sigmas (ns), or the refusal.
    ``raw``: the 1-sigmas without the file engine's table (k = 1, g = 0: all the link says); with either, their
    part the table scales and the part it does not (``Link.map_parts``: what ``--fit-sigma`` fits k and g on)."""
    rows = np.nonzero(rec.markers["event"] >= 0)[0]  # the marker lines of sounds: they mean the sound's start
    dev = rec.tracks["text"].device_ns[rows]
    truth = rec.markers["onset_ns"][rows] - int(rec.tracks["audio"].true_ns[0])  # the WAV's clock: first sample 0
    with tempfile.TemporaryDirectory(prefix="synchub-bench-files-") as td:
        specs = write_files(rec, Path(td), mic)
        try:
            fa = FileAlignment(specs, calibrated=not raw)
            fa.gather()
        except AlignError as exc:
            return {"events": len(truth), "refused": str(exc)}
        link = fa.inputs[1].link
        mapped, unc = link.map(dev, np.zeros(len(dev), dtype=np.int64))
        _, scaled, fixed = link.map_parts(dev, np.zeros(len(dev), dtype=np.int64))
    return {"events": len(truth), "err": (mapped - truth).astype(np.float64), "unc": unc.astype(np.float64),
            "scaled": scaled.astype(np.float64), "fixed": fixed,
            "t": (truth - truth[0]) / NS if len(truth) else np.zeros(0), "drift_true": rec.spec.marker_drift_ppm,
            "duration_s": rec.spec.duration_s,
            "scatter": link.scatter_ns, "window_sigma": link.window_sigma_ns, "drift_sigma": link.drift_sigma_ppm}


def figures(outs: list[dict]) -> dict:
    """Pooled figures of one or more ``align_recording`` outcomes (drift error: median over recordings)."""
    ok = [o for o in outs if "err" in o and len(o["err"])]
    n_ev = sum(o["events"] for o in outs)
    if not ok:
        return {"events": n_ev, "mapped": 0, "refused": len(outs) - len(ok)}
    err = np.concatenate([o["err"] for o in ok]) / 1e6
    unc = np.concatenate([o["unc"] for o in ok]) / 1e6
    a = np.abs(err)
    drift = [float(np.polyfit(o["t"], o["err"] / 1e3, 1)[0]) for o in ok if len(o["err"]) > 2]
    dsig = [o.get("drift_sigma") for o in ok if len(o["err"]) > 2]
    judged = [abs(e) <= s for e, s in zip(drift, dsig, strict=True) if s]  # the reported drift sigma's coverage
    return {"events": n_ev, "mapped": len(err), "refused": len(outs) - len(ok),
            "signed_median_ms": round(float(np.median(err)), 3), "median_abs_ms": round(float(np.median(a)), 3),
            "p95_abs_ms": round(float(np.percentile(a, 95)), 3),
            "within_5ms_pct": round(100.0 * float(np.count_nonzero(a <= 5.0)) / n_ev, 2),
            "drift_err_ppm": round(float(np.median(np.abs(drift))), 2) if drift else None,
            "drift_signed_err_ppm": [round(d, 2) for d in drift],
            "drift_sigma_ppm": [round(d, 2) if d else None for d in dsig],
            "drift_within_1sigma": f"{sum(judged)} of {len(judged)}",
            "sigma_median_ms": round(float(np.median(unc)), 3),
            "cover_1sigma_pct": round(100.0 * float(np.mean(a <= unc)), 2),
            "cover_2sigma_pct": round(100.0 * float(np.mean(a <= 2 * unc)), 2)}


def one_or_list(durations: list[float]) -> float | list[float]:
    """The recordings' length as the results record it: one number, or the list of several (``--durations``)."""
    return durations[0] if len(durations) == 1 else durations


def run(args) -> int:
    try:
        durations = [float(d) for d in args.durations.split(",")] if args.durations else [args.duration]
    except ValueError:
        raise UserError(f"--durations: seconds, comma-separated (got {args.durations!r})") from None
    if args.fit_sigma and args.split != "calibration":
        raise UserError("--fit-sigma fits on the calibration split only: add --split calibration")
    if args.fit_sigma and args.mic:
        raise UserError("--fit-sigma fits the corpus's own microphone: leave out --mic")
    mic = parse(args.mic)
    specs = planned(args, durations)
    t0 = time.time()
    per, by_kind, by_length = [], {"speech": [], "events": []}, {}
    for spec, rec in rendered(specs, cache_of(args)):
        o = align_recording(rec, raw=bool(args.fit_sigma), mic=mic)
        by_kind[spec.kind].append(o)
        by_length.setdefault(f"{spec.duration_s:g}", []).append(o)
        row = {"recording": spec.name, "duration_s": spec.duration_s, "snr_db": spec.snr_db,
               "background": list(spec.background), **figures([o]),
               "scatter_ms": round(o.get("scatter", 0.0) / 1e6, 2),
               "window_sigma_ms": round(o.get("window_sigma", 0.0) / 1e6, 2)}
        if "refused" in o:
            row["why"] = o["refused"]
        per.append(row)
        if not args.quiet:
            print(f"{spec.name}: " + ("refused: " + o["refused"] if "refused" in o else
                                      f"median {row['median_abs_ms']} ms, p95 {row['p95_abs_ms']} ms, drift error "
                                      f"{row['drift_err_ppm']} ppm, 1-sigma covers {row['cover_1sigma_pct']} %"))
    results = {("speech markers" if k == "speech" else "sound markers"): figures(v) for k, v in by_kind.items() if v}
    if all(by_kind.values()):  # the corpus as a whole: what the 1-sigma's band is judged on
        results["all markers"] = figures(by_kind["speech"] + by_kind["events"])
    if not args.quiet:
        for k, r in results.items():
            print(f"{k}: {r.get('median_abs_ms')} / {r.get('p95_abs_ms')} ms (median / p95 |error|), drift error "
                  f"{r.get('drift_err_ppm')} ppm, 1-/2-sigma cover {r.get('cover_1sigma_pct')} / "
                  f"{r.get('cover_2sigma_pct')} %, refused {r['refused']} ({time.time() - t0:.0f} s)")
    out = {"what": "synchub align (the file engine) on a WAV + marker CSV per corpus recording",
           "corpus": args.split, "duration_s": one_or_list(durations), "mic": args.mic or "as rendered",
           "goal": GOAL, "results": results}
    if len(by_length) > 1:  # each length's own figures: a 1-sigma right on the pool may not be at every length
        out["by_duration_s"] = {d: figures(v) for d, v in by_length.items()}
        if not args.quiet:
            print("1-/2-sigma cover by length: " + ", ".join(f"{d} s {r.get('cover_1sigma_pct')} / "
                                                            f"{r.get('cover_2sigma_pct')} %"
                                                            for d, r in out["by_duration_s"].items()))
    out["per_recording"] = per
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if args.fit_sigma:
        fit_files_table(specs, [o for v in by_kind.values() for o in v], args, Path(args.fit_sigma))
    return 0


def fit_files_table(specs, outs: list[dict], args, path: Path) -> None:
    """Fit ``FILES_TABLE``'s one pair (the corpus's files are a microphone and a marker log) on the raw outcomes;
    with the fitted table's coverage at each length."""
    ok = [o for o in outs if "err" in o and len(o["err"])]
    if not ok:
        raise UserError("--fit-sigma: synchub align refused every recording: nothing to fit the table on")
    lengths = np.concatenate([np.full(len(o["err"]), f"{o['duration_s']:g}") for o in ok])
    samples = {("audio", "text"): (*(np.concatenate([o[k] for o in ok]) for k in ("err", "scaled", "fixed")), lengths)}
    doc = fit_pairs(samples, {"split": args.split, "recordings": sorted({s.name for s in specs}),
                              "duration_s": one_or_list(sorted({s.duration_s for s in specs})),
                              "method": "hybrid", "mode": "files"}, by="duration_s")
    doc["what"] = ("per modality pair, the calibrated 1-sigma scale * sqrt(sigma^2 + floor^2) of the uncertainty "
                   f"synchub align's aligner links map with (agent/align/calibration.py {FILES_TABLE.name})")
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print("file-engine sigma calibration: " + ", ".join(
        f"{p['pair'][0]}-{p['pair'][1]} x{p['scale']:.2f} floor {p['floor_ms']:.2f} ms, 1-sigma covers "
        + ", ".join(f"{v} % at {d} s" for d, v in p["cover_1sigma_pct_fitted_by_duration_s"].items())
        for p in doc["pairs"]))

