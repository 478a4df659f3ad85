"""How ``synchub align`` ties an input with no sync edges to one already tied: the aligner's links, a part of
``reference.ReferenceLinks`` (and so of ``engine.FileAlignment``).

``AlignerLinks._aligner_link`` tries the stream pairs it knows best (``PAIRS``; of a log's several marker columns,
the one whose lines the marker rules say the partner senses first), each searched around the files' prior, or around
the whole recordings' event-train offset where most windows found nothing (``align.coarse``), once more with the
classical correlation alone where the neural path is out of its depth (``align.disagreement``); a marker log tied to
a microphone is then checked against the average energy around its sounds (``align.onset_check``).
"""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import numpy as np

from ..coarse import SUPPORT_WIDTH_NS, EventTrain, coarse_fit, support
from ..disagreement import DISAGREE
from ..markers import DEFAULT_RULES, MarkerSemantics
from ..onset_check import BIN_NS, EventAverage
from ..window import modality_of, sigma_table
from .judge import DISPUTE_NOTE, STEP_NOTE
from .links import UNKNOWN_UNC_NS, Link, aligner_link

if TYPE_CHECKING:
    from .reference import _Input
    from .tracks import StreamTrack

NS = 1_000_000_000
NOT_TIED = "not tied: its samples are left unmapped"  # a timeline of a reset clock the aligner found nothing on
#: an offset found over the whole recording (``align.coarse``) is searched around only this far from the prior (s)
COARSE_MOVE_S = 1.0
#: Modalities the aligner pairs best, best first (target modality, reference modality).
PAIRS = [("audio", "audio"), ("marker", "audio"), ("audio", "marker"), ("imu", "audio"), ("audio", "imu"),
         ("imu", "imu"), ("video", "audio"), ("marker", "video"), ("video", "marker"), ("marker", "imu"),
         ("imu", "video"), ("video", "imu"), ("other", "other")]


