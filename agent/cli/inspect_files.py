"""``synchub inspect`` on recordings synchub did not make (XDF, WAV/FLAC, CSV/TSV, MCAP through the file engine's
readers, streaming): per stream its format, type, channels, nominal and measured rate, samples, time range on its
own clock, clock timelines, XDF ClockOffsets and their segments, sync pulses found; warnings.  Bad inputs: one line,
exit status 2."""

from __future__ import annotations

import json

from synchub.agent.align.files.engine import FileAlignment
from synchub.agent.align.files.reference import AlignError
from synchub.agent.formats.readers.base import InputError
from synchub.errors import UserError

from .inputs import specs_of
from .progress import ProgressLine


def run_files(files: list[str], args) -> int:
    if args.plot or args.fused_json:
        raise UserError("--plot and --fused-json read synchub recordings; for these inputs use "
                        "`synchub align ... --plot PNG`")
    specs, _ = specs_of(args, files)
    progress = ProgressLine()
    try:
        summary = FileAlignment(specs, progress=progress).inspect()
    except (InputError, AlignError, ValueError) as exc:
        raise UserError(str(exc)) from None
    finally:
        progress.close()
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print(f"{len(summary['inputs'])} input(s); {len(summary['streams'])} streams")
    print(f"{'stream':24} {'format':11} {'type':9} {'fmt':8} {'ch':>4} {'nominal':>9} {'measured':>10} {'samples':>9} "
          f"{'clocks':>6}  time range (s, own clock)  evidence")
    for r in summary["streams"]:
        rng = f"{r['first_s']:.3f} .. {r['last_s']:.3f}" if "first_s" in r else "-"
        measured = f"{r['measured_rate_hz']:.3f}" if "measured_rate_hz" in r else "-"
        ev = []
        if "clock_offsets" in r:
            ev.append(f"{r['clock_offsets']} clock offsets in {len(r.get('clock_segments') or [])} segment(s)")
        if "sync_pulses" in r:
            ev.append(f"{r['sync_pulses']} sync pulses")
        print(f"{r['name'][:24]:24} {r['format'][:11]:11} {str(r['type'])[:9]:9} {str(r['channel_format'])[:8]:8} "
              f"{r['channels']:>4} {r['nominal_rate_hz']:>9g} {measured:>10} {r['samples']:>9} "
              f"{r['clock_timelines']:>6}  {rng:25} {'; '.join(ev)}")
    for w in summary.get("warnings", []):
        print(f"warning: {w}")
    return 0
