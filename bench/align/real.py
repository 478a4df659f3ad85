"""``synchub bench align --real [--json OUT]``: the aligner on the held-out part of the real-signal corpus.

``--split calibration --fit-sigma FILE`` runs the calibration split instead and fits the per-pair sigma scales
(``calibration.fit_scale_floor`` on the live hybrid's errors and reported sigmas) into FILE; the shipped table is
``agent/align/sigma_calibration.json`` and is never fitted on the held-out split.

The corpus (``synchub.models.corpus``, its ``DATA_CARD.md``) renders recordings from Debian's TTS engines and
recorded sounds; this benchmark takes the **held-out** split only (voices, sounds, speeds and seeds never trained
on) and runs the aligner as it is, through its public entry points (``WindowAligner``, ``DriftTracker``, the
``ClockModel`` with ``bench.align.hybrid_map``), exactly as ``bench align --scenario`` does on the simulator.

Pairs (the reference is the microphone, on the reference clock; the target runs on a drifting device clock):

* ``Speech+Markers``: synthesized and recorded speech with babble/music/noise at 0-30 dB SNR vs the rig's log,
  which has one line per utterance and lines of things that make no sound.  An utterance's marker must land
  where the utterance starts (the first sample of the dry sound above its threshold);
* ``Sounds+Markers``: the same with recorded sound effects;
* ``Sounds+IMU`` / ``Sounds+Video``: an IMU that feels every sound (harder: impacts), a camera that sees a lamp
  light or the picture shake: each event's stamp on the target clock must land at its true time (the sound
  reaches the microphone 1-9 ms later).

Each pair runs in two modes: ``live`` (a hub received the target: its host receive times are known, bound the
offset and feed the clock model) and ``file`` (a log file next to a sound file, as a new user tries it: device
stamps only).  Per recording and overall, per method (``arrival``: host receive times only, in file mode
``naive``: device time taken as reference time; ``classical``; ``neural``; ``hybrid``; ``tracker``: the live
``AlignmentTracker`` fed second by second, each event mapped as it arrives with its current offset line): the signed median error of the mapped events (> 0: late), median and p95 |error|, the share within
5 ms, the drift error (ppm, at the end of the recording: 5 minutes by default), the coverage of the reported
1-sigma and 2-sigma (classical/neural: the window's sigma; hybrid: the clock model's uncertainty; per modality pair
with its 95 % interval over recordings), and the share of windows the method abstained on, with its reasons.
Events in windows that abstained count as missed.
Goal (issue 14): median |error| <= 5 ms, p95 <= 15 ms, drift error <= 10 ppm, 1-sigma coverage 60-80 %.
"""

from __future__ import annotations

import collections
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from synchub.agent.align.aligner import AlignerSettings
from synchub.agent.align.calibration import REAL_TABLE, SigmaTable, floor_for_coverage
from synchub.agent.align.drift import DriftTracker, theil_sen
from synchub.agent.align.tracker import AlignmentTracker, calibrated_settings
from synchub.agent.align.window import WindowAligner, load_runners, modality_of, period_s, reason_kind
from synchub.agent.clock.choice import UNKNOWN_UNC_NS
from synchub.agent.clock.model import ClockModel
from synchub.agent.core.stream import Chunk
from synchub.agent.core.units import NS
from synchub.argtypes import positive
from synchub.errors import UserError

from .calibrate import checked, fit_table, fit_window_table, table_pair_coverage
from .hold import EarlyHold
from .pairs import feed_window, hybrid_events
from .recordings import cache_of, planned, rendered
from .streams import cut, embed_stream

METHODS = ("arrival", "classical", "neural", "hybrid", "tracker")
WINDOWED = ("classical", "neural", "hybrid")  # what WindowAligner.estimate computes per window
MODES = ("live", "file")
PAIRS = {"speech": (("Speech+Markers", "audio", "text"),),
         "events": (("Sounds+Markers", "audio", "text"), ("Sounds+IMU", "audio", "imu"),
                    ("Sounds+Video", "audio", "video"))}
