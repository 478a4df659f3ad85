"""A thin, temporary command line over the file alignment engine (``python -m synchub.agent.file_align_main``),
until ``synchub align`` / ``synchub inspect`` take these inputs (phase B of issue 13).

    python -m synchub.agent.file_align_main rec.xdf mic.wav --sync-kind click --ref mic --out out.xdf --json r.json
    python -m synchub.agent.file_align_main --manifest inputs.toml
    python -m synchub.agent.file_align_main --inspect rec.xdf

Per-file options given as flags apply to every input (a manifest sets them per file).  Errors a user can fix print
one line and exit with status 2; nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import sys

from synchub.agent.align.files.engine import AlignError, FileAlignment, InputSpec, align_files
from synchub.agent.formats.readers.base import InputError, InputOptions
from synchub.agent.formats.readers.manifest import load_manifest
from synchub.extras import MissingExtra

OPTION_FLAGS = ("format", "name", "time_col", "delimiter", "rate_hz", "type", "sync", "sync_kind",
                "sync_min_width_s", "sync_max_width_s", "sync_threshold", "offset_s", "align")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="file_align_main", description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="XDF, WAV/FLAC, CSV/TSV or MCAP files")
    p.add_argument("--manifest", help="a TOML manifest naming the inputs and their options")
    p.add_argument("--ref", help="the stream whose clock is the reference")
    p.add_argument("--out", help="write every stream on the reference clock here (.xdf or .mcap)")
    p.add_argument("--json", help="write the per-stream report here")
    p.add_argument("--plot", help="draw offsets and residuals over time into this PNG")
    p.add_argument("--inspect", action="store_true", help="list what the inputs hold; align nothing")
    p.add_argument("--session", action="store_true", help="the MCAP inputs are the parts of one session")
    for name in OPTION_FLAGS:
        p.add_argument("--" + name.replace("_", "-"), dest=name, default=None)
    p.add_argument("--barcode", action="store_true")
    p.add_argument("--no-dejitter", action="store_true")
    return p


def _options(args) -> InputOptions:
    d = {k: getattr(args, k) for k in OPTION_FLAGS if getattr(args, k) is not None}
    for k in ("rate_hz", "sync_min_width_s", "sync_max_width_s", "sync_threshold", "offset_s"):
        if k in d:
            d[k] = float(d[k])
    return InputOptions(barcode=args.barcode, dejitter=not args.no_dejitter, **d)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        ref, out, js, png = args.ref, args.out, args.json, args.plot
        if args.manifest:
            m = load_manifest(args.manifest)
            specs = [InputSpec(paths, opts) for paths, opts in m.inputs]
            ref, out, js, png = ref or m.reference, out or m.out, js or m.json, png or m.plot
        else:
            if not args.inputs:
                raise AlignError("no inputs (give files or --manifest)")
            opts = _options(args)
            if args.session:
                specs = [InputSpec(list(args.inputs), opts)]
            else:
                specs = [InputSpec([f], opts) for f in args.inputs]
        if args.inspect:
            rep = FileAlignment(specs).inspect()
        else:
            rep = align_files(specs, ref, out=out, json_path=js, plot_path=png)
    except (InputError, AlignError, MissingExtra, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.inspect or not js:
        print(json.dumps(rep, indent=2, default=str))
    else:
        for s in rep["streams"]:
            unc = s.get("uncertainty_us", {}).get("median")
            print(f"{s['name']:24} {s['method']:28} {s.get('samples', 0):>10} samples"
                  + (f"  median 1-sigma {unc:10.1f} us" if unc is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