class AlignerLinks:
    """The aligner's links (see the module docstring); reads the inputs and their pieces through the
    ``ReferenceLinks`` it is a part of."""

    #: aligner links' uncertainty scaled by the file engine's table (off: all the link says, k = 1 and g = 0, what
    #: ``bench align --real-files --fit-sigma`` fits that table on)
    calibrated = True

    inputs: list
    warnings: list[str]
    ref_input: _Input | None

    @functools.cached_property
    def _sigma_table(self):
        """The windows weighed as the live aligners weigh a real device's (the real-signal corpus's fitted table):
        loaded, and its encoders checked, once for every input the aligner ties."""
        return sigma_table(False)

    @functools.cached_property
    def _files_table(self):
        """What the aligner links' mapped uncertainty is calibrated by (``calibration.FILES_TABLE``): fitted on this
        engine's own output, where no arrival envelope bounds the windows' shared bias (which pairs it calibrates
        even where ``calibrated`` is off: their links' shared bias averages over minutes either way)."""
        return sigma_table(False, files=True)

    def _aligner_link(self, inp: _Input) -> None:
        mode = inp.spec.options.align
        method = "hybrid" if mode == "auto" else mode
        linked = [i for i in self.inputs if i.link is not None and (i.link.models or i.link.method == "reference")]
        cands = []
        heard: dict = {}  # (marker track, partner modality, rules) -> its lines the partner senses: one read each
        for rank, (tm, rm) in enumerate(PAIRS):
            for tr in inp.tracks.values():
                for other in linked:
                    for otr in other.tracks.values():
                        if tr.n and otr.n and tr.info.type == tm and otr.info.type == rm:
                            cands.append((rank, -self._heard(inp, tr, other, otr, heard), other is not self.ref_input,
                                          tr, other, otr))
        notes: list[str] = []
        table = self._sigma_table if cands and method != "classical" else None
        for _, unheard, _, tr, other, otr in sorted(cands, key=lambda c: c[:3])[:3]:
            link = self._pair_link(inp, tr, other, otr, method, table)
            link.via = f"{tr.key} -> {otr.key}"
            if link.models:
                inp.link = link
                self.warnings += [f"{inp.path}: {link.via}: {n}" for n in link.notes
                                  if STEP_NOTE in n or DISPUTE_NOTE in n or NOT_TIED in n]
                if not unheard and "marker" in (tr.info.type, otr.info.type):
                    why = ("none of its marker lines matches a marker rule: tied by the neural path alone, which "
                           "does not know what they mean (say it: --marker SENSES:REGEX)")
                    link.notes.insert(0, why)
                    self.warnings.append(f"{inp.path}: {link.via}: {why}")
                self._onset_check(inp, tr, other, otr)
                self._lossy(inp, link, (tr, otr))
                return
            notes += [f"aligner {tr.key} vs {otr.key}: " + "; ".join(leading(link.notes, 2))]
        empty = sorted(tr.key for tr in inp.tracks.values() if not tr.n)
        if not cands and empty:
            notes.append(f"no samples in {', '.join(empty)} (every row or sample left out: see the warnings)")
        elif not cands:
            notes.append("no stream pair the aligner knows (" + ", ".join(
                sorted({tr.info.type for tr in inp.tracks.values()})) + ")")
        inp.link = Link(method, notes=notes)

    def _heard(self, inp: _Input, tr: StreamTrack, other: _Input, otr: StreamTrack, cache: dict) -> int:
        """How many of a marker stream's lines (either side of the pair) log an event the other stream senses, by its
        marker rules: of a log's several text columns (a trial's condition, the stimulus played), the one that says
        what the sensor registers is tied first.  0 for a pair without a marker stream.  ``cache``: the counts so
        far (a log paired with several streams of one kind is read once)."""
        if (tr.info.type == "marker") == (otr.info.type == "marker"):
            return 0
        src, track, partner = (inp, tr, otr) if tr.info.type == "marker" else (other, otr, tr)
        rules = _rules(inp, other) or DEFAULT_RULES
        key = (track.key, modality_of(partner.info), rules)
        if key not in cache:
            semantics = MarkerSemantics(rules)
            pieces = self._pieces_global(src, track, False)
            cache[key] = sum(len(semantics.events(t, x, key[1]).t_ns) for t, x in pieces)
        return cache[key]

    def _pair_link(self, inp: _Input, tr: StreamTrack, other: _Input, otr: StreamTrack, method: str, table) -> Link:
        """The aligner's link of ``tr`` to ``otr``: of each timeline of ``tr``'s clock on its own where it was reset
        (a log whose times restart at a second run: its runs' times overlap, so windows over all of them mixed the
        runs, and the one model tied to one of them mapped the other's offset), joined (``_joined``)."""
        if not tr.timelines:
            return self._timeline_link(inp, tr, other, otr, method, table, None)
        return _joined([self._timeline_link(inp, tr, other, otr, method, table, k) for k in range(tr.timelines + 1)])

    def _timeline_link(self, inp: _Input, tr: StreamTrack, other: _Input, otr: StreamTrack, method: str, table,
                       timeline: int | None) -> Link:
        """The aligner's link of ``tr`` (its ``timeline``, or all) to ``otr`` searched around the files' prior
        (``_prior``); where most of its windows found nothing and no ``offset_s`` was given, the offset (and, where
        the clocks' rates differ more than a window's events allow, the rate) of the two streams' whole event trains
        (``coarse.coarse_fit``) searched around instead, where it is further than ``COARSE_MOVE_S`` from the prior:
        kept where it holds more windows; the first link, not confirmed so, kept only beyond chance
        (``_beyond_chance``)."""
        prior = self._prior(inp, self._ref_range())
        link = self._aligned(inp, tr, other, otr, method, table, prior, timeline=timeline)
        if inp.spec.options.offset_s is not None or (link.models and len(link.residuals) >= 0.5 * link.windows):
            return link
        found, trains = self._coarse(inp, tr, other, otr, link.semantics, timeline)
        if found is None:
            link.notes.append("no offset stands out over the whole recording either (" + (
                _unit_hint(tr, otr) or "its clock far from the reference's? give --offset-s") + ")")
        elif abs(found.offset_ns - prior) <= COARSE_MOVE_S * NS and not found.rate:
            return link  # the whole recording's events pile up where the windows found it
        else:
            again = self._aligned(inp, tr, other, otr, method, table, found.offset_ns, found.rate, found.centre_ns,
                                  timeline)
            if again.models and len(again.residuals) > len(link.residuals):
                at0 = found.offset_ns - found.centre_ns * found.rate  # at the file's zero
                how = (f"its clock runs about {-found.rate * 1e6:+.0f} ppm against the reference's" if found.rate
                       else f"--offset-s {at0 / NS:.3f} sets it")
                again.notes.insert(0, f"{_far(int(at0))} (where {found.matched} events of the whole recording line "
                                      f"up; {how})")
                return again
        return _beyond_chance(link, *trains)

    def _aligned(self, inp: _Input, tr: StreamTrack, other: _Input, otr: StreamTrack, method: str, table,
                 prior: int, rate: float = 0.0, centre_ns: int = 0, timeline: int | None = None) -> Link:
        """One pass of the aligner's windows over the pair, searched around ``prior`` (of ``tr``'s times stretched
        by ``rate`` about ``centre_ns``: ``links.aligner_link``); where they said the neural path is out of its
        depth (``align.disagreement``), once more with the classical correlation alone, around the offset its
        disagreeing classical estimates agreed on (a clock 2.1 s off: the prior's +-2 s missed it): that link where it
        holds more windows than the onsets confirmed (those found by the neural candidate alone do not count: a tone
        log the microphone heard a fifth of was mapped 110 ms late by them), with the reason."""
        link = aligner_link(inp.path, otr.info, tr.info, self._pieces_global(other, otr, True),
                            self._pieces_global(inp, tr, False, timeline=timeline), prior, method, table=table,
                            out_table=self._files_table if table is not None and method == "hybrid" else None,
                            markers=_rules(inp, other), rate=rate, centre_ns=centre_ns, scaled=self.calibrated)
        if not link.out_of_depth:
            if not link.models and method == "hybrid" and any(DISAGREE in n for n in link.notes):
                link.notes.append("too few windows to tell whether to trust the neural path or the classical "
                                  "correlation: --align classical (the onsets alone) or --align neural decides")
            return link
        alone = self._aligned(inp, tr, other, otr, "classical", None, link.classical_ns, rate, centre_ns, timeline)
        if not alone.models or len(alone.residuals) <= len(link.residuals) - link.neural_only:
            link.notes.append(f"{link.out_of_depth}: fewer windows than the onsets confirmed, not used")
            return link
        alone.notes.insert(0, link.out_of_depth)
        return alone

    def _coarse(self, inp: _Input, tr: StreamTrack, other: _Input, otr: StreamTrack, semantics,
                timeline: int | None = None):
        """``coarse.coarse_fit`` of the two streams' whole event trains (one more pass over both; of ``tr``, its
        ``timeline`` or all), and the trains (reference, target)."""
        trains = []
        for src, track, mapped, partner, tl in ((other, otr, True, tr, None), (inp, tr, False, otr, timeline)):
            train = EventTrain(modality_of(track.info), modality_of(partner.info), semantics)
            for t, x in self._pieces_global(src, track, mapped, timeline=tl):
                train.add(t, x)
            trains.append(train.finish())
        return coarse_fit(*trains), trains

    def _lossy(self, inp: _Input, link: Link, tracks: tuple) -> None:
        """A lossy sound file's codec may show its sounds' start up to its pre-echo early (``pre_echo_ns``: Vorbis
        at 16 kHz, held-out sound effects at 5 dB SNR mapped 15 ms early under a 0.8 ms 1-sigma), where the windows
        and the onset check find them: that distance in the link's uncertainty, as measured (the table, fitted on
        lossless files, does not scale it), and a warning.  Not between two microphones: their waveforms are
        correlated (``gcc_ml``), which the codec's noise does not move."""
        if all(t.info.type == "audio" for t in tracks):
            return
        for t in tracks:
            q = t.info.quality_dict()
            echo = int(q.get("pre_echo_ns", 0))
            if echo > 0:
                k = link.calibration[0] if link.calibration else 1.0
                link.floor_ns = float(np.hypot(link.floor_ns, echo / k))
                note = (f"{t.key} is a lossy file ({q.get('codec', '?')}): its codec may show a sound's start up to "
                        f"{echo / 1e6:.1f} ms early (pre-echo), where its onsets are found: that in its uncertainty")
                link.notes.append(note)
                self.warnings.append(f"{inp.path}: {link.via}: {note}")

    def _onset_check(self, inp: _Input, tr: StreamTrack, other: _Input, otr: StreamTrack) -> None:
        """A marker log tied to a microphone by the aligner: moved earlier where the microphone's average energy
        around its sounds' mapped onsets rises clearly before them (``align.onset_check``), its drift corrected by
        where that rise departs in each part of the recording; one more pass over both streams (two where the drift
        moved the mapping's ends by a bin of the average or more)."""
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
        side = 1 if tr.info.type == "marker" else -1  # a move of the sounds is the link's where it maps the log

        def average(onsets: np.ndarray) -> EventAverage:
            avg = EventAverage(onsets)
            for ft, x in self._pieces_global(*sides["audio"], True, mapped_only=True):
                avg.add(ft, x)
            return avg

        avg = average(ev.t_ns)
        drift = avg.drift() if link.drift_sigma_ppm and len(ev.t_ns) else None
        if drift is not None:
            # the drift of the sounds' rise over the recording, weighed against the windows' (their line through
            # onsets found late by what the background hid, a little more where it is louder): taken out of the
            # mapping, and where that moves its ends by a bin or more, the sounds averaged again at their onsets so
            # moved
            fix, link.drift_sigma_ppm = drift.fused(link.drift_sigma_ppm)
            moved = np.rint((ev.t_ns - drift.at_ns) * (fix * 1e-6)).astype(np.int64)
            most = int(np.max(np.abs(moved)))
            again = most >= BIN_NS
            if again:  # before the link's own is set: a microphone the link maps would move with it, twice
                avg = average(ev.t_ns + moved)
            link.drift_fix = (side * fix, drift.at_ns)
            if again:
                link.notes.append(f"the sounds' rise drifts by {drift.ppm:+.1f} ppm ({drift.sigma_ppm:.1f} ppm "
                                  f"1-sigma) from their mapped onsets over {drift.parts} parts of the recording: the "
                                  f"windows' drift corrected by {fix:+.1f} ppm (the two weighed; 1-sigma now "
                                  f"{link.drift_sigma_ppm:.1f} ppm), up to {most / 1e6:.1f} ms")
        spread = float(np.median(ev.spread_ns)) if len(ev.spread_ns) else 0.0
        dep = avg.departure(limit_ns=3.0 * link.window_sigma_ns, spread_ns=spread)
        if dep is None:
            return
        sigma, measured = dep.uncertainty()
        rise = f"the microphone's average energy rises {-dep.departure_ns / 1e6:.0f} ms before the {dep.events} " \
               "sounds' mapped onsets"
        if dep.confirmed_sigma_ns is not None:
            note = (f"the microphone's average energy rises sharply {dep.departure_ns / 1e6:+.0f} ms from the "
                    f"{dep.events} sounds' mapped onsets: the bias the windows share measured there "
                    f"({sigma / 1e6:.1f} ms in place of one window's sigma)")
        elif dep.departure_ns > 0 and (dep.shift_ns or dep.beyond_limit):  # a sharp rise clearly after them
            after = (f"the microphone's average energy rises sharply {dep.departure_ns / 1e6:.0f} ms after the "
                     f"{dep.events} sounds' mapped onsets (the windows mapped them early)")
            if dep.beyond_limit:
                note = f"{after}, further than three window sigmas: not moved, that added to its uncertainty"
            else:
                link.shift_ns = side * dep.shift_ns
                note = f"{after}: moved by that, half that added to its uncertainty"
        elif dep.beyond_limit:
            note = (f"{rise}, further back than three window sigmas (a cue before each sound, or a bias too large to "
                    f"move): not moved, {sigma / 1e6:.1f} ms added to its uncertainty")
        elif dep.shift_ns:
            link.shift_ns = side * dep.shift_ns
            moved = f"moved {'earlier' if link.shift_ns < 0 else 'later'} by that"
            if dep.start_ns is None:
                note = f"{rise} (onsets under loud background are found late): {moved}, half that added to its " \
                       "uncertainty"
            elif dep.start_ns != dep.shift_ns:
                note = (f"{rise} (onsets under loud background are found late): {moved}; the line of its rise starts "
                        f"{-dep.start_ns / 1e6:.0f} ms before them, further back than three window sigmas: "
                        f"{sigma / 1e6:.1f} ms added to its uncertainty")
            else:
                note = (f"{rise} (onsets under loud background are found late), and the line of its rise starts "
                        f"{-dep.start_ns / 1e6:.0f} ms before them: {moved}, its uncertainty ({sigma / 1e6:.1f} ms) "
                        "in place of one window's sigma")
        elif dep.start_ns is not None:  # an earlier rise; the sounds' own not clearly before the mapped onsets
            note = (f"{rise}, and the line of their own rise starts {dep.start_ns / 1e6:+.0f} ms from them (an "
                    f"earlier rise: a cue, or a swell before each sound): not moved, {sigma / 1e6:.1f} ms added to "
                    "its uncertainty")
        else:  # not clearly before them: nothing said of the mapping
            return
        link.hidden_ns, link.bias_measured = sigma, measured
        link.notes.append(note)


