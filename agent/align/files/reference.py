"""The reference clock and how each input reaches it: the second half of ``synchub align``'s first pass.

``ReferenceLinks`` (a part of ``engine.FileAlignment``) picks the reference (``ref``: a stream key; default the
first XDF or MCAP input's clock, else the first input's) and gives every other input a ``links.Link``: by its
sync edges paired with an input already tied (the reference's first), else, where its ``align`` option allows, by
the aligner on the pair of streams it knows best (``aligner_links``; one more read of those two streams), else an
``AlignError`` naming the file and why.  ``align = "none"`` takes the file's clock as the reference's.  When
``ref`` names a stream with a clock of its own (an XDF stream with ClockOffsets, a synchub stream), the reference
clock is that stream's: its file's clock goes through the inverse of the stream's mapping (``_inverse``).

Priors (the expected reference - file time, ``_prior``): ``offset_s`` when given; for edges, the files started
together (TPrime's common start: it picks among a periodic train's pairings); for the aligner, the same clock where
the times overlap, else a common start.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synchub.agent.clock.choice import UNKNOWN_UNC_NS
from synchub.agent.clock.layer import StreamClocks
from synchub.agent.core.stream import Chunk
from synchub.agent.formats.readers.base import GapRecord, InputOptions, Offset, Piece, Reset

from ..markers import MarkerRule, rules_from
from .aligner_links import AlignerLinks, leading
from .links import Link, edge_link
from .tracks import StreamTrack

NS = 1_000_000_000

class AlignError(ValueError):
    """A stream or input that cannot be aligned: one line naming the file and the reason."""


@dataclass
class InputSpec:
    """An input: one file, or the part files of one synchub session; and its options."""

    paths: list[str]
    options: InputOptions = field(default_factory=InputOptions)
    rules: tuple[MarkerRule, ...] = field(init=False, default=())  # its ``markers``, checked

    def __post_init__(self) -> None:
        try:
            self.rules = rules_from(self.options.markers)
        except (TypeError, ValueError) as exc:
            where = self.paths[0] if self.paths else "input"
            raise AlignError(f"{where}: markers: {exc}") from None


@dataclass
class _Input:
    index: int
    spec: InputSpec
    reader: object
    tracks: dict[str, StreamTrack]
    clocks: StreamClocks | None = None
    feeder: Any = None  # engine.SessionFeed of a synchub session
    link: Link | None = None

    @property
    def path(self) -> str:
        return self.spec.paths[0]


class ReferenceLinks(AlignerLinks):
    """See the module docstring (mixed into ``FileAlignment``, whose ``inputs`` it reads)."""

    inputs: list
    warnings: list[str]
    ref_input: _Input | None
    ref_track: StreamTrack | None

    def _by_key(self, key: str) -> tuple[_Input, StreamTrack] | None:
        for inp in self.inputs:
            for k, tr in inp.tracks.items():
                if key in (k, tr.fs.key):
                    return inp, tr
        return None

    def _read(self, inp: _Input, evidence: bool, streams: set[str] | None = None) -> Iterator:
        """The input's items with stream keys renamed as ``tracks`` has them."""
        rename = {tr.fs.key: k for k, tr in inp.tracks.items()}
        for item in inp.reader.read(evidence=evidence, streams=None if streams is None else
                                    {tr.fs.key for k, tr in inp.tracks.items() if k in streams}):
            if isinstance(item, Piece | Offset | Reset | GapRecord):
                item = dataclasses.replace(item, stream=rename.get(item.stream, item.stream))
            yield item

    def _choose_reference(self) -> None:
        if self.ref_key:
            found = self._by_key(self.ref_key)
            if found is None:
                known = ", ".join(k for inp in self.inputs for k in inp.tracks)
                raise AlignError(f"no stream {self.ref_key!r} to use as the reference (streams: {known})")
            self.ref_input, tr = found
            if not tr.fs.on_file_clock or tr.xdf is not None or tr.clocks is not None:
                self.ref_track = tr
        else:
            firsts = [inp for inp in self.inputs if inp.reader.kind in ("xdf", "mcap", "mcap-json")]
            self.ref_input = firsts[0] if firsts else self.inputs[0]
        self.ref_input.link = Link("reference")

    # ---- links
    def _global(self, inp: _Input, tr: StreamTrack, file_t: np.ndarray, timeline: np.ndarray):
        """File-clock times of ``inp`` on the reference clock: its link (edges, aligner: made against reference
        times already), or, for the reference input's clock, the reference stream's inverse when there is one."""
        g, unc = inp.link.map(file_t, timeline)
        if self.ref_track is not None and inp.link.method == "reference":
            g = self._inverse(g)
        return g, unc

    def _inverse(self, file_t: np.ndarray) -> np.ndarray:
        """File-clock times of the reference input -> the reference stream's own clock (Newton on its map)."""
        tr = self.ref_track
        d = np.asarray(file_t, dtype=np.int64).copy()
        for _ in range(4):
            if tr.xdf is not None:
                segs = np.full(len(d), len(tr.xdf.model.segments) - 1, dtype=np.int32)
                f, _, _ = tr.xdf.model.map(d, segs, smooth=True)
            else:
                f = tr.clocks.correct(Chunk(tr.key, 0, np.zeros((len(d), 0)), d, d), smooth=True).ref_ns
            d = d - (f - file_t)
        return d

    def _edges(self, inp: _Input) -> tuple[StreamTrack, list] | None:
        best = max(inp.tracks.values(), key=lambda t: len(t.pulses), default=None)
        if best is None or not best.pulses:
            return None
        return best, best.edges()

    def _prior(self, inp: _Input, ref_range: tuple[int, int] | None, overlap_is_zero: bool = True) -> int:
        """The expected reference - file time: ``offset_s`` when given; else the files started together (TPrime's
        common start), or, for the aligner, the clocks are the same where their times overlap."""
        if inp.spec.options.offset_s is not None:
            return int(round(inp.spec.options.offset_s * NS))
        firsts = [tr.first_ns for tr in inp.tracks.values() if tr.first_ns is not None]
        lasts = [tr.last_ns for tr in inp.tracks.values() if tr.last_ns is not None]
        if not firsts or ref_range is None:
            return 0
        a, b = min(firsts), max(lasts)
        if overlap_is_zero and a <= ref_range[1] and ref_range[0] <= b:
            return 0
        return ref_range[0] - a

    def _ref_range(self) -> tuple[int, int] | None:
        ts = [(tr.first_ns, tr.last_ns) for tr in self.ref_input.tracks.values() if tr.first_ns is not None]
        return (min(a for a, _ in ts), max(b for _, b in ts)) if ts else None

    def _link(self) -> None:
        pending = [inp for inp in self.inputs if inp.link is None]
        for inp in pending:
            if inp.spec.options.align == "none":
                inp.link = Link("reference", notes=["align = none: its clock is taken as the reference's"])
        progress = True
        while progress:
            progress = False
            for inp in [i for i in self.inputs if i.link is None]:
                mine = self._edges(inp)
                if mine is None or inp.spec.options.align not in ("auto", "edges"):
                    continue
                for other in sorted((i for i in self.inputs if i.link is not None),
                                    key=lambda i: i is not self.ref_input):
                    theirs = self._edges(other)
                    if theirs is None:
                        continue
                    link = self._edge_link(inp, mine, other, theirs)
                    if link.models:
                        inp.link = link
                        progress = True
                        break
        for inp in [i for i in self.inputs if i.link is None]:
            if inp.spec.options.align in ("auto", "hybrid", "neural", "classical"):
                self._aligner_link(inp)
            if inp.link is None or (not inp.link.models and inp.link.method != "reference"):
                raise nothing_to_align(inp, "no sync edges found")

    def _edge_link(self, inp: _Input, mine, other: _Input, theirs) -> Link:
        tr, edges = mine
        otr, oedges = theirs
        ft, _ = tr.edge_file_times(edges)
        src: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for k in sorted({e.timeline for e in edges}):
            sel = np.array([e.timeline == k for e in edges])
            src[k] = (ft[sel], np.array([e.width_ns for e in edges])[sel])
        oft, _ = otr.edge_file_times(oedges)
        tl = np.array([e.timeline for e in oedges], dtype=np.int64)
        g, _ = self._global(other, otr, oft, tl)
        ref = (g, np.array([e.width_ns for e in oedges], dtype=np.int64))
        sample = max(tr.period_ns, otr.period_ns)
        sigma = float(np.hypot(tr.edge_sigma_ns, otr.edge_sigma_ns))
        ref_range = self._ref_range() if other is self.ref_input else (int(g.min()), int(g.max()))
        steps = float(np.hypot(tr.step_sigma_ns(edges), otr.step_sigma_ns(oedges)))
        link = edge_link(f"{inp.path}", src, ref, sigma, self._prior(inp, ref_range, overlap_is_zero=False), sample,
                         inp.spec.options.barcode or other.spec.options.barcode, steps)
        link.via = f"{tr.key} -> {otr.key}"
        return link

    def _pieces_global(self, inp: _Input, tr: StreamTrack, to_ref: bool, mapped_only: bool = False,
                       timeline: int | None = None) -> Iterator[tuple[np.ndarray, object]]:
        """``tr``'s pieces: (file or reference-clock times, data), without its sync channel where it has others (a
        stereo recorder's TTL beside its microphone: the aligner heard the pulses); ``mapped_only``: without the
        samples no model maps (a timeline the link did not reach); ``timeline``: only that timeline's samples."""
        tr.restart()
        for p in self._read(inp, evidence=False, streams={tr.key}):
            if p.stream != tr.key:
                continue
            _, ft, _, tl, _ = tr.file_times(p)
            data = p.data if isinstance(p.data, list) else np.asarray(p.data, dtype=np.float32)
            if tr.sync is not None and not isinstance(data, list) and data.ndim == 2 and data.shape[1] > 1:
                data = np.delete(data, tr.sync[0], axis=1)  # the sync channel's pulses are not what the sensor saw
            if timeline is not None and not np.all(mine := tl == timeline):
                ft, tl, data = ft[mine], tl[mine], _take(data, mine)
            if to_ref:
                ft, unc = self._global(inp, tr, ft, tl)
                if mapped_only and not np.all(known := unc < UNKNOWN_UNC_NS):
                    ft, data = ft[known], _take(data, known)
            if len(ft):
                yield ft, data
        tr.restart()


def _take(data, keep: np.ndarray):
    """The samples of a piece's data (rows, or a list of lines) where ``keep``."""
    return [x for x, k in zip(data, keep, strict=True) if k] if isinstance(data, list) else data[keep]


def nothing_to_align(inp: _Input, default: str) -> AlignError:
    """The one-line refusal of an input with no usable link: the link's first notes and any that says what to try
    (``--offset-s``), else ``default``."""
    why = "; ".join(leading(inp.link.notes if inp.link else [], 3)) or default
    return AlignError(f"{inp.path}: nothing to align on ({why})")
