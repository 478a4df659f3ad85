"""``synchub bench align --replay DIR [DIR ...]``: the live aligners rerun on recorded demo sessions, live against
offline (issue 14 item 6: live error within 1.5 x the offline error 20 s after a stream starts).

A ``synchub demo`` run is a real-time run: its live figures move from run to run with the host's scheduling (the
arrival stamps, where the windows fall).  This reruns, deterministically, what the agent did on each recording
(``DIR``: a demo's output folder, ``session.mcap`` + the simulator's ``truth.npz``): every aligned stream's
``AlignmentTracker`` (the agent's settings and sigma table; ``--window``/``--first-window``/``--hop`` to try others)
is fed the target's raw chunks as they arrived and the reference's live-corrected chunks once the agent would have
released them (its correction delay after their arrival); its offsets, stamped with when they came out, replace the
recorded ones; then the clock layer corrects the recording as the agent does live (``replay(smooth=False)``) and
two-sided (``synchub align``).  Per stream: the median |error| of the samples after the first 20 s (``--settle``),
live and offline, and their ratio; over recordings: medians and how many are within 1.5 x.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from synchub.agent.align.calibration import SIM_TABLE, SigmaTable
from synchub.agent.align.tracker import AlignmentTracker, calibrated_settings
from synchub.agent.align.window import load_runners, modality_of
from synchub.agent.cli.demo import SETTLE_S, chunk_errors
from synchub.agent.clock.replay import correct_recording
from synchub.agent.clock.settings import ClockLayerConfig
from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.formats.mcap_read import raw_recording, read_session
from synchub.argtypes import nonnegative, positive
from synchub.drivers.sim.truth import Truth
from synchub.errors import UserError

from .calibrate import checked

RATIO = 1.5  # issue 14: live within 1.5 x offline


def add_arguments(p) -> None:
    g = p.add_argument_group("recorded demo sessions (--replay)")
    g.add_argument("--replay", nargs="+", metavar="DIR", default=None,
                   help="demo output folders (session.mcap + truth.npz): rerun their live aligners, live vs offline")
    g.add_argument("--first-window", type=positive, default=None, metavar="S",
                   help="--replay: the first windows grow from this (default: the full window)")
    g.add_argument("--settle", type=nonnegative, default=SETTLE_S, metavar="S",
                   help="--replay: judge the samples this long after the start (default: 20, as the demo)")


def tracker_evidence(raw, cfg: ClockLayerConfig, target: str, ref: str, ref_times: dict[int, np.ndarray], runners,
                     table, window_s: float, first_window_s: float | None, hop_s: float) -> list[OffsetEstimate]:
    """The offsets a live ``AlignmentTracker`` gives for ``target`` on a recording, each stamped (``host_ns``) with
    the host time of the chunk after which it came out.  ``ref_times``: the reference's live-corrected times as
    recorded, per chunk (by its first seq)."""
    tr = AlignmentTracker(ref, target, raw.infos[ref], raw.infos[target], runners, window_s=window_s, hop_s=hop_s,
                          settings=calibrated_settings(table, True), table=table, first_window_s=first_window_s)
    ref_delay = cfg.stream_delays_ns().get(ref, cfg.delay_ns)
    items = []
    for c in raw.chunks:
        if c.n and c.stream == ref:
            r = ref_times.get(c.seq)
            if r is not None and (r >= 0).all():
                items.append((int(c.host_ns[-1]) + ref_delay, 0, dataclasses.replace(c, ref_ns=r,
                                                                                     unc_ns=np.zeros(c.n))))
        elif c.n and c.stream == target:
            items.append((int(c.host_ns[-1]), 1, c))
    items.sort(key=lambda x: (x[0], x[1]))
    out = []
    for t, is_target, c in items:
        (tr.push_arrival if is_target else tr.push)(c.stream, c)
        out += [dataclasses.replace(e, host_ns=t) for e in tr.poll()]
    return out


def settled_median_us(chunks, truth, stream: str, settle_s: float = SETTLE_S) -> float | None:
    st = truth.streams.get(stream)
    cs = [c for c in chunks if c.stream == stream and c.ref_ns is not None]
    if st is None or not cs:
        return None
    err, t_true = chunk_errors(cs, st)
    late = t_true >= truth.origin_ns + settle_s * 1e9
    return float(np.median(np.abs(err[late]))) / 1e3 if late.any() else None


def replay_session(folder: Path, runners, table, window_s: float, first_window_s: float | None,
                   hop_s: float, settle_s: float = SETTLE_S) -> dict:
    truth = Truth.load(folder / "truth.npz")
    data = read_session(folder / "session.mcap")
    raw = raw_recording(data)
    cfg = ClockLayerConfig.from_dict(raw.clock_config)
    aligned = {n: o.align_to for n, o in cfg.streams.items() if o.align_to and n in raw.infos}
    evidence = [e for e in raw.evidence if not (isinstance(e, OffsetEstimate) and e.stream in aligned)]
    need = {modality_of(raw.infos[n]) for pair in aligned.items() for n in pair} - set(runners)
    if need:  # the encoders this recording's pairs use, loaded once for every recording
        runners.update(load_runners(sorted(need)))
    for target, ref in aligned.items():
        rec = data["streams"][ref]
        by_seq = dict(zip(rec["seq"].tolist(), rec["ref_ns"].tolist(), strict=True))
        ref_times = {c.seq: np.array([by_seq.get(s, -1) for s in range(c.seq, c.seq_end)], np.int64)
                     for c in raw.chunks if c.stream == ref and c.n}
        evidence += tracker_evidence(raw, cfg, target, ref, ref_times, runners, table, window_s, first_window_s,
                                     hop_s)
    live, _ = correct_recording(raw.infos, cfg, evidence, raw.chunks, smooth=False)
    offline, _ = correct_recording(raw.infos, cfg, evidence, raw.chunks, smooth=True)
    out = {}
    for target in aligned:
        a, b = settled_median_us(live, truth, target, settle_s), settled_median_us(offline, truth, target, settle_s)
        out[target] = {"modality": modality_of(raw.infos[target]), "live_us": _r(a), "offline_us": _r(b),
                       "ratio": _r(a / b, 3) if a is not None and b else None}
    return out


def _r(v, p=1):
    return None if v is None else round(float(v), p)


def run(args) -> int:
    folders = [Path(d) for d in args.replay]
    for f in folders:
        missing = [n for n in ("session.mcap", "truth.npz") if not (f / n).is_file()]
        if missing:
            raise UserError(f"{f}: not a demo output folder (no {', '.join(missing)}; run synchub demo --out DIR)")
    table = checked(SigmaTable.load(SIM_TABLE))
    runners: dict = {}  # filled per recording with the encoders its aligned pairs need
    window, hop = float(args.window), float(args.hop)
    per = {}
    for f in folders:
        per[str(f)] = replay_session(f, runners, table, window, args.first_window, hop, args.settle)
        print(f"{f}: " + (", ".join(f"{s} live {v['live_us']} us, offline {v['offline_us']} us"
                                    for s, v in per[str(f)].items()) or "no aligned stream (align_to) recorded"))
    summary = {}
    for s in sorted({s for v in per.values() for s in v}):
        rows = [v[s] for v in per.values() if s in v and v[s]["ratio"] is not None]
        if rows:
            summary[s] = {"recordings": len(rows), "live_median_us": _r(np.median([r["live_us"] for r in rows])),
                          "offline_median_us": _r(np.median([r["offline_us"] for r in rows])),
                          f"within_{RATIO}x": sum(r["ratio"] <= RATIO for r in rows)}
            print(f"{s}: live {summary[s]['live_median_us']} us, offline {summary[s]['offline_median_us']} us "
                  f"(medians over {len(rows)}), live within {RATIO} x offline on {summary[s][f'within_{RATIO}x']}")
    out = {"what": "live aligners rerun on recorded demo sessions, median |error| after the first settle_s",
           "settle_s": args.settle, "window_s": window, "first_window_s": args.first_window or window, "hop_s": hop,
           "summary": summary, "per_recording": per}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0