#: the console table: (result key, header, width, decimals)
COLUMNS = (("signed_median_ms", "signed", 7, 2), ("median_abs_ms", "|med|", 7, 2), ("p95_abs_ms", "p95", 7, 2),
           ("within_5ms_pct", "<=5ms%", 7, 1), ("drift_err_ppm", "drift", 7, 1), ("sigma_median_ms", "sigma", 7, 2),
           ("cover_1sigma_pct", "cov1%", 6, 1), ("cover_2sigma_pct", "cov2%", 6, 1), ("abstain_pct", "abst%", 6, 1))
#: this corpus's per-pair scales of the hybrid path's reported uncertainty and of its window sigmas, fitted on its
#: calibration split (``--split calibration --fit-sigma``; the file says which recordings and when), never on the
#: held-out split
SIGMA_TABLE = SigmaTable.load(REAL_TABLE) if REAL_TABLE.exists() else SigmaTable((), {})
#: the window settings that go with the table (its window scales, the corpus's window floors
#: ``calibration.REAL_WINDOW_FLOOR_MS``): what the live agent runs with the same table
SETTINGS = calibrated_settings(SIGMA_TABLE, simulated=False)

GOAL = {"median_abs_ms": 5.0, "p95_abs_ms": 15.0, "drift_err_ppm": 10.0, "cover_1sigma_pct": [60.0, 80.0],
        "cover_2sigma_pct": 90.0}


def add_arguments(p) -> None:
    g = p.add_argument_group("real-signal corpus (--real)")
    g.add_argument("--real", action="store_true", help="run on the held-out real-signal corpus instead of a scenario")
    g.add_argument("--speech", type=int, default=4, help="held-out speech recordings")
    g.add_argument("--sounds", type=int, default=8, help="held-out sound-effect recordings")
    g.add_argument("--duration", type=positive, default=300.0, help="seconds per recording")
    g.add_argument("--window", type=positive, default=16.0, help="alignment window, target device seconds")
    g.add_argument("--hop", type=positive, default=4.0, help="hop between windows")
    g.add_argument("--methods", default=",".join(METHODS), help="comma list of " + ", ".join(METHODS))
    g.add_argument("--modes", default=",".join(MODES), help="live (host receive times known), file (device stamps only)")
    g.add_argument("--split", default="heldout", choices=("heldout", "calibration"),
                   help="corpus split (calibration: only to fit the sigma table)")
    g.add_argument("--fit-sigma", default="", metavar="FILE",
                   help="fit the per-pair sigma calibration on this run and write it to FILE (--real: with --split "
                        "calibration; --scenario: with --seeds other than the scenario's)")
    g.add_argument("--cache", default="", help="clip cache folder (default: $SYNCHUB_CORPUS_CACHE or ~/.cache)")


# ------------------------------------------------------------------------------------------------ evaluation
def target_events(rec, tgt: str) -> tuple[np.ndarray, np.ndarray]:
    """(stamps on the target's device clock, true reference times) of the events the target shows."""
    t = rec.tracks[tgt]
    if tgt == "text":  # the marker lines of sounds; they mean the sound's start
        rows = np.nonzero(rec.markers["event"] >= 0)[0]
        return t.device_ns[rows], rec.markers["onset_ns"][rows]
    cause = rec.events["cause_ns"]
    return t.clock.to_device(cause), cause


class _Out:
    def __init__(self, methods):
        self.err = {m: [] for m in methods}  # signed, ns
        self.sigma = {m: [] for m in methods}  # reported 1-sigma, ns (nan: none)
        self.missed = dict.fromkeys(methods, 0)
        self.windows = {m: [0, 0] for m in methods}  # abstained, total
        self.reasons = {m: collections.Counter() for m in methods}
        self.drift_est: dict[str, float | None] = dict.fromkeys(methods)
        self.drift_true = 0.0
        self.recording = ""

    def add(self, m, mapped, truth, sigma) -> None:
        self.err[m].extend((np.asarray(mapped, dtype=np.int64) - truth).tolist())
        self.sigma[m].extend(np.broadcast_to(np.asarray(sigma, dtype=np.float64), (len(truth),)).tolist())


