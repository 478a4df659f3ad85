"""``synchub inspect FILE.mcap [...] [--plot PNG] [--json]``: streams, modality, rates (nominal vs measured),
sample counts, sequence gaps (holes in seq and recorded Gap records), the clock resets drivers reported, time range
(reference and UTC when known).

Several files are grouped by session: the parts of one session are read together; several sessions (an agent that
restarted) are summarized one by one, in time order, with the hole between them per stream (a new session numbers
its samples from 0 again: that is no duplicate).  Recordings synchub did not make (XDF, WAV/FLAC, CSV/TSV, or any
input with per-file options or a manifest): ``inspect_files``."""

from __future__ import annotations

import collections
import json
import os
import sys
from typing import Any

import numpy as np
from mcap.records import Metadata
from mcap.stream_reader import StreamReader

from synchub.agent.align.fusion import export_fused_json
from synchub.agent.formats.mcap_read import CorruptMcap, read_session
from synchub.agent.formats.readers.base import InputError
from synchub.errors import UserError
from synchub.extras import require

from .inputs import add_input_arguments, mcap_only
from .inspect_files import run_files
from .inspect_stream import iso, summarize_streaming


def add_arguments(p) -> None:
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="recording(s): synchub MCAP (parts of one session are merged), or XDF, WAV/FLAC, CSV/TSV, "
                        "PsychoPy .log/.csv, BrainVision, EDF/BDF, SpikeGLX, Open Ephys, video/audio files")
    p.add_argument("--plot", metavar="PNG", help="draw a timeline per stream into this PNG")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--fused-json", metavar="OUT", help="export the fused vectors and anomaly scores as JSON")
    add_input_arguments(p)


def _holes(seq: np.ndarray) -> tuple[int, int, int]:
    """(missing samples, duplicate samples, number of holes) in a sorted seq array."""
    if len(seq) < 2:
        return 0, 0, 0
    d = np.diff(seq)
    return int(np.sum(d[d > 1] - 1)), int(np.sum(d == 0)), int(np.sum(d > 1))


def summarize(session: dict[str, Any]) -> dict[str, Any]:
    utc_map = None
    for name, md in session["metadata"]:
        if name == "synchub.session" and md.get("agent_utc_ns") and md.get("agent_mono_ns"):
            utc_map = int(md["agent_utc_ns"]) - int(md["agent_mono_ns"])
    for m in session["meta"]:  # a later, better UTC mapping from the agent wins
        off = (m.get("meta") or {}).get("utc_minus_mono_ns") if m.get("kind") == "update" else None
        if isinstance(off, int):
            utc_map = off
    gaps_by: dict[str, list] = {}
    for g in session["gaps"]:
        gaps_by.setdefault(g["stream"], []).append(g)
    resets: collections.Counter = collections.Counter()  # driver-reported clock resets (older files: device_reset gaps)
    for m in session["meta"]:
        meta = m.get("meta") or {}
        if meta.get("kind") == "evidence" and meta.get("type") == "reset":
            resets[meta.get("stream")] += 1
    for g in session["gaps"]:
        if g.get("cause") == "device_reset":
            resets[g["stream"]] += 1
    out = {"streams": [], "gap_records": len(session["gaps"]), "agents": sorted(session["agents"])}
    for name, s in sorted(session["streams"].items()):
        info = s["info"] or {}
        n = len(s["seq"])
        t = s["ref_ns"] if s["ref_ns"] is not None else s["host_ns"]
        t = t[t >= 0] if n else t
        missing, dups, holes = _holes(np.sort(s["seq"]))
        gl = gaps_by.get(name, [])
        row = {
            "name": name, "modality": info.get("type", "?"), "format": info.get("channel_format", "?"),
            "channels": info.get("channel_count"), "nominal_hz": info.get("nominal_srate"),
            "samples": n, "chunks": s["chunks"],
            "seq_first": int(s["seq"].min()) if n else None, "seq_last": int(s["seq"].max()) if n else None,
            "seq_missing": missing, "seq_holes": holes, "seq_duplicates": dups,
            "gap_records": len(gl), "gap_samples": int(sum(g["count"] for g in gl)),
            "gap_causes": sorted({g["cause"] for g in gl}), "clock_resets": resets[name],
            "corrected": s["ref_ns"] is not None,
            "methods": sorted(set(s["method"].tolist())) if n else [],
        }
        if len(t) >= 2:
            span = (int(t.max()) - int(t.min())) / 1e9
            row["measured_hz"] = round((len(t) - 1) / span, 3) if span > 0 else None
            row["t_first_ns"], row["t_last_ns"], row["duration_s"] = int(t.min()), int(t.max()), round(span, 6)
            if utc_map is not None:
                row["utc_first"] = iso(int(t.min()) + utc_map)
                row["utc_last"] = iso(int(t.max()) + utc_map)
        if s["unc_ns"] is not None and n:
            u = s["unc_ns"][s["unc_ns"] >= 0]
            if len(u):
                row["uncertainty_us_median"] = round(float(np.median(u)) / 1e3, 3)
        out["streams"].append(row)
    return out


