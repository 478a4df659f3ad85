"""``synchub align SESSION.mcap``: rerun the clock layer offline on a recording's stored raw times.

The agent corrects time live (causally, with a short delay).  Offline, the same ``StreamClocks`` sees every piece of
evidence before and after each sample (two-sided smoothing), as TPrime and IBL do after the fact.  The recording keeps
raw device and host times and the evidence the agent saw (``_evidence`` meta), so nothing is lost by correcting live.

The rerun is ``synchub.agent.clock.replay.replay``: the same calls the agent makes live, fed with the recorded chunks,
evidence and ``device_reset`` gaps; two-sided by default (the result does not depend on how the recording was
chunked), or causal with ``--live`` (each chunk corrected with what the agent knew ``correction_delay_ms`` after it
arrived).

Writes ``--out FILE.mcap``: the same recording with re-corrected ``ref_ns``/``unc_ns``/``segment``/``method`` (all
other records copied), and prints a per-stream summary of how far the offline correction moved each stream.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from synchub.agent.clock.layer import StreamClocks
from synchub.agent.clock.replay import correct_recording
from synchub.agent.clock.settings import ClockLayerConfig
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.formats.mcap_read import RawRecording, raw_recording, read_raw, read_session
from synchub.agent.formats.mcap_write import write_corrected
from synchub.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", help="MCAP recording written by the collector")
    p.add_argument("--out", help="write the re-corrected recording here (MCAP)")
    p.add_argument("--json", help="write the per-stream summary here")
    p.add_argument("--live", action="store_true", help="causal (one-sided) correction, as the agent does live")


def clock_inputs(raw: RawRecording) -> tuple[dict[str, StreamInfo], ClockLayerConfig, list, list[Chunk]]:
    """A recording's infos, its clock config (typed), evidence and raw chunks: ``correct_recording``'s arguments."""
    return raw.infos, ClockLayerConfig.from_dict(raw.clock_config), raw.evidence, raw.chunks


def rerun(path, smooth: bool = True) -> tuple[list[Chunk], StreamClocks]:
    return correct_recording(*clock_inputs(read_raw(path)), smooth=smooth)


def run(args) -> int:
    path = Path(args.session)
    if not path.exists():
        raise UserError(f"{path}: no such recording")
    try:
        data = read_session(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is the user's problem to know about
        raise UserError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    infos, config, evidence, chunks = clock_inputs(raw_recording(data))
    corrected, _ = correct_recording(infos, config, evidence, chunks, smooth=not args.live)
    live = data["streams"]
    summary = {"session": str(path), "evidence": len(evidence), "streams": []}
    for name in sorted(infos):
        mine = [c for c in corrected if c.stream == name]
        if not mine:
            continue
        ref = np.concatenate([c.ref_ns for c in mine])
        unc = np.concatenate([c.unc_ns for c in mine])
        moved = None
        if live[name]["ref_ns"] is not None and len(live[name]["ref_ns"]) == len(ref):
            moved = float(np.median(np.abs(ref - live[name]["ref_ns"])) / 1e3)
        summary["streams"].append({"name": name, "method": mine[-1].method, "samples": int(len(ref)),
                                   "median_unc_us": float(np.median(unc) / 1e3),
                                   "median_change_vs_live_us": moved})
        print(f"{name:10} {mine[-1].method:10} {len(ref):9d} samples  median 1-sigma {np.median(unc) / 1e3:9.1f} us"
              + (f"  moved {moved:9.1f} us vs live" if moved is not None else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    if args.out:
        write_corrected(path, args.out, corrected)
        print(f"re-corrected recording -> {args.out}")
    return 0
