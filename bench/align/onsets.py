"""``synchub bench align --onset-check [--json OUT]``: the onset check (``agent/align/onset_check.py``) on the
real-signal corpus, mapping by mapping.  Per recording (``--speech``, ``--sounds``, ``--duration``, ``--split`` as
``--real``), the microphone's average energy around the marker lines' sounds is taken with the sounds mapped right
and ``LATE_MS`` late (as an aligner link's windows may all find them, alike), and the check's answer is judged:
where the mapping ends after its move (``EventAverage.departure``'s shift), against the sounds' true starts.  A right
mapping must stay; a late one must come back, the nearer the better; none may go early.

The check is given the limit an aligner link of 20 ms window sigmas gives it (three of them) and no log scatter
(the corpus's lines are written at the sounds' starts).  Per kind (speech: utterances, events: sound effects) and
lateness: the median, 90th percentile and largest |error| after the check, and how many it moved and how (``start``:
to the start of the sounds' rise; ``departure``: to where it stood out of the background).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from synchub.agent.align.onset_check import EventAverage

from .recordings import cache_of, planned, rendered

LATE_MS = (0, 5, 10, 20, 40)
LIMIT_NS = 60e6  # three window sigmas of 20 ms (speech in babble; the check's own limit)


def add_arguments(p) -> None:
    g = p.add_argument_group("the onset check on the corpus (--onset-check; --speech, --sounds, --duration, --split "
                             "as --real)")
    g.add_argument("--onset-check", action="store_true",
                   help="the onset check's answer with each recording's sounds mapped right and 5-40 ms late")


def check_recording(rec) -> list[dict]:
    """The check's answer for each lateness of ``LATE_MS``: the error left (ms, > 0: late) and how it moved."""
    rows = np.nonzero(rec.markers["event"] >= 0)[0]
    truth = np.asarray(rec.markers["onset_ns"][rows], dtype=np.int64)
    audio = rec.tracks["audio"]
    out = []
    for late in LATE_MS:
        avg = EventAverage(truth + late * 1_000_000)
        avg.add(audio.true_ns, audio.data)
        dep = avg.departure(limit_ns=LIMIT_NS)
        shift = dep.shift_ns if dep is not None else 0
        how = "none" if not shift else ("start" if dep.start_ns == shift else "departure")
        out.append({"late_ms": late, "error_ms": round(late + shift / 1e6, 2), "moved": how})
    return out


def summary(per: list[dict], kind: str) -> list[dict]:
    out = []
    for i, late in enumerate(LATE_MS):
        r = [p["checks"][i] for p in per if p["kind"] == kind]
        if not r:
            continue
        err = np.abs([x["error_ms"] for x in r])
        out.append({"late_ms": late, "recordings": len(r), "median_abs_ms": round(float(np.median(err)), 2),
                    "p90_abs_ms": round(float(np.percentile(err, 90)), 2), "max_abs_ms": round(float(err.max()), 2),
                    "early_over_5ms": int(sum(x["error_ms"] < -5 for x in r)),
                    "moved_start": sum(x["moved"] == "start" for x in r),
                    "moved_departure": sum(x["moved"] == "departure" for x in r)})
    return out


def run(args) -> int:
    t0, per = time.time(), []
    for spec, rec in rendered(planned(args), cache_of(args)):
        checks = check_recording(rec)
        per.append({"recording": spec.name, "kind": spec.kind, "snr_db": spec.snr_db, "checks": checks})
        if not args.quiet:
            print(f"{spec.name} ({spec.snr_db:g} dB): " + ", ".join(
                f"{c['late_ms']} -> {c['error_ms']:+.1f} ms ({c['moved']})" for c in checks))
    results = {kind: summary(per, kind) for kind in ("speech", "events")}
    if not args.quiet:
        for kind, rows in results.items():
            for r in rows:
                print(f"{kind} mapped {r['late_ms']} ms late: |error| after the check median {r['median_abs_ms']}, "
                      f"p90 {r['p90_abs_ms']}, max {r['max_abs_ms']} ms; {r['early_over_5ms']} of {r['recordings']} "
                      f"more than 5 ms early; moved to the start {r['moved_start']}, to the departure "
                      f"{r['moved_departure']}")
        print(f"({time.time() - t0:.0f} s)")
    out = {"what": "the onset check's answer on each corpus recording's sounds mapped right and late",
           "corpus": args.split, "duration_s": args.duration, "limit_ms": LIMIT_NS / 1e6, "results": results,
           "per_recording": per}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0
