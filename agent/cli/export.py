"""``synchub export SESSION.mcap [PART.mcap ...] [--xdf OUT.xdf] [--csv DIR] [--npy DIR] [--foxglove OUT.mcap]
[--no-utc] [--json]``:
a synchub recording converted in one streaming pass (``synchub.agent.formats.export``): XDF for pyxdf, MNE and
LabRecorder users (corrected times, ClockOffsets to UTC for pyxdf's own ``synchronize_clocks``), CSV, and a folder of
``.npy`` files, an MCAP Foxglove plots (``synchub.agent.formats.foxglove``).  XDF and MCAP are written to a
temporary file next to OUT and renamed when complete."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from synchub.agent.formats.export import CsvExport, NpyExport, XdfExport, export_session
from synchub.agent.formats.foxglove import FoxgloveExport, UtcMap, utc_pairs
from synchub.agent.formats.mcap_layout import MAGIC
from synchub.agent.formats.mcap_read import CorruptMcap
from synchub.errors import UserError


def add_arguments(p) -> None:
    p.add_argument("files", nargs="+", metavar="SESSION.mcap", help="the recording (the parts of one session, in order)")
    p.add_argument("--xdf", metavar="OUT.xdf", help="write XDF (pyxdf.load_xdf(..., synchronize_clocks=True))")
    p.add_argument("--csv", metavar="DIR", help="write one CSV per stream (and _gaps.csv) into DIR")
    p.add_argument("--npy", metavar="DIR", help="write one folder of .npy files per stream into DIR")
    p.add_argument("--foxglove", metavar="OUT.mcap", help="write an MCAP Foxglove plots: JSON messages per sample, "
                   "log_time in UTC")
    p.add_argument("--no-utc", action="store_true", help="XDF: no ClockOffsets to UTC (stamps on the reference clock)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _check(args) -> None:
    if not (args.xdf or args.csv or args.npy or args.foxglove):
        raise UserError("nothing to write: give --xdf OUT.xdf, --csv DIR, --npy DIR and/or --foxglove OUT.mcap")
    inputs = set()
    for f in args.files:
        if not os.path.isfile(f):
            raise UserError(f"no such file: {f}")
        try:
            with open(f, "rb") as fh:
                head = fh.read(len(MAGIC))
        except OSError as exc:
            raise UserError(f"cannot read {f}: {exc.strerror or exc}") from None
        if head != MAGIC:
            raise UserError(f"{f} is not an MCAP file")
        inputs.add(Path(f).resolve())
    for out in (args.xdf, args.csv, args.npy, args.foxglove):
        if out and Path(out).resolve() in inputs:
            raise UserError(f"{out} is an input: choose another output")
    for opt in ("xdf", "foxglove"):
        if getattr(args, opt) and Path(getattr(args, opt)).is_dir():
            raise UserError(f"--{opt} {getattr(args, opt)} is a folder: give a file name")
    for d in (args.csv, args.npy):
        if d and Path(d).exists() and not Path(d).is_dir():
            raise UserError(f"{d} exists and is not a folder")


def _partial(out: str) -> str:
    """A temporary file next to ``out`` (renamed onto it when complete)."""
    p = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.partial-", dir=p.parent if str(p.parent) else ".")
    os.close(fd)
    return tmp


def run(args) -> int:
    _check(args)
    exporters, temps = [], {}
    try:
        if args.xdf:
            temps["xdf"] = _partial(args.xdf)
            exporters.append(XdfExport(temps["xdf"], utc=not args.no_utc))
        if args.csv:
            exporters.append(CsvExport(args.csv))
        if args.npy:
            exporters.append(NpyExport(args.npy))
        if args.foxglove:
            temps["foxglove"] = _partial(args.foxglove)
            exporters.append(FoxgloveExport(temps["foxglove"], UtcMap(utc_pairs(args.files))))
        summaries, counts = export_session(args.files, exporters)
        if counts.chunks == 0 and not summaries[0]["streams"]:
            raise UserError(f"no synchub streams in {', '.join(args.files)}")
    except BaseException as exc:  # no half-written file under any name: the temporary files go
        for tmp in temps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)
        if isinstance(exc, OSError):
            raise UserError(f"export failed: {exc}") from None
        if isinstance(exc, CorruptMcap):
            raise UserError(str(exc)) from None
        raise
    umask = os.umask(0)
    os.umask(umask)
    for opt, tmp in temps.items():
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private; the output gets the usual mode
        os.replace(tmp, getattr(args, opt))
    result = {"inputs": args.files, "parts": counts.parts, "torn_parts": counts.torn_parts, "chunks": counts.chunks,
              "samples": counts.samples, "gap_records": counts.gaps, "inferred_info": counts.inferred_info,
              "outputs": {k: v for k, v in zip([x for x in ("xdf", "csv", "npy", "foxglove") if getattr(args, x)],
                                              summaries, strict=True)}}
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(f"{', '.join(args.files)}: {counts.samples} samples in {counts.chunks} chunks, {counts.gaps} gap records"
          + (f"; {counts.torn_parts} part(s) torn, read up to the tear" if counts.torn_parts else ""))
    first = summaries[0]["streams"]
    for key, s in first.items():
        extra = f", {s['uncorrected']} uncorrected (host time)" if s["uncorrected"] else ""
        gaps = f", {s['gap_samples']} samples lost (gap records)" if s["gap_samples"] else ""
        print(f"  {key}: {s['samples']} samples{extra}{gaps}")
    outputs = result["outputs"]
    if args.xdf:
        print(f"XDF {args.xdf}: {outputs['xdf']['clock_offsets']} clock offsets per stream; times: "
              f"{outputs['xdf']['time']}")
    if args.foxglove:
        print(f"Foxglove MCAP {args.foxglove}: a JSON message per sample, log_time {outputs['foxglove']['log_time']}")
    for name in ("csv", "npy"):
        if getattr(args, name):
            print(f"{name.upper()} in {getattr(args, name)}/")
    return 0
