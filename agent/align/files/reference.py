"""The reference clock and how each input reaches it: the second half of ``synchub align``'s first pass.

``ReferenceLinks`` (a part of ``engine.FileAlignment``) picks the reference (``ref``: a stream key; default the
first XDF or MCAP input's clock, else the first input's) and gives every other input a ``links.Link``: by its
sync edges paired with an input already tied (the reference's first), else, where its ``align`` option allows, by
the aligner on the pair of streams it knows best (``PAIRS``; one more read of those two streams), else an
``AlignError`` naming the file and why.  ``align = "none"`` takes the file's clock as the reference's.  When
``ref`` names a stream with a clock of its own (an XDF stream with ClockOffsets, a synchub stream), the reference
clock is that stream's: its file's clock goes through the inverse of the stream's mapping (``_inverse``).

Priors (the expected reference - file time, ``_prior``): ``offset_s`` when given; for edges, the files started
together (TPrime's common start: it picks among a periodic train's pairings); for the aligner, the same clock where
the times overlap, else a common start.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from synchub.agent.clock.choice import UNKNOWN_UNC_NS
from synchub.agent.clock.layer import StreamClocks
from synchub.agent.core.stream import Chunk
from synchub.agent.formats.readers.base import GapRecord, InputOptions, Offset, Piece, Reset

from ..coarse import EventTrain, coarse_offset
from ..markers import DEFAULT_RULES, MarkerRule, MarkerSemantics, rules_from
from ..onset_check import EventAverage
from ..window import modality_of, sigma_table
from .links import Link, aligner_link, edge_link
from .tracks import StreamTrack

NS = 1_000_000_000
#: an offset found over the whole recording (``align.coarse``) is searched around only this far from the prior (s)
COARSE_MOVE_S = 1.0
#: Modalities the aligner pairs best, best first (target modality, reference modality).
PAIRS = [("audio", "audio"), ("marker", "audio"), ("audio", "marker"), ("imu", "audio"), ("audio", "imu"),
         ("imu", "imu"), ("video", "audio"), ("marker", "video"), ("video", "marker"), ("marker", "imu"),
         ("imu", "video"), ("video", "imu"), ("other", "other")]


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


class ReferenceLinks:
    """See the module docstring (mixed into ``FileAlignment``, whose ``inputs`` it reads)."""

    #: aligner links' uncertainty scaled by the file engine's table (off: the model's own, at least one window's
    #: sigma, what ``bench align --real-files --fit-sigma`` fits that table on)
    calibrated = True

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

    def _pieces_global(self, inp: _Input, tr: StreamTrack, to_ref: bool,
                       mapped_only: bool = False) -> Iterator[tuple[np.ndarray, object]]:
        """``tr``'s pieces: (file or reference-clock times, data); ``mapped_only``: without the samples no model maps
        (a timeline the link did not reach)."""
        tr.restart()
        for p in self._read(inp, evidence=False, streams={tr.key}):
            if p.stream != tr.key:
                continue
            _, ft, _, tl, _ = tr.file_times(p)
            data = p.data if isinstance(p.data, list) else np.asarray(p.data, dtype=np.float32)
            if to_ref:
                ft, unc = self._global(inp, tr, ft, tl)
                if mapped_only and not np.all(known := unc < UNKNOWN_UNC_NS):
                    ft = ft[known]
                    data = [x for x, k in zip(data, known, strict=True) if k] if isinstance(data, list) else data[known]
            yield ft, data
        tr.restart()

    @functools.cached_property
    def _sigma_table(self):
        """The windows weighed as the live aligners weigh a real device's (the real-signal corpus's fitted table):
        loaded, and its encoders checked, once for every input the aligner ties."""
        return sigma_table(False)

    @functools.cached_property
    def _files_table(self):
        """What the aligner links' mapped uncertainty is calibrated by (``calibration.FILES_TABLE``): fitted on this
        engine's own output, where no arrival envelope bounds the windows' shared bias.  None where ``calibrated``
        is off."""
        return sigma_table(False, files=True) if self.calibrated else None

    def _aligner_link(self, inp: _Input) -> None:
        mode = inp.spec.options.align
        method = "hybrid" if mode == "auto" else mode
        linked = [i for i in self.inputs if i.link is not None and (i.link.models or i.link.method == "reference")]
        cands = []
        for rank, (tm, rm) in enumerate(PAIRS):
            for tr in inp.tracks.values():
                for other in linked:
                    for otr in other.tracks.values():
                        if tr.n and otr.n and tr.info.type == tm and otr.info.type == rm:
                            cands.append((rank, -self._heard(inp, tr, other, otr), other is not self.ref_input, tr,
                                          other, otr))
        notes: list[str] = []
        table = self._sigma_table if cands and method != "classical" else None
        for _, unheard, _, tr, other, otr in sorted(cands, key=lambda c: c[:3])[:3]:
            link = self._pair_link(inp, tr, other, otr, method, table)
            link.via = f"{tr.key} -> {otr.key}"
            if link.models:
                inp.link = link
                if not unheard and "marker" in (tr.info.type, otr.info.type):
                    why = ("none of its marker lines matches a marker rule: tied by the neural path alone, which "
                           "does not know what they mean (say it: --marker SENSES:REGEX)")
                    link.notes.insert(0, why)
                    self.warnings.append(f"{inp.path}: {link.via}: {why}")
                self._onset_check(inp, tr, other, otr)
                return
            notes += [f"aligner {tr.key} vs {otr.key}: " + "; ".join(leading(link.notes, 2))]
        empty = sorted(tr.key for tr in inp.tracks.values() if not tr.n)
        if not cands and empty:
            notes.append(f"no samples in {', '.join(empty)} (every row or sample left out: see the warnings)")
        elif not cands:
            notes.append("no stream pair the aligner knows (" + ", ".join(
                sorted({tr.info.type for tr in inp.tracks.values()})) + ")")
        inp.link = Link(method, notes=notes)

    def _heard(self, inp: _Input, tr: StreamTrack, other: _Input, otr: StreamTrack) -> int:
        """How many of a marker stream's lines (either side of the pair) log an event the other stream senses, by its
        marker rules: of a log's several text columns (a trial's condition, the stimulus played), the one that says
        what the sensor registers is tied first.  0 for a pair without a marker stream."""
        if (tr.info.type == "marker") == (otr.info.type == "marker"):
            return 0
        src, track, partner = (inp, tr, otr) if tr.info.type == "marker" else (other, otr, tr)
        semantics = MarkerSemantics(inp.spec.rules or other.spec.rules or DEFAULT_RULES)
        heard = 0
        for t, x in self._pieces_global(src, track, False):
            heard += len(semantics.events(t, x, modality_of(partner.info)).t_ns)
        return heard

    def _pair_link(self, inp: _Input, tr: StreamTrack, other: _Input, otr: StreamTrack, method: str, table) -> Link:
        """The aligner's link of ``tr`` to ``otr`` searched around the files' prior (``_prior``); where most of its
        windows found nothing and no ``offset_s`` was given, the offset of the two streams' whole event trains
        (``align.coarse``) searched around instead, where it is further than ``COARSE_MOVE_S`` from the prior: kept
        where it holds more windows."""
        prior = self._prior(inp, self._ref_range())
        link = self._aligned(inp, tr, other, otr, method, table, prior)
        if inp.spec.options.offset_s is not None or (link.models and len(link.residuals) >= 0.5 * link.windows):
            return link
        found = self._coarse(inp, tr, other, otr, link.semantics)
        if found is None:
            link.notes.append("no offset stands out over the whole recording either (its clock far from the "
                              "reference's? give --offset-s)")
        elif abs(found.offset_ns - prior) > COARSE_MOVE_S * NS:
            again = self._aligned(inp, tr, other, otr, method, table, found.offset_ns)
            if again.models and len(again.residuals) > len(link.residuals):
                again.notes.insert(0, f"{_far(found.offset_ns)} (where {found.matched} events of the whole "
                                      f"recording line up; --offset-s {found.offset_ns / NS:.3f} sets it)")
                return again
        return link

    def _aligned(self, inp: _Input, tr: StreamTrack, other: _Input, otr: StreamTrack, method: str, table,
                 prior: int) -> Link:
        """One pass of the aligner's windows over the pair, searched around ``prior``; where they said the neural
        path is out of its depth (``align.disagreement``), once more with the classical correlation alone: that
        link where it holds more windows, with the reason."""
        link = aligner_link(inp.path, otr.info, tr.info, self._pieces_global(other, otr, True),
                            self._pieces_global(inp, tr, False), prior, method, table=table,
                            out_table=self._files_table if table is not None and method == "hybrid" else None,
                            markers=inp.spec.rules or other.spec.rules)
        if not link.out_of_depth:
            return link
        alone = self._aligned(inp, tr, other, otr, "classical", None, prior)
        if not alone.models or len(alone.residuals) <= len(link.residuals):
            link.notes.append(f"{link.out_of_depth}: fewer windows, not used")
            return link
        alone.notes.insert(0, link.out_of_depth)
        return alone

    def _coarse(self, inp: _Input, tr: StreamTrack, other: _Input, otr: StreamTrack, semantics):
        """``coarse.coarse_offset`` of the two streams' whole event trains (one more pass over both)."""
        trains = []
        for src, track, mapped, partner in ((other, otr, True, tr), (inp, tr, False, otr)):
            train = EventTrain(modality_of(track.info), modality_of(partner.info), semantics)
            for t, x in self._pieces_global(src, track, mapped):
                train.add(t, x)
            trains.append(train.finish())
        r, t = trains
        if not len(r) or not len(t):
            return None
        return coarse_offset(r, t, float(r[0] - t[-1]), float(r[-1] - t[0]))

    def _onset_check(self, inp: _Input, tr: StreamTrack, other: _Input, otr: StreamTrack) -> None:
        """A marker log tied to a microphone by the aligner: moved earlier where the microphone's average energy
        around its sounds' mapped onsets rises clearly before them (``align.onset_check``), one more pass over
        both streams."""
        link = inp.link
        sides = {tr.info.type: (inp, tr), otr.info.type: (other, otr)}
        if set(sides) != {"marker", "audio"} or link.semantics is None:
            return
        t, lines = [], []
        for ft, x in self._pieces_global(*sides["marker"], True, mapped_only=True):
            t.append(ft)
            lines += list(x)
        if not lines:
            return
        ev = link.semantics.events(np.concatenate(t), lines, "audio")
        avg = EventAverage(ev.t_ns)
        for ft, x in self._pieces_global(*sides["audio"], True, mapped_only=True):
            avg.add(ft, x)
        spread = float(np.median(ev.spread_ns)) if len(ev.spread_ns) else 0.0
        dep = avg.departure(limit_ns=3.0 * link.window_sigma_ns, spread_ns=spread)
        if dep is None or not (dep.shift_ns or dep.beyond_limit):
            return
        rise = f"the microphone's average energy rises {-dep.departure_ns / 1e6:.0f} ms before the {dep.events} " \
               "sounds' mapped onsets"
        link.hidden_ns = abs(dep.departure_ns) / 2.0  # what the average could not see may be as much again
        if dep.beyond_limit:
            link.notes.append(f"{rise}, further back than three window sigmas (a cue before each sound, or a bias "
                              "too large to move): not moved, half that added to its uncertainty")
            return
        link.shift_ns = dep.shift_ns if tr.info.type == "marker" else -dep.shift_ns
        link.notes.append(f"{rise} (onsets under loud background are found late): moved "
                          f"{'earlier' if link.shift_ns < 0 else 'later'} by that, half that added to its uncertainty")


def _far(offset_ns: int) -> str:
    """Where a file's clock is, said so that a user can check it: an offset, or, for a clock of dates and times
    (its offset decades), the date and time it read at the reference's zero."""
    if abs(offset_ns) < 10 * 365 * 86400 * NS:  # ten years
        return f"its clock is {offset_ns / NS:+.2f} s from the reference's"
    at = datetime.fromtimestamp(-offset_ns // NS, timezone.utc) + timedelta(microseconds=(-offset_ns % NS) // 1000)
    return f"its clock read {at.isoformat(timespec='milliseconds')} at the reference's zero"


def leading(notes: list[str], k: int) -> list[str]:
    """A refusal's reasons: the first ``k`` notes and any later one that says what to try (``--offset-s``)."""
    return notes[:k] + [n for n in notes[k:] if "--offset-s" in n]


def nothing_to_align(inp: _Input, default: str) -> AlignError:
    """The one-line refusal of an input with no usable link: the link's first notes and any that says what to try
    (``--offset-s``), else ``default``."""
    why = "; ".join(leading(inp.link.notes if inp.link else [], 3)) or default
    return AlignError(f"{inp.path}: nothing to align on ({why})")
