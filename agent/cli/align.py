"""``synchub align INPUT... [--ref STREAM] [-o OUT] [--json J] [--plot P]``: every stream on one reference clock.

**Recordings synchub did not make** (XDF, WAV/FLAC, CSV/TSV, PsychoPy .log, MCAP, or a TOML ``--manifest``): the file engine
(``synchub.agent.align.files.engine``) reads each input twice, a piece at a time (bounded memory whatever the
length): XDF ClockOffsets fitted per clock segment (pyxdf's clock sync, resets found), sync pulses found in data
channels and paired across files (TPrime), the aligner where a file has neither, dejitter of regular streams.  It
writes ``--out`` (``.xdf`` for pyxdf/MNE, or ``.mcap``) with raw times kept, a ``--json`` report per stream
(method, offset, drift, segments, 1-sigma, what was rejected) and a ``--plot``.  A bad input is one line naming the
file and exit status 2, and no partial output is left behind.

**synchub's own recording** (only ``.mcap`` parts of one session and nothing only the engine does): the clock
layer rerun offline on the stored raw times.  The agent corrects time live (causally, with a short delay);
offline, the same ``StreamClocks`` sees every piece of evidence before and after each sample (two-sided
smoothing), as TPrime and IBL do after the fact: the session read twice, a chunk at a time (``rerun``: the same
numbers as ``synchub.agent.clock.replay.replay``, in bounded memory), or causal with ``--live`` (in memory).
``--out FILE.mcap`` is the same recording with re-corrected ``ref_ns``/``unc_ns``/``segment``/``method`` (all other
records copied); it prints how far the offline correction moved each stream.  Its ``--json`` report gives each
aligned stream's ``latency`` (``stream_latency``): the pair latency an earlier session stored and what the agent used
it for, what this session measured against the trigger path, from the agent's ``_latency`` record.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from synchub.agent.align.files.engine import align_files
from synchub.agent.align.files.reference import AlignError
from synchub.agent.clock.layer import StreamClocks
from synchub.agent.clock.replay import correct_recording
from synchub.agent.clock.settings import ClockLayerConfig
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.formats.file_output import atomic_output
from synchub.agent.formats.mcap_read import CorruptMcap, RawRecording, raw_recording, read_raw, read_session
from synchub.agent.formats.mcap_write import write_corrected
from synchub.agent.formats.readers.base import InputError
from synchub.agent.formats.readers.mcap_parts import McapInput
from synchub.errors import UserError

from .inputs import add_input_arguments, check_distinct, own_recording, specs_of
from .progress import ProgressLine
from .rerun import rerun_streamed


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="XDF, WAV/FLAC, CSV/TSV, PsychoPy .log/.csv, BrainVision .vhdr, EDF/BDF, SpikeGLX "
                        ".bin/.meta, Open Ephys structure.oebin, video/audio (MP4, MKV, MOV, AVI, WebM) or MCAP "
                        "files (a synchub session: its MCAP part files)")
    p.add_argument("--ref", "--reference", dest="ref", metavar="STREAM",
                   help="the stream whose clock is the reference (default: the first XDF/MCAP input's clock, else "
                        "the first input's)")
    p.add_argument("-o", "--out", help="write every stream on the reference clock here (.xdf or .mcap)")
    p.add_argument("--json", help="write the per-stream report here")
    p.add_argument("--plot", metavar="PNG", help="draw offsets and residuals over time into this PNG")
    p.add_argument("--live", action="store_true",
                   help="synchub recordings: causal (one-sided) correction, as the agent does live")
    add_input_arguments(p)


def clock_inputs(raw: RawRecording) -> tuple[dict[str, StreamInfo], ClockLayerConfig, list, list[Chunk]]:
    """A recording's infos, its clock config (typed), evidence and raw chunks: ``correct_recording``'s arguments."""
    return raw.infos, ClockLayerConfig.from_dict(raw.clock_config), raw.evidence, raw.chunks


def rerun(path, smooth: bool = True) -> tuple[list[Chunk], StreamClocks]:
    return correct_recording(*clock_inputs(read_raw(path)), smooth=smooth)


def run(args) -> int:
    files = list(args.inputs)
    if own_recording(args, files):
        return run_recording(files, args)
    if args.live:
        raise UserError("--live reruns synchub's own recordings (MCAP alone); it does not apply to these inputs")
    specs, manifest = specs_of(args, files)
    ref, out, js, png = args.ref, args.out, args.json, args.plot
    if manifest is not None:
        ref, out, js, png = ref or manifest.reference, out or manifest.out, js or manifest.json, png or manifest.plot
    for o in (out, js, png):
        check_distinct(o, specs)
    progress = ProgressLine()
    try:
        rep = align_files(specs, ref, out=out, json_path=js, plot_path=png, progress=progress)
    except (InputError, AlignError, ValueError) as exc:
        raise UserError(str(exc)) from None
    finally:
        progress.close()
    print(f"reference: {rep['reference']}")
    for s in rep["streams"]:
        unc = (s.get("uncertainty_us") or {}).get("median")
        print(f"{s['name']:24} {s['method']:28} {s.get('samples', 0):>10} samples"
              + (f"  median 1-sigma {unc:10.1f} us" if unc is not None else "  1-sigma unknown"))
    for w in rep.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    if out:
        print(f"aligned -> {out}")
    return 0


def run_recording(files: list[str], args) -> int:
    """The rerun of a synchub recording (see the module docstring): two-sided streamed (``rerun.rerun_streamed``),
    or causal (``--live``) in memory."""
    for f in files:
        if not Path(f).exists():
            raise UserError(f"{f}: no such recording")
    if len(files) > 1 and args.out:
        raise UserError("--out copies one recording file; a session in parts aligns with --session (the file "
                        "engine writes every stream into one new file)")
    corrected = None
    if args.live:
        summary = _live(files)
        corrected = summary.pop("_corrected")
    else:
        progress = ProgressLine()
        try:
            reader = McapInput(files)
            summary = {**rerun_streamed(reader, args.out, progress), "_latency": reader.latency}
        except (InputError, CorruptMcap) as exc:
            raise UserError(str(exc)) from None
        finally:
            progress.close()
    if not summary["streams"]:
        raise UserError(f"{', '.join(files)}: no synchub streams with samples in this MCAP")
    summary = {"session": [str(f) for f in files] if len(files) > 1 else str(files[0]), **summary}
    lat = stream_latency(summary.pop("_latency", {}))
    for s in summary["streams"]:
        s["latency"] = lat.get(s["name"])
        moved = s["median_change_vs_live_us"]
        print(f"{s['name']:10} {s['method']:10} {s['samples']:9d} samples  median 1-sigma {s['median_unc_us']:9.1f} us"
              + (f"  moved {moved:9.1f} us vs live" if moved is not None else ""))
        if s["latency"] and "stored_latency_ns" in s["latency"]:
            print(f"{'':10} aligner latency {s['latency']['stored_latency_ns'] / 1e6:.2f} ms stored by session "
                  f"{s['latency']['stored_session'] or '?'}: {s['latency']['use']}")
    if args.out and corrected is not None:  # before the report: a copy refused leaves nothing behind
        try:
            with atomic_output(args.out) as fo:
                write_corrected(files[0], fo, corrected)
        except CorruptMcap as exc:
            raise UserError(str(exc)) from None
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    if args.out:
        print(f"re-corrected recording -> {args.out}")
    return 0


def _live(files: list[str]) -> dict:
    """The causal rerun, as the agent corrected live: in memory (``replay``'s live corrector)."""
    try:
        data = read_session(files[0] if len(files) == 1 else files)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is the user's problem to know about
        raise UserError(f"cannot read {', '.join(files)}: {type(exc).__name__}: {exc}") from None
    infos, config, evidence, chunks = clock_inputs(raw_recording(data))
    corrected, _ = correct_recording(infos, config, evidence, chunks, smooth=False)
    live = data["streams"]
    streams = []
    for name in sorted(infos):
        mine = [c for c in corrected if c.stream == name]
        if not mine:
            continue
        ref = np.concatenate([c.ref_ns for c in mine])
        unc = np.concatenate([c.unc_ns for c in mine])
        moved = None
        if live[name]["ref_ns"] is not None and len(live[name]["ref_ns"]) == len(ref):
            moved = float(np.median(np.abs(ref - live[name]["ref_ns"])) / 1e3)
        streams.append({"name": name, "method": mine[-1].method, "samples": int(len(ref)),
                        "median_unc_us": float(np.median(unc) / 1e3), "median_change_vs_live_us": moved})
    lat = [m["meta"] for m in data["meta"] if (m.get("meta") or {}).get("kind") == "latency_calibration"]
    return {"evidence": len(evidence), "streams": streams, "_corrected": corrected, "_latency": lat[-1] if lat else {}}


def stream_latency(record: dict) -> dict[str, dict]:
    """Per aligned stream, from the agent's ``latency_calibration`` record (``_latency`` meta): the latency an
    earlier session stored for its aligner pair and what it was used for (an unwired stream's aligner estimates
    corrected by it; a trigger-wired stream's trigger fallback prior), what this session measured, and whether a
    trigger line also mapped it."""
    out: dict[str, dict] = {}
    uses = (("applied", "its aligner's estimates were corrected by it (no trigger)"),
            ("fallback", "its trigger fallback's prior (the aligner maps it only while its trigger is lost)"))
    for key, use in uses:
        for name, v in (record.get(key) or {}).items():
            out[name] = {"pair": v.get("pair"), "stored_latency_ns": v.get("latency_ns"),
                         "stored_sigma_ns": v.get("sigma_ns"), "stored_windows": v.get("n"),
                         "stored_session": v.get("session", ""), "stored_utc": v.get("measured_utc", ""), "use": use}
    for name in record.get("measuring") or ():
        out.setdefault(name, {})["trigger_wired"] = True
    for name, v in (record.get("measured") or {}).items():
        out.setdefault(name, {})["measured_this_session"] = v
    if out:
        for v in out.values():
            v.setdefault("trigger_wired", False)
            v["calibration_file"] = record.get("file", "")
    return out