def _beyond_chance(link: Link, ref_events: np.ndarray, tgt_events: np.ndarray) -> Link:
    """``link``, found by fewer than half its windows and not where the whole recordings' events pile up, kept only
    where its mapping lines up their events beyond chance (``coarse.support``); else emptied, with the reason.  A few
    windows of many find an offset by chance (loud babble, or sounds the microphone never heard: 2-8 of 75, on one
    line up to 6 of them): a log whose clock was 30 s off was mapped 30 s wrong under a 24 ms sigma."""
    if not link.models or not len(tgt_events):
        return link
    t = np.asarray(tgt_events, dtype=np.int64)
    mapped, unc = link.map(t, np.zeros(len(t), dtype=np.int64))
    s = support(ref_events, mapped[unc < UNKNOWN_UNC_NS], max(SUPPORT_WIDTH_NS, 2.0 * link.window_sigma_ns))
    if s.beyond_chance:
        return link
    link.models = {}
    link.notes.insert(0, f"the {len(link.residuals)} windows that found an offset (of {link.windows}) are chance "
                         f"peaks: their offset lines up {s.matched} of the recordings' events, as many as others do "
                         f"({s.chance:.0f} on average, up to {s.most})")
    return link


def _rules(inp: _Input, other: _Input) -> tuple:
    """The marker rules a pair's marker stream is read with: those given for either input (``--marker``, a manifest's
    ``markers``); empty: the default words."""
    return inp.spec.rules or other.spec.rules