def run_pair(rec, ref_key: str, tgt_key: str, runners: dict, methods, window_s: float = 16.0, hop_s: float = 4.0,
             settings: AlignerSettings | None = None, emb_cache: dict | None = None, mode: str = "live",
             table: SigmaTable | None = None) -> _Out:
    """Every method on one reference/target pair of one recording, window by window (no prior: each window is
    searched +-2 s around zero, as ``bench align`` does).  ``mode``: ``live`` (a hub received the target: host
    receive times bound and inform the offset) or ``file`` (a log file and a sound file: device stamps only, no
    arrival bound; the ``arrival`` method is then the naive one, device time taken as reference time)."""
    live = mode == "live"
    table = SIGMA_TABLE if table is None else table
    ref, tgt = rec.tracks[ref_key], rec.tracks[tgt_key]
    out = _Out(methods)
    out.recording = rec.name
    ri, ti = ref.info(), tgt.info()
    wa = WindowAligner(ri, ti, runners, settings or SETTINGS)
    coarser = max(period_s(ri), period_s(ti))
    win_ns, hop_ns = int(max(window_s, 32 * coarser) * NS), int(hop_s * NS)
    emb_cache = {} if emb_cache is None else emb_cache
    ref_emb = tgt_emb = None
    if "neural" in methods or "hybrid" in methods:
        for key, tr, clock_t in ((ref_key, ref, ref.true_ns), (tgt_key, tgt, tgt.device_ns)):
            if key not in emb_cache:
                emb_cache[key] = embed_stream(runners, modality_of(tr.info()), clock_t, tr.data)
        ref_emb, tgt_emb = emb_cache[ref_key], emb_cache[tgt_key]
    dur = int(rec.spec.duration_s * NS)
    d_start = int(tgt.clock.to_device(np.array([0]))[0]) + NS // 2
    d_end = int(tgt.clock.to_device(np.array([dur]))[0]) - NS // 2
    starts = np.arange(d_start, d_end - win_ns + 1, hop_ns)
    e_dev, e_true = target_events(rec, tgt_key)
    out.drift_true = float(tgt.clock.drift_ppm_at(np.array([dur]))[0])
    if len(starts) == 0:
        return out
    centres = starts + win_ns // 2
    keep = (e_dev >= centres[0] - hop_ns // 2) & (e_dev < centres[-1] + hop_ns // 2)
    out.missed = {m: int(np.count_nonzero(~keep)) for m in methods}  # outside every window: not mapped
    e_dev, e_true = e_dev[keep], e_true[keep]
    owner = np.clip(np.rint((e_dev - centres[0]) / hop_ns).astype(np.int64), 0, len(centres) - 1)
    trackers = {m: DriftTracker() for m in ("classical", "neural")}
    model = ClockModel(name=tgt_key, window_s=120.0, skew_prior_ppm=300.0)
    offsets: list = []
    hold = EarlyHold(60 * NS)  # events wait for the offsets that judge the envelope (``hold.py``), as on the simulator
    fed_until = -(1 << 62)
    lat = (tgt.host_ns - tgt.device_ns).astype(np.float64) if live else np.zeros(len(tgt.device_ns))
    for w, d0 in enumerate(starts):
        d1 = d0 + win_ns
        sel = owner == w
        ed, et = e_dev[sel], e_true[sel]
        if "arrival" in methods:
            out.windows["arrival"][1] += 1
            if len(ed):
                out.add("arrival", ed + np.rint(np.interp(ed, tgt.device_ns, lat)).astype(np.int64), et, np.nan)
        lo, hi = wa.ref_range((int(d0), int(d1)), 0)
        rt, rx = cut(ref.true_ns, ref.data, lo, hi)
        tt, tx = cut(tgt.device_ns, tgt.data, d0, d1)
        i0, i1 = np.searchsorted(tgt.device_ns, [d0, d1])
        bound = int(np.min(lat[i0:i1])) if i1 > i0 and live else None
        res = wa.estimate(rt, rx, tt, tx, (int(d0), int(d1)), 0, methods=[m for m in methods if m in WINDOWED],
                          ref_emb=ref_emb, tgt_emb=tgt_emb, arrival_bound_ns=bound)
        for m, r in res.items():
            out.windows[m][1] += 1
            if not r.ok:
                out.windows[m][0] += 1
                out.reasons[m][reason_kind(r.reason)] += 1
            if m == "hybrid":
                fed_until, _fed = feed_window(model, tgt, fed_until, int(d0) + win_ns // 2, r, tgt_key,
                                              win_ns / hop_ns, offsets, arrivals=live)
                if not model.segments:
                    out.missed[m] += len(ed)
                    continue
                # the uncertainty of the estimate each event got (the filter's or the arrival envelope's)
                for t_, mapped, unc in hybrid_events(hold, model, ed, et, offsets, int(d0) + win_ns // 2, 300.0,
                                                     coarser * NS):
                    out.add(m, mapped, t_, table.apply(ref_key, tgt_key, unc))
                continue
            if not r.ok:
                out.missed[m] += len(ed)
                continue
            trackers[m].add(r)
            if len(ed):
                mapped = ed + r.offset_ns - trackers[m].drift_ppm * 1e-6 * (ed - r.device_ns)
                out.add(m, np.rint(mapped), et, float(r.sigma_ns))
    t_, mapped, unc = hold.flush()  # still waiting when the recording ended: with the last mapping they had
    if len(t_):
        out.add("hybrid", mapped, t_, table.apply(ref_key, tgt_key, unc))
    if "arrival" in methods and len(tgt.device_ns) > 2:
        step = max(1, len(tgt.device_ns) // 400)
        _a, b = theil_sen((tgt.device_ns[::step] - tgt.device_ns[0]) / NS, lat[::step])
        out.drift_est["arrival"] = -b / 1e3
    for m in ("classical", "neural"):
        if m in methods and len(trackers[m].points) >= trackers[m].min_points:
            out.drift_est[m] = trackers[m].drift_ppm
    if "hybrid" in methods and model.segments:
        st = model.state()
        out.drift_est["hybrid"] = float(st["drift_ppm"]) if "drift_ppm" in st else None
    if "tracker" in methods:
        run_tracker(rec, ref_key, tgt_key, runners, window_s, hop_s, live, out)
    return out


def run_tracker(rec, ref_key: str, tgt_key: str, runners: dict, window_s: float, hop_s: float, live: bool,
                out: _Out, step_s: float = 1.0) -> None:
    """The live ``AlignmentTracker`` (hybrid) fed one second of both streams at a time, as the agent does; each
    target event is mapped when it arrives, with the tracker's current offset line (none yet: missed).  In file
    mode the target's host times are its device times (what a tool replaying a log file has)."""
    ref, tgt = rec.tracks[ref_key], rec.tracks[tgt_key]
    tr = AlignmentTracker("ref", "tgt", ref.info(), tgt.info(), runners, window_s=window_s, hop_s=hop_s,
                          settings=SETTINGS)
    host = tgt.host_ns if live else tgt.device_ns
    e_dev, e_true = target_events(rec, tgt_key)
    e_arr = np.interp(e_dev, tgt.device_ns, tgt.true_ns).astype(np.int64)  # when each event's sample arrives
    sigma = None
    step = int(step_s * NS)
    for a in range(0, int(rec.spec.duration_s * NS) + step, step):
        for name, t, dev, hst, ref_ns in (("ref", ref, ref.true_ns, ref.true_ns, True),
                                           ("tgt", tgt, tgt.device_ns, host, False)):
            i0, i1 = np.searchsorted(t.true_ns, [a, a + step])
            if i1 > i0:
                data = t.data[i0:i1]
                tr.push(name, Chunk(name, int(i0), data, dev[i0:i1], hst[i0:i1],
                                    ref_ns=dev[i0:i1] if ref_ns else None))
        ev = tr.poll()
        if ev:
            sigma = float(ev[-1].sigma_ns)
        now = (e_arr >= a) & (e_arr < a + step)
        if not now.any():
            continue
        if not tr.drift.points:
            out.missed["tracker"] += int(now.sum())
            continue
        mapped = [e + tr.drift.offset_at(int(e)) for e in e_dev[now]]
        out.add("tracker", np.rint(mapped), e_true[now], sigma if sigma is not None else np.nan)
    c = tr.stats()
    out.windows["tracker"] = [c["abstained"] + c["outliers"], c["windows"]]
    out.reasons["tracker"].update({reason_kind(k): v for k, v in c["reasons"].items()})
    out.drift_est["tracker"] = tr.drift.drift_ppm if len(tr.drift.points) >= tr.drift.min_points else None


def method_label(method: str, mode: str) -> str:
    return "naive" if method == "arrival" and mode == "file" else method


def _r(v, p=3):
    return None if v is None or not np.isfinite(v) else round(float(v), p)


def summarize(outs: list[_Out], m: str) -> dict:
    """Figures of method ``m`` over one or more pair outcomes (pooled events; drift error: median over them)."""
    err = np.array([e for o in outs for e in o.err[m]], dtype=np.float64)
    sig = np.array([s for o in outs for s in o.sigma[m]], dtype=np.float64)
    missed = sum(o.missed[m] for o in outs)
    ab, tot = sum(o.windows[m][0] for o in outs), sum(o.windows[m][1] for o in outs)
    d_err = [o.drift_est[m] - o.drift_true for o in outs if o.drift_est[m] is not None]
    a = np.abs(err)
    has_sig = np.isfinite(sig) & (sig < UNKNOWN_UNC_NS)
    reasons = collections.Counter()
    for o in outs:
        reasons.update(o.reasons[m])
    n_ev = len(err) + missed
    return {
        "events": n_ev, "mapped": len(err),
        "signed_median_ms": _r(np.median(err) / 1e6) if len(err) else None,
        "median_abs_ms": _r(np.median(a) / 1e6) if len(err) else None,
        "p95_abs_ms": _r(np.percentile(a, 95) / 1e6) if len(err) else None,
        "within_5ms_pct": _r(100.0 * np.count_nonzero(a <= 5e6) / n_ev, 2) if n_ev else None,
        "drift_err_ppm": _r(np.median(np.abs(d_err))) if d_err else None,
        "drift_signed_err_ppm": [_r(d) for d in d_err],
        "sigma_median_ms": _r(np.median(sig[has_sig]) / 1e6) if has_sig.any() else None,
        "cover_1sigma_pct": _r(100.0 * np.mean(a[has_sig] <= sig[has_sig]), 2) if has_sig.any() else None,
        "cover_2sigma_pct": _r(100.0 * np.mean(a[has_sig] <= 2 * sig[has_sig]), 2) if has_sig.any() else None,
        # diagnostic: the floor (added in quadrature) that would bring this run's 1-sigma coverage to 68 % (never
        # fitted from here on the held-out split: the calibration is --split calibration --fit-sigma)
        "sigma_floor_68_ms": _r(floor_for_coverage(a[has_sig], sig[has_sig]) / 1e6) if has_sig.any() else None,
        "abstain_pct": _r(100.0 * ab / tot, 2) if tot else None,
        "abstain_reasons": dict(reasons.most_common(4)),
    }


def bench_real(specs, methods=METHODS, window_s: float = 16.0, hop_s: float = 4.0, cache=None, log=print,
               modes=MODES, settings: AlignerSettings | None = None, pooled_out: dict | None = None,
               table: SigmaTable | None = None) -> dict:
    table = SIGMA_TABLE if table is None else table
    runners = load_runners(["audio", "text", "imu", "video"]) if {"neural", "hybrid", "tracker"} & set(methods) else {}
    per_rec, pooled = [], collections.defaultdict(list) if pooled_out is None else pooled_out
    t0 = time.time()
    for spec, rec in rendered(specs, cache):
        t1 = time.time()
        emb_cache: dict = {}
        for name, ref, tgt in PAIRS[spec.kind]:
            for mode in modes:
                o = run_pair(rec, ref, tgt, runners, methods, window_s, hop_s, settings, emb_cache, mode, table)
                pooled[(name, mode)].append(o)
                for m in methods:
                    per_rec.append({"recording": rec.name, "pair": name, "mode": mode, "method": method_label(m, mode),
                                    **summarize([o], m)})
        log(f"  {rec.name} ({', '.join(spec.voices if spec.kind == 'speech' else ('sounds',))}; "
            f"{'+'.join(spec.background) or 'quiet'}, {spec.snr_db:.0f} dB; marker clock {spec.marker_offset_s:+.2f} s "
            f"{spec.marker_drift_ppm:+.0f} ppm): rendered {t1 - t0:.1f} s, aligned {time.time() - t1:.1f} s")
        t0 = time.time()
    overall = [{"pair": name, "mode": mode, "method": method_label(m, mode), **summarize(outs, m)}
               for (name, mode), outs in pooled.items() for m in methods]
    return {"corpus": specs[0].split if specs else "heldout", "sigma_table": table.source,
            "recordings": [s.name for s in specs], "duration_s": specs[0].duration_s if specs
            else 0.0, "window_s": window_s, "hop_s": hop_s, "goal": GOAL, "results": overall, "per_recording": per_rec,
            "coverage": table_pair_coverage(pooled, PAIRS, summarize) if "hybrid" in methods else {}}


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _choice(flag: str, value: str, allowed) -> tuple[str, ...]:
    got = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in got if v not in allowed]
    if bad or not got:
        raise UserError(f"{flag}: unknown {', '.join(bad) or '(none)'}; allowed: {', '.join(allowed)}")
    return got


def run(args) -> int:
    methods = _choice("--methods", args.methods, METHODS)
    modes = _choice("--modes", args.modes, MODES)
    if args.fit_sigma and args.split != "calibration":
        raise UserError("--fit-sigma fits on the calibration split only: add --split calibration")
    table = SigmaTable((), {"none": "raw sigmas (--fit-sigma)"}) if args.fit_sigma else checked(SIGMA_TABLE)
    if args.fit_sigma and not {"hybrid"} <= set(methods) or args.fit_sigma and "live" not in modes:
        raise UserError("--fit-sigma needs the hybrid method in live mode")
    specs, cache = planned(args), cache_of(args)
    t0 = time.time()
    log = _stderr
    settings, windows = SETTINGS, []
    if args.fit_sigma:  # first pass: the window sigmas' scales, with none applied
        pooled: dict = collections.defaultdict(list)
        bench_real(specs, ("classical", "neural"), args.window, args.hop, cache, log, ("live",),
                   replace(SETTINGS, window_sigma_scales=()), pooled, table)
        windows = fit_window_table(pooled, PAIRS)
        settings = replace(SETTINGS, window_sigma_scales=tuple((w["pair"][0], w["pair"][1], w["method"],
                                                                w["scale"]) for w in windows))
    pooled = collections.defaultdict(list)
    out = bench_real(specs, methods, args.window, args.hop, cache, log=log, modes=modes, pooled_out=pooled,
                     table=table, settings=settings)
    if not args.quiet:
        print(f"{'pair':16s} {'mode':4s} {'method':9s} " + " ".join(f"{h:>{w}s}" for _k, h, w, _p in COLUMNS))
        for r in out["results"]:
            cells = (f"{r[k]:{w}.{p}f}" if isinstance(r[k], (int, float)) else f"{'-':>{w}s}" for k, _h, w, p in COLUMNS)
            print(f"{r['pair']:16s} {r['mode']:4s} {r['method']:9s} " + " ".join(cells))
        print("live hybrid 1-/2-sigma coverage per modality pair (what the sigma table calibrates; 95 % interval over "
              "recordings): " + ", ".join(f"{k} {v['cover_1sigma_pct']} / {v['cover_2sigma_pct']} % "
                                          f"{v['cover_1sigma_ci95']}" for k, v in out["coverage"].items()))
        print(f"({time.time() - t0:.1f} s; ms, drift in ppm)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if args.fit_sigma:
        table = {**fit_table(pooled, out, PAIRS), "windows": windows}
        Path(args.fit_sigma).write_text(json.dumps(table, indent=1) + "\n")
        print("sigma calibration: " + ", ".join(f"{p['pair'][0]}-{p['pair'][1]} x{p['scale']:.2f} floor "
                                                f"{p['floor_ms']:.2f} ms" for p in table["pairs"]))
    return 0

