"""Aligning recordings synchub did not make (XDF, audio, CSV/TSV) and synchub's own MCAP sessions: the engine.

    fa = FileAlignment([InputSpec(["rec.xdf"]), InputSpec(["audio.wav"], InputOptions(sync_kind="click"))],
                       ref="audio")
    fa.gather()                 # pass 1: evidence, models, links (raises InputError / AlignError, one line)
    report = fa.write("out.xdf")   # pass 2: every stream on the reference clock (or fa.write(None): report only)
    fa.plot("align.png")

**Pass 1** reads every input once (``tracks.StreamTrack.gather``): XDF ClockOffsets, a synchub session's
recorded evidence (``replay_stream.StreamFeeder`` into the agent's ``StreamClocks``), dejitter lines, sync pulses.
Then each input's streams get their within-file mapping (``StreamTrack.build``) and each input a ``Link`` to the
reference clock (``reference.ReferenceLinks``: sync edges, else the aligner).

**Pass 2** (``write``) reads the inputs again and writes each piece with its reference times (``file_output``);
the report (``report``) says per stream how it was mapped, its offset, drift, segments, uncertainty and what was
rejected.  Memory: bounded by a piece and the evidence (pulses, offsets), whatever the length of the inputs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from synchub.agent.clock.choice import UNKNOWN_UNC_NS
from synchub.agent.clock.layer import StreamClocks
from synchub.agent.clock.replay import offset_judgement
from synchub.agent.clock.replay_stream import StreamFeeder
from synchub.agent.clock.settings import ClockLayerConfig
from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.stream import StreamInfo
from synchub.agent.formats.file_output import atomic_output, check_output, writer_for
from synchub.agent.formats.readers.base import (
    GapRecord,
    InputError,
    InputOptions,
    Offset,
    Piece,
    Recorded,
    Reset,
    check_readable,
    stem_of,
)
from synchub.agent.formats.readers.mcap_parts import McapInput
from synchub.agent.formats.readers.opening import open_input
from synchub.extras import require

from .reference import AlignError, InputSpec, ReferenceLinks, _Input, nothing_to_align
from .report import StreamStats, input_warnings, plot, reset_warning
from .tracks import StreamTrack

log = logging.getLogger(__name__)
NS = 1_000_000_000
EXPORT_METHOD = {"reference": "identity", "none": "identity", "edges": "triggers", "barcodes": "triggers",
                 "hybrid": "hybrid", "neural": "neural", "classical": "classical"}


def _open(spec: InputSpec):
    if len(spec.paths) > 1:
        for p in spec.paths:
            check_readable(p)
        return McapInput(spec.paths, spec.options)
    return open_input(spec.paths[0], spec.options)


class SessionFeed:
    """A synchub session's clock layer rerun two-sided as the session is read (bounded memory): the recorded clock
    config's ``StreamClocks`` fed by a ``StreamFeeder`` with each item ``McapInput.read(evidence=True)`` yields,
    the aligner offsets as ``replay.offset_judgement`` has them over all of the session's ``evidence``
    (``McapInput.evidence_items``: left out or reweighed, as ``replay.feed_offline`` does); after ``finish()``,
    ``clocks.correct(chunk, smooth=True)`` maps any piece as ``replay`` would."""

    def __init__(self, infos: dict[str, StreamInfo], clock_config: dict, evidence=()):
        self.streams = set(infos)
        self.clocks = StreamClocks(infos, ClockLayerConfig.from_dict(clock_config))
        self.feeder = StreamFeeder(self.clocks)
        self.verdict, self.offsets_left_out = offset_judgement(evidence)

    def take(self, item) -> None:
        if isinstance(item, Piece) and item.host_ns is not None and item.stream in self.streams:
            self.feeder.samples(item.stream, item.seq, item.device_ns, item.host_ns)
        elif isinstance(item, Reset):
            self.feeder.reset(item.stream, item.seq)
        elif isinstance(item, Recorded):
            ev = item.item
            if isinstance(ev, OffsetEstimate) and ev in self.verdict:
                ev = self.verdict[ev]
            if ev is not None:
                self.feeder.evidence(ev)

    def finish(self) -> None:
        self.feeder.finish()


def _distinct_names(inputs: list[_Input], names: dict[str, int]) -> list[tuple[_Input, str, str]]:
    """New names for the streams two inputs share a name of: ``<file stem>.<name>``; where that is shared too (a
    ``rec.wav`` and a ``rec.csv``, each one stream named ``rec``), the file's name (``rec.wav``, or
    ``<file name>.<name>``), else the input's number after the file's name (``rec.csv#3``).  (input, old name, new
    name) for each."""
    taken = {k for k, n in names.items() if n == 1}
    todo = [(inp, key) for inp in inputs for key in inp.tracks if names[key] > 1]

    def form(inp: _Input, key: str, level: int) -> str:
        name, own = Path(inp.path).name, key == stem_of(inp.path)
        return (f"{stem_of(inp.path)}.{key}", name if own else f"{name}.{key}",
                f"{name}#{inp.index + 1}" + ("" if own else f".{key}"))[level]

    level = dict.fromkeys(range(len(todo)), 0)
    while True:
        new = [form(inp, key, level[i]) for i, (inp, key) in enumerate(todo)]
        bad = [i for i, n in enumerate(new) if n in taken or new.count(n) > 1]
        if not bad or all(level[i] == 2 for i in bad):
            return [(inp, key, n) for (inp, key), n in zip(todo, new, strict=True)]
        for i in bad:
            level[i] = min(level[i] + 1, 2)


class FileAlignment(ReferenceLinks):
    """See the module docstring.  ``progress(stage, input path, fraction)`` is called as inputs are read (per
    piece; ``fraction`` of the file read, or None where the reader cannot tell)."""

    def __init__(self, specs: list[InputSpec], ref: str | None = None,
                 progress: Callable[[str, str, float], None] | None = None, window_s: float = 120.0,
                 calibrated: bool = True):
        if not specs:
            raise AlignError("no inputs")
        self.calibrated = calibrated  # ``ReferenceLinks.calibrated``
        self.progress = progress or (lambda *a: None)
        self.window_s = window_s
        self.warnings: list[str] = []
        self.inputs: list[_Input] = []
        names: dict[str, int] = {}
        for i, spec in enumerate(specs):
            reader = _open(spec)
            self.warnings += getattr(reader, "warnings", [])
            single = len(reader.streams) == 1
            tracks = {}
            for fs in reader.streams:
                names[fs.key] = names.get(fs.key, 0) + 1
                tracks[fs.key] = StreamTrack(fs, spec.options, reader.kind, single)
            self.inputs.append(_Input(i, spec, reader, tracks))
        for inp, key, new in _distinct_names(self.inputs, names):
            tr = inp.tracks.pop(key)
            tr.key = new
            tr.info = dataclasses.replace(tr.info, name=new)
            inp.tracks[new] = tr
        self.ref_key = ref
        self.ref_input: _Input | None = None
        self.ref_track: StreamTrack | None = None
        self._gathered = False
        self.stats: dict[str, StreamStats] = {}

    # ------------------------------------------------------------------ pass 1
    def gather(self) -> None:
        """Pass 1: evidence, within-file models, the reference and every input's link."""
        self._gather_inputs()
        if not any(tr.n for inp in self.inputs for tr in inp.tracks.values()):
            raise AlignError(f"{self.inputs[0].path}: no samples in any input")
        self._choose_reference()
        self._link()
        self.warnings += [reset_warning(inp.path, tr.key, tr.split.starts, inp is self.ref_input)
                          for inp in self.inputs for tr in inp.tracks.values() if tr.split.starts]
        self._gathered = True

    def inspect(self) -> dict:
        """Pass 1 without linking (``synchub inspect``): what each input holds, stream by stream."""
        self._gather_inputs()
        rows = []
        for inp in self.inputs:
            for tr in inp.tracks.values():
                row = {"name": tr.key, "input": inp.path, "format": inp.reader.kind, "type": tr.info.type,
                       "channel_format": tr.info.channel_format, "channels": tr.info.channel_count,
                       "nominal_rate_hz": tr.info.nominal_srate, "samples": tr.n,
                       "clock_timelines": tr.timelines + 1 if tr.n else 0,
                       "out_of_time_order": tr.split.out_of_order}
                if tr.n:
                    row["first_s"], row["last_s"] = tr.first_ns / NS, tr.last_ns / NS
                    span = (tr.last_ns - tr.first_ns) / NS
                    if span > 0 and tr.n > 1:
                        row["measured_rate_hz"] = (tr.n - 1) / span
                if tr.offsets:
                    row["clock_offsets"] = len(tr.offsets)
                    row["clock_segments"] = tr.xdf.report() if tr.xdf is not None else []
                if tr.finder is not None:
                    row["sync_pulses"] = len(tr.pulses)
                rows.append(row)
        return {"inputs": [i.spec.paths for i in self.inputs], "streams": rows, "warnings": self.warnings}

    def _gather_inputs(self) -> None:
        for inp in self.inputs:
            if inp.reader.kind == "mcap":
                inp.feeder = SessionFeed({k: tr.info for k, tr in inp.tracks.items()}, inp.reader.clock_config,
                                         inp.reader.evidence_items())
                inp.clocks = inp.feeder.clocks
            self.progress("evidence", inp.path, 0.0)
            for item in self._read(inp, evidence=True):
                self.progress("evidence", inp.path, getattr(inp.reader, "fraction", None))
                if inp.feeder is not None:
                    inp.feeder.take(item)
                if isinstance(item, Piece):
                    tr = inp.tracks.get(item.stream)
                    if tr is not None:
                        tr.gather(item)
                elif isinstance(item, Offset):
                    inp.tracks[item.stream].offsets.append((item.collection_ns, item.offset_ns))
            if inp.feeder is not None:
                inp.feeder.finish()
            self.warnings += input_warnings(inp.path, getattr(inp.reader, "stats", None) or {})
            for tr in inp.tracks.values():
                tr.finish()
                if tr.split.out_of_order:
                    self.warnings.append(f"{inp.path}: {tr.key}: {tr.split.out_of_order} samples out of time order "
                                         "(kept, each at its own time, on its clock timeline)")
                tr.build(self.window_s)
                tr.clocks = inp.clocks if inp.reader.kind == "mcap" else None
            self.progress("evidence", inp.path, 1.0)

    # ------------------------------------------------------------------ pass 2
    def infos(self) -> list[StreamInfo]:
        return [tr.info for inp in self.inputs for tr in inp.tracks.values()]

    def write(self, out=None) -> dict:
        """Pass 2: every piece on the reference clock into ``out`` (``.xdf``/``.mcap``; None: the report only)."""
        if not self._gathered:
            self.gather()
        self.stats = {tr.key: StreamStats() for inp in self.inputs for tr in inp.tracks.values()}
        self.gaps: dict[str, dict[str, int]] = {}
        if out is None:
            self._pass(None)
            self._check_mapped()
            return self.report()
        check_output(out)
        with atomic_output(out) as fh:
            w = writer_for(out, fh, self.infos(), self._desc())
            self._pass(w)
            self._check_mapped()  # raising here leaves no output behind
            rep = self.report()
            rep["output"] = str(out)
            w.close(rep)
        return rep

    def _check_mapped(self) -> None:
        """An input whose link maps none of its samples (evidence too weak anywhere) had nothing to align on."""
        for inp in self.inputs:
            st = [self.stats[tr.key] for tr in inp.tracks.values()]
            if inp is not self.ref_input and sum(x.samples for x in st) and all(x.unknown == x.samples for x in st):
                raise nothing_to_align(inp, "no mapping for any sample")

    def _desc(self) -> dict[str, dict]:
        out = {}
        for inp in self.inputs:
            for tr in inp.tracks.values():
                out[tr.key] = {"method": self._method(inp, tr), "input": inp.path}
        return out

    def _method(self, inp: _Input, tr: StreamTrack) -> str:
        within = "xdf-clock-offsets" if tr.xdf is not None else ("synchub-clock-layer" if tr.clocks else "")
        link = inp.link.method if inp.link else "?"
        return "+".join(m for m in (within, link if link != "reference" or not within else "") if m) or link

    def _pass(self, w) -> None:
        for inp in self.inputs:
            for tr in inp.tracks.values():
                tr.restart()
            self.progress("write", inp.path, 0.0)
            for item in self._read(inp, evidence=False):
                self.progress("write", inp.path, getattr(inp.reader, "fraction", None))
                if isinstance(item, GapRecord):
                    g = self.gaps.setdefault(item.stream, {})
                    g[item.record.get("cause", "?")] = g.get(item.record.get("cause", "?"), 0) + int(
                        item.record.get("count", 0))
                    if w is not None:
                        w.gap(item.record)
                    continue
                if not isinstance(item, Piece) or item.n == 0:
                    continue
                tr = inp.tracks.get(item.stream)
                if tr is None:
                    continue
                d, ft, unc, tl, method = tr.file_times(item)
                g, lunc = self._global(inp, tr, ft, tl)
                total = np.where((unc >= UNKNOWN_UNC_NS) | (lunc >= UNKNOWN_UNC_NS), UNKNOWN_UNC_NS,
                                 np.sqrt(unc.astype(np.float64) ** 2 + lunc.astype(np.float64) ** 2)).astype(np.int64)
                self.stats[tr.key].add(d, g, total, self._method(inp, tr), UNKNOWN_UNC_NS)
                if w is not None:
                    out_method = EXPORT_METHOD.get(inp.link.method, "hybrid") if inp.link.method != "reference" \
                        else method
                    w.write(tr.key, item.seq, g, total, item.device_ns, ft, tl.astype(np.int32), out_method,
                            item.data)
            self.progress("write", inp.path, 1.0)

    # ------------------------------------------------------------------ report
    def report(self) -> dict:
        streams = []
        for inp in self.inputs:
            for tr in inp.tracks.values():
                s = {"name": tr.key, "input": inp.path, "format": inp.reader.kind, "type": tr.info.type,
                     "nominal_rate_hz": tr.info.nominal_srate, "method": self._method(inp, tr),
                     "reference": inp is self.ref_input and (self.ref_track is None or self.ref_track is tr)}
                if tr.key in self.stats:
                    s.update(self.stats[tr.key].summary())
                if inp.link is not None and inp.link.drift_sigma_ppm is not None and "drift_ppm" in s:
                    s["drift_sigma_ppm"] = inp.link.drift_sigma_ppm  # what the aligner's windows tell of the drift
                s["segments"] = self._segments(inp, tr)
                if tr.split.out_of_order:
                    s["out_of_time_order"] = tr.split.out_of_order  # kept, each at its own time
                if tr.key in getattr(self, "gaps", {}):
                    s["gaps_recorded"] = self.gaps[tr.key]  # samples the recording says were lost, by cause
                s["rejected"] = self._rejected(inp, tr)
                if tr.jitter is not None:
                    s["dejitter"] = tr.jitter.segments()[:16]
                if tr.finder is not None:
                    s["sync"] = {"channel": tr.sync[0], "kind": tr.sync[1], **({"bit": tr.sync[2]} if tr.sync[2]
                                                                                 is not None else {}),
                                 "pulses": len(tr.pulses),
                                 "levels": tr.finder.levels, "rejected": dict(tr.finder.stats)}
                if tr.xdf is not None:
                    s["clock_offsets"] = tr.xdf.report()
                if inp.link is not None and inp.link.method != "reference":
                    s["link"] = {"method": inp.link.method, "via": inp.link.via, "notes": inp.link.notes,
                                 "pairs": {k: {"pairs": p.n, "how": p.how, "unmatched": p.unmatched_src,
                                               "unmatched_reference": p.unmatched_ref}
                                           for k, p in inp.link.pairs.items()}}
                streams.append(s)
        ref = self.ref_track.key if self.ref_track is not None else f"the clock of {self.ref_input.path}"
        return {"reference": ref, "inputs": [i.spec.paths for i in self.inputs], "streams": streams,
                "warnings": self.warnings}

    @staticmethod
    def _segments(inp: _Input, tr: StreamTrack) -> list[dict]:
        if tr.xdf is not None:
            return tr.xdf.model.segments_info()
        if tr.clocks is not None:
            return tr.clocks.segments(tr.key)
        if inp.link is not None:
            return [dict(timeline=k, **s) for k, m in inp.link.models.items() for s in m.segments_info()]
        return []

    @staticmethod
    def _rejected(inp: _Input, tr: StreamTrack) -> dict:
        out: dict = {}
        if tr.xdf is not None:
            out.update(tr.xdf.model.rejected)
            if tr.xdf.rejected:
                out["clock_offset_spikes"] = tr.xdf.rejected
        if tr.clocks is not None:
            out.update(tr.clocks.state().get(tr.key, {}).get("rejected", {}))
        if inp.link is not None:
            for m in inp.link.models.values():
                for k, v in m.rejected.items():
                    out[f"link_{k}"] = out.get(f"link_{k}", 0) + v
        if getattr(inp.reader, "stats", None):
            out.update({f"input_{k}": v for k, v in inp.reader.stats.items()})
        return out

    def plot(self, png: str) -> None:
        curves = {}
        for inp in self.inputs:
            for tr in inp.tracks.values():
                st = self.stats.get(tr.key)
                c = st.curve.array(3)[:, :2] if st is not None else np.zeros((0, 2))
                res = {}
                if tr.xdf is not None:
                    t, r = tr.xdf.residuals()  # at recorder times: the collection time plus the offset
                    rec = t + tr.xdf.values_ns
                    if inp.link.method == "reference" and self.ref_track is not None:
                        rec = self._inverse(rec)
                    res["clock offsets"] = np.stack([rec, r], axis=1).astype(np.float64)
                curves[tr.key] = {"offset": c, "residuals": res}
            if inp.link is not None and inp.link.residuals:
                key = next(iter(inp.tracks))
                lr = np.asarray(inp.link.residuals, dtype=np.int64)
                g, _ = inp.link.map(lr[:, 0], np.zeros(len(lr), dtype=np.int64))
                curves[key]["residuals"][f"link ({inp.link.method})"] = np.stack([g, lr[:, 1]], 1).astype(np.float64)
        plot(curves, png)


def align_files(specs: list[InputSpec], ref: str | None = None, out=None, json_path=None, plot_path=None,
                progress=None) -> dict:
    """The whole job: both passes, the output, the JSON report and the plot (see ``FileAlignment``)."""
    if plot_path:
        require("matplotlib", "--plot")
    fa = FileAlignment(specs, ref, progress)
    fa.gather()
    rep = fa.write(out)
    if json_path:
        with atomic_output(json_path) as fh:
            fh.write(json.dumps(rep, indent=2, default=str).encode())
    if plot_path:
        fa.plot(plot_path)
    return rep


__all__ = ["AlignError", "FileAlignment", "InputError", "InputOptions", "InputSpec", "align_files"]