def plot(session: dict[str, Any], png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(session["streams"])
    fig, ax = plt.subplots(figsize=(10, 1 + 0.6 * max(1, len(names))))
    t0 = None
    for s in session["streams"].values():
        t = s["ref_ns"] if s["ref_ns"] is not None else s["host_ns"]
        if len(t):
            t0 = int(t.min()) if t0 is None else min(t0, int(t.min()))
    t0 = t0 or 0
    for i, name in enumerate(names):
        s = session["streams"][name]
        t = s["ref_ns"] if s["ref_ns"] is not None else s["host_ns"]
        if len(t):
            step = max(1, len(t) // 20000)  # decimate long recordings (holes stay visible as breaks)
            ax.plot((t[::step] - t0) / 1e9, np.full(len(t[::step]), i), "|", markersize=8)
    for g in session["gaps"]:  # a red x where the sample after each recorded gap sits
        s = session["streams"].get(g["stream"])
        if s is None or not len(s["seq"]):
            continue
        t = s["ref_ns"] if s["ref_ns"] is not None else s["host_ns"]
        k = min(int(np.searchsorted(s["seq"], g["seq"])), len(t) - 1)
        ax.plot([(t[k] - t0) / 1e9], [names.index(g["stream"])], "x", color="red")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("time since first sample (s)")
    ax.set_title("synchub recording timeline")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def session_id(path: str) -> str:
    """The session a synchub MCAP file belongs to (its ``synchub.session`` metadata, written first); "" if none."""
    try:
        with open(path, "rb") as f:
            for i, rec in enumerate(StreamReader(f, validate_crcs=False).records):
                if isinstance(rec, Metadata) and rec.name == "synchub.session":
                    return str(rec.metadata.get("session", ""))
                if i > 1000:
                    break
    except Exception:  # noqa: BLE001 - not MCAP, torn: read_session reports it
        return ""
    return ""


def _read(files: list[str]) -> dict[str, Any]:
    try:
        return read_session(files)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is the user's problem to know about
        raise UserError(f"cannot read {', '.join(files)}: {type(exc).__name__}: {exc}") from None


def _summary(files: list[str]) -> dict[str, Any]:
    """One session's summary, read a record at a time (bounded memory)."""
    try:
        return summarize_streaming(files)
    except (InputError, CorruptMcap) as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - an unreadable file is the user's problem to know about
        raise UserError(f"cannot read {', '.join(files)}: {type(exc).__name__}: {exc}") from None


def sessions_summary(groups: dict[str, list[str]]) -> dict[str, Any]:
    """Several sessions: each one's summary (time order) and, per stream, the hole between consecutive ones."""
    out = [{"session": sid, "files": files, **_summary(files)} for sid, files in groups.items()]
    out.sort(key=lambda s: min((r["t_first_ns"] for r in s["streams"] if "t_first_ns" in r), default=0))
    holes = []
    for a, b in zip(out, out[1:], strict=False):
        first = {r["name"]: r["t_first_ns"] for r in b["streams"] if "t_first_ns" in r}
        for r in a["streams"]:
            if "t_last_ns" in r and r["name"] in first:
                holes.append({"after": a["session"], "before": b["session"], "stream": r["name"],
                              "seconds": round((first[r["name"]] - r["t_last_ns"]) / 1e9, 6)})
    return {"sessions": out, "holes": holes}


def run(args) -> int:
    if not mcap_only(args, args.files):
        return run_files(args.files, args)
    for f in args.files:
        if not os.path.isfile(f):
            raise UserError(f"no such file: {f}")
    if args.plot:
        require("matplotlib", "--plot")  # before reading a long recording
    groups: dict[str, list[str]] = {}
    for f in args.files:
        groups.setdefault(session_id(f), []).append(f)
    if len(groups) > 1 and not (args.plot or args.fused_json):
        many = sessions_summary(groups)
        if args.json:
            print(json.dumps(many, indent=2))
            return 0
        for s in many["sessions"]:
            _print_table(s["files"], s, False)
        for h in many["holes"]:
            print(f"hole between sessions {h['after']} and {h['before']}: {h['stream']} {h['seconds']:.3f} s")
        return 0
    session = None
    if args.plot or args.fused_json:
        session = _read(args.files)
        summary = summarize(session)
    else:  # a record at a time: bounded memory
        summary = _summary(args.files)
    if args.fused_json:
        if len(args.files) != 1:
            raise UserError("--fused-json takes one recording")
        try:
            n = export_fused_json(args.files[0], args.fused_json, session=session)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        print(f"{n} fused vectors written to {args.fused_json}", file=sys.stderr)
    if args.plot:
        plot(session, args.plot)
        summary["plot"] = args.plot
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    _print_table(args.files, summary, bool(args.plot))
    return 0


def _print_table(files: list[str], summary: dict[str, Any], plotted: bool) -> None:
    print(f"{', '.join(files)}: agents {', '.join(summary['agents']) or '?'}; "
          f"{len(summary['streams'])} streams; {summary['gap_records']} gap records")
    hdr = f"{'stream':16} {'type':9} {'fmt':8} {'ch':>4} {'nominal':>9} {'measured':>10} {'samples':>9} " \
          f"{'missing':>7} {'dups':>5} {'gaps':>5}  time range"
    print(hdr)
    for r in summary["streams"]:
        rng = f"{r.get('utc_first', r.get('t_first_ns', '-'))} .. {r.get('duration_s', 0):.3f} s" \
            if "t_first_ns" in r else "-"
        print(f"{r['name'][:16]:16} {r['modality'][:9]:9} {str(r['format'])[:8]:8} {str(r['channels']):>4} "
              f"{str(r['nominal_hz']):>9} {str(r.get('measured_hz', '-')):>10} {r['samples']:>9} "
              f"{r['seq_missing']:>7} {r['seq_duplicates']:>5} {r['gap_records']:>5}  {rng}")
    if plotted:
        print(f"timeline written to {summary['plot']}")