def _joined(links: list[Link]) -> Link:
    """One link of a stream whose clock was reset, from one per timeline (``links[k]``, each of a model ``0``): each
    tied timeline's model as ``models[k]``, every note with its timeline, a note for each timeline not tied (its
    samples stay unmapped: the engine warns of it); the rest from the timeline with the most windows."""
    tied = [(k, lk) for k, lk in enumerate(links) if lk.models]
    base = max(tied, key=lambda kl: len(kl[1].residuals))[1] if tied else links[0]
    notes = [f"timeline {k + 1}: {n}" for k, lk in enumerate(links) for n in lk.notes]
    if tied:
        notes += [f"timeline {k + 1} of its clock (after a reset): {NOT_TIED}" for k, lk in enumerate(links)
                  if not lk.models]
    return replace(base, models={k: lk.models[0] for k, lk in tied}, notes=notes,
                   residuals=[r for _, lk in tied for r in lk.residuals], windows=sum(lk.windows for lk in links),
                   steps=[st for _, lk in tied for st in lk.steps],
                   disputed=[st for _, lk in tied for st in lk.disputed])


def _far(offset_ns: int) -> str:
    """Where a file's clock is, said so that a user can check it: an offset, or, for a clock of dates and times
    (its offset decades), the date and time it read at the reference's zero."""
    if abs(offset_ns) < 10 * 365 * 86400 * NS:  # ten years
        return f"its clock is {offset_ns / NS:+.2f} s from the reference's"
    at = datetime.fromtimestamp(-offset_ns // NS, timezone.utc) + timedelta(microseconds=(-offset_ns % NS) // 1000)
    return f"its clock read {at.isoformat(timespec='milliseconds')} at the reference's zero"


def leading(notes: list[str], k: int) -> list[str]:
    """A refusal's reasons: the first ``k`` notes and any later one that says what to try (``--offset-s``,
    ``--time-unit``, ``--align``)."""
    return notes[:k] + [n for n in notes[k:] if any(f in n for f in ("--offset-s", "--time-unit", "--align"))]


def _unit_hint(tr: StreamTrack, otr: StreamTrack) -> str:
    """Where one stream's times span about 1000 or a million times the other's over the same events: a time column
    in milliseconds or microseconds read as seconds (an Arduino's millis() in a column named "time"), or the other
    way; "" elsewhere."""
    a, b = (t.last_ns - t.first_ns if t.n > 1 and t.last_ns is not None else 0 for t in (tr, otr))
    if a <= 0 or b <= 0:
        return ""
    r = max(a, b) / min(a, b)
    for factor, unit, suffix in ((1e3, "milliseconds", "ms"), (1e6, "microseconds", "us")):
        if factor / 3 <= r <= factor * 3:
            return (f"{tr.key}'s times span {a / b:.3g}x {otr.key}'s: a time column in {unit} read as seconds, or "
                    f"seconds as {unit}? give --time-unit {suffix}, or name the column time_{suffix})")
    return ""
