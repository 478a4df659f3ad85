"""``AlignmentTracker``: what the agent pipeline runs live to align one target stream to a reference.  Pure.

It buffers chunks of the reference stream (with corrected times) and the target stream (device + host times), and
every ``hop_s`` of target device time aligns the last ``window_s`` (``WindowAligner``; by default the 16 s the sigma
tables were fitted on; ``first_window_s`` lets the first windows grow to it).  ``poll()`` returns
``OffsetEstimate`` evidence for the target's ClockModel; abstentions are not emitted but counted with their reasons
in ``stats()``.

The search is centred on a prior: first the arrival estimate (median host - device of the target), then the
drift-tracked prediction from accepted windows.  The first windows search the aligner's whole range (+-2 s); once
``TRACK_AFTER`` of them agree on a line the tracker *tracks*: it searches +-``TRACK_SEARCH_S`` around the line, so
a window needs the reference only that far past its end (its estimate comes ~1.5 s sooner, and the clock model
extrapolates that much less) and fewer look-alike peaks are in range; ``LOST_AFTER`` windows in a row without an
estimate widen the search again.  An estimate of a wide search (until it tracks, and again once the line is lost)
waits until its offset lines up the two streams' events of the last ``SUPPORT_SPAN_S`` beyond chance (``_chance``: a
few windows of many find an offset by chance).  A hybrid
tracker whose neural and classical estimates keep disagreeing while the classical ones lie on one line
(``disagreement.DisagreementRun``: signals unlike the encoders' training) goes on with the classical correlation
alone.  Windows overlap (``hop_s < window_s``), so consecutive estimates
share events: the emitted sigma is scaled by sqrt(window / hop) so a clock model fusing them does not count the
same events several times.  Given a ``SigmaTable`` (``calibration``: the fitted per-pair scale and floor), the sigma
the clock model weighs each estimate by is the calibrated one (``window_evidence``, which the benchmark's feed of the
model runs too).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.core.units import NS

from .aligner import AlignerSettings, AlignResult, apply_arrival_bound, violates_bound
from .calibration import REAL_WINDOW_FLOOR_MS, SigmaTable
from .coarse import SHIFTS_S, SUPPORT_WIDTH_NS, EventTrain, support
from .disagreement import DisagreementRun
from .drift import DriftTracker
from .window import METHODS, WindowAligner

#: Accepted windows on one line before the search narrows (tracking), its half-range then (s), and the windows in a
#: row without an estimate after which it widens again (see the module docstring).
TRACK_AFTER = 4
#: The window (s) the sigma tables are fitted on (``bench align``: 16 s, hop 4 s), so the live windows are too.  A
#: shorter ``first_window_s`` makes the first windows grow to it (an estimate sooner after the target starts; their
#: sigmas are the tables' for 16 s windows, and on the demo's recordings and the real corpus the figures after 20 s
#: came out worse with 8 s: off by default).
WINDOW_S, HOP_S = 16.0, 4.0
TRACK_SEARCH_S = 0.5
LOST_AFTER = 3
#: Until a window's offset lines up the two streams' events of the last ``SUPPORT_SPAN_S`` beyond chance
#: (``coarse.support``), its estimate is held back (and later ones off its line are the drift tracker's outliers).
SUPPORT_SPAN_S = 120.0


def calibrated_settings(table: SigmaTable | None, simulated: bool, markers=None) -> AlignerSettings:
    """The aligner settings that go with ``table``: its window sigma scales (the hybrid weighs its classical and
    neural estimates by them) and, for the real corpus's table, the window floors fitted before it
    (``REAL_WINDOW_FLOOR_MS``), as ``bench align`` runs them: the table's output scaling (``window_evidence``) is
    fitted on windows made with exactly these.  No table: the aligner's defaults.  ``markers``: marker rules."""
    s = AlignerSettings() if markers is None else AlignerSettings(markers=markers)
    if table is None:
        return s
    floors = () if simulated else REAL_WINDOW_FLOOR_MS
    return dataclasses.replace(s, window_sigma_scales=table.windows, pair_sigma_floor_ms=floors)


def window_evidence(res: AlignResult, stream: str, overlap: float, table: SigmaTable | None = None,
                    pair: tuple[str, str] = ("", ""), shared: bool = True) -> OffsetEstimate:
    """A window's ``ok`` result as the evidence a clock model weighs: its sigma scaled by sqrt(``overlap`` = window
    / hop: overlapping windows share events, each is worth hop / window of an independent one), then calibrated
    by ``table`` for the modality ``pair`` (``SigmaTable.apply``: k * sqrt(sigma^2 + g^2); none: as the aligner
    reported it).  The table's floor g is fitted on mapped times, as a bias a recording's windows share: it also
    goes with the estimate as ``shared_ns`` = k * g, which the clock model adds to the uncertainty of what offsets
    alone map instead of averaging it down, so the live uncertainty is at least the one the benchmark reports
    (``table.apply`` of the model's).  ``shared=False``: not with the estimate, where its caller carries the bias
    the windows share itself (a file link: one window's sigma, or the onset check's measure of it)."""
    ev = res.evidence(stream)
    sigma = ev.sigma_ns * max(1.0, overlap) ** 0.5
    bias = 0.0
    if table is not None:
        sigma = float(table.apply(pair[0], pair[1], np.array([sigma]))[0])
        k, g = table.of(pair[0], pair[1])
        bias = k * g if shared else 0.0  # the table's floor is an error the windows share: the model adds it
    return dataclasses.replace(ev, sigma_ns=max(1, int(sigma)), shared_ns=int(bias))


class _Buffer:
    """Concatenated times + samples of one stream, trimmed from the front."""

    def __init__(self):
        self.t = np.zeros(0, dtype=np.int64)
        self.x: Any = None  # ndarray or list[str]

    def add(self, t: np.ndarray, x) -> None:
        if isinstance(x, list):
            self.x = (self.x or []) + list(x)
        else:
            x = np.asarray(x)
            self.x = x.copy() if self.x is None else np.concatenate([self.x, x])
        self.t = np.concatenate([self.t, t])

    def trim_before(self, t_ns: int) -> None:
        k = int(np.searchsorted(self.t, t_ns, side="left"))
        if k > 0:
            self.t = self.t[k:]
            self.x = self.x[k:]

    def cut(self, a: int, b: int):
        i, j = int(np.searchsorted(self.t, a, side="left")), int(np.searchsorted(self.t, b, side="left"))
        return self.t[i:j], self.x[i:j] if self.x is not None else []

    @property
    def last(self) -> int | None:
        return int(self.t[-1]) if len(self.t) else None


class AlignmentTracker:
    """Live alignment of ``tgt_stream`` against ``ref_stream`` (see module doc).  Pure: push chunks, poll."""

    def __init__(self, ref_stream: str, tgt_stream: str, ref_info: StreamInfo, tgt_info: StreamInfo,
                 runners: dict | None = None, window_s: float = WINDOW_S, hop_s: float = HOP_S,
                 settings: AlignerSettings | None = None, method: str = "hybrid", table: SigmaTable | None = None,
                 first_window_s: float | None = None):
        if method not in METHODS:
            raise ValueError(f"unknown alignment method {method!r}; allowed: {', '.join(METHODS)}")
        first_window_s = window_s if first_window_s is None else first_window_s
        if window_s <= 0 or hop_s <= 0 or first_window_s <= 0:
            raise ValueError("window_s, hop_s and first_window_s must be > 0")
        self.ref_stream, self.tgt_stream = ref_stream, tgt_stream
        self.window_ns, self.hop_ns = int(window_s * NS), int(hop_s * NS)
        self.first_ns = min(int(first_window_s * NS), self.window_ns)
        self.method = method
        self.table = table  # calibrates the emitted sigma (``window_evidence``); None: the aligner's own
        self.win = WindowAligner(ref_info, tgt_info, runners, settings)
        s = self.win.s
        self.track = WindowAligner(ref_info, tgt_info, runners,
                                   dataclasses.replace(s, search_s=min(s.search_s, TRACK_SEARCH_S)))
        self.misses = 0  # windows in a row without an emitted estimate
        self.trains: dict[str, EventTrain] = {}  # both streams' events while it searches widely (``_chance``)
        self.ref = _Buffer()
        self.tgt = _Buffer()
        self._lat = _Buffer()  # host - device of the target's samples (the arrival bound)
        self._arrival: list[float] = []  # host - device of target samples (first ones)
        self.drift = DriftTracker(overlap=self.window_ns / self.hop_ns)
        self.disagreement = DisagreementRun(self.window_ns)
        self.start_ns: int | None = None  # the target's first sample (device clock): the first windows start there
        self.next_d1: int | None = None  # where the next window ends
        self.counts: dict[str, int] = {"windows": 0, "emitted": 0, "abstained": 0, "outliers": 0, "bad_chunks": 0,
                                       "tracked": 0}
        self.reasons: dict[str, int] = {}
        self._at_arrival = False  # the target's chunks come raw, as they arrive (``push_arrival``)

    def _count(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def push_arrival(self, stream_name: str, chunk: Chunk) -> None:
        """The target's chunks as they arrive, before the clock layer holds and corrects them (the aligner needs
        only their raw times): its windows are aligned as soon as the reference has caught up, however long the
        target itself is held (a stream's ``correction_delay_ms``).  From the first one on, ``push`` takes only the
        reference.  Chunks of other streams are ignored here (they come corrected through ``push``)."""
        if stream_name != self.tgt_stream:
            return
        self._at_arrival = True
        self._push(stream_name, chunk)

    def push(self, stream_name: str, chunk: Chunk) -> None:
        """A corrected chunk (the reference's; the target's too unless ``push_arrival`` feeds it)."""
        if stream_name == self.tgt_stream and self._at_arrival:
            return  # the same samples came raw through push_arrival
        self._push(stream_name, chunk)

    def _push(self, stream_name: str, chunk: Chunk) -> None:
        if chunk.n == 0:
            return
        if stream_name == self.ref_stream:
            if chunk.ref_ns is None:
                self.counts["bad_chunks"] += 1
                self._count("reference chunk without corrected times")
                return
            t = chunk.ref_ns
            buf = self.ref
        elif stream_name == self.tgt_stream:
            t = chunk.device_ns
            buf = self.tgt
            if len(self._arrival) < 2000:
                self._arrival.extend((chunk.host_ns - chunk.device_ns)[:200].astype(np.float64).tolist())
            if buf.last is None or int(t[0]) > buf.last:
                self._lat.add(t, (chunk.host_ns - chunk.device_ns)[:, None])
        else:
            self._count(f"chunk of unrelated stream {stream_name!r}")
            return
        if buf.last is not None and int(t[0]) <= buf.last:
            self.counts["bad_chunks"] += 1
            self._count("chunk not after the previous one (skipped)")
            return
        buf.add(t, chunk.data)
        if not self.tracking:
            self._event_trains()[stream_name].add(t, chunk.data)
        if stream_name == self.tgt_stream and self.next_d1 is None:
            self.start_ns = int(t[0])
            self.next_d1 = self.start_ns + self.first_ns

    @property
    def tracking(self) -> bool:
        """Searching narrowly around the drift line (see the module docstring)."""
        return len(self.drift.points) >= TRACK_AFTER and self.misses < LOST_AFTER

    def prior_ns(self, device_ns: int) -> int:
        if self.drift.points:
            return int(round(self.drift.offset_at(device_ns)))
        return int(np.median(self._arrival)) if self._arrival else 0

    def poll(self) -> list[OffsetEstimate]:
        out: list[OffsetEstimate] = []
        while self.next_d1 is not None and self.tgt.last is not None:
            d1 = self.next_d1
            d0 = self._window_start(d1)
            if self.tgt.last < d1:
                break
            prior = self.prior_ns((d0 + d1) // 2)
            win = self.track if self.tracking else self.win
            lo, hi = win.ref_range((d0, d1), prior)
            if self.ref.last is None or self.ref.last < hi:
                break  # wait for the reference to catch up
            tt, tx = self.tgt.cut(d0, d1)
            rt, rx = self.ref.cut(lo, hi)
            _, lat = self._lat.cut(d0, d1)
            # host stamps without any spread are not arrivals (a file's, or host = device): they bound nothing
            bound = int(np.min(lat)) if len(lat) > 1 and np.ptp(lat) > 0 else None
            res = win.estimate(rt, rx, tt, tx, (d0, d1), prior, methods=(self.method,))[self.method]
            if self.method == "hybrid":
                res = self._bounded(res, bound)
                if self.disagreement.add(res):  # the neural path out of its depth: classical from here on
                    self.method = "classical"
                    self._count(self.disagreement.note())
            if win is self.win:  # a wide search, its line not yet found or lost: chance peaks are in range
                res = self._chance(res, d1, prior)
            self.counts["windows"] += 1
            self.counts["tracked"] += win is self.track
            self.misses += 1
            if res.ok:
                if self.drift.add(res):
                    out.append(window_evidence(res, self.tgt_stream, (d1 - d0) / self.hop_ns, self.table,
                                               (self.win.ref_mod, self.win.tgt_mod)))
                    self.counts["emitted"] += 1
                    self.misses = 0
                    if self.tracking:
                        self.trains = {}  # let go while it tracks (memory, time)
                else:
                    self.counts["outliers"] += 1
                    self._count("offset disagrees with the drift line (outlier)")
            else:
                self.counts["abstained"] += 1
                self._count(res.reason)
            self.next_d1 = d1 + self.hop_ns
            keep = self._window_start(self.next_d1)
            self.tgt.trim_before(keep)
            self._lat.trim_before(keep)
            self.ref.trim_before(self.win.ref_range((keep, self.next_d1), prior)[0] - self.window_ns)
        return out

    def _window_start(self, d1: int) -> int:
        """Where the window ending at ``d1`` starts: ``window_s`` before, or the target's first sample (the first
        windows grow to ``window_s``)."""
        return max(int(self.start_ns), d1 - self.window_ns)

    def _bounded(self, res: AlignResult, bound: int | None) -> AlignResult:
        """The arrival bound, live: an estimate above it within slack + 3 sigma is moved onto it; one further
        above abstains (a wrong estimate, or host stamps that are not arrivals on the reference clock: which of
        the two cannot be told from one window), never an ``ok`` answer moved onto a bound that may not hold."""
        if violates_bound(res, bound):
            return AlignResult(False, res.offset_ns, 0, res.confidence, res.device_ns, res.method,
                               f"offset {(res.offset_ns - bound) / 1e6:.1f} ms above the arrival bound (a wrong "
                               "estimate, or host stamps that are not arrivals on the reference clock)")
        return apply_arrival_bound(res, bound)

    def _event_trains(self) -> dict[str, EventTrain]:
        """The two streams' event trains (``_chance``), started anew where a lost line widens the search again."""
        if not self.trains:
            sem = self.win.semantics
            self.trains = {self.ref_stream: EventTrain(self.win.ref_mod, self.win.tgt_mod, sem),
                           self.tgt_stream: EventTrain(self.win.tgt_mod, self.win.ref_mod, sem)}
        return self.trains

    def _chance(self, res: AlignResult, d1: int, prior: int) -> AlignResult:
        """``res`` where its offset lines up the two streams' events of the last ``SUPPORT_SPAN_S`` beyond chance
        (``coarse.support``: more than the offset moved 1-10 s either way does); else an abstention with why.  Asked
        of every window of a wide search, not only the first: before, a log of sounds the microphone never heard
        gave 3-9 estimates in 240 s, 0.5-2.4 s off with 24-50 ms sigmas, four in a row on one line (overlapping
        windows share a coincidence); and once one window had been confirmed, the next wide searches were not
        asked (a held-out camera at 0 dB SNR: three windows on the truth, then a chance peak 1.2 s off 56 s later,
        and a drift line through both of 20,000 ppm, events mapped up to 3.9 s off)."""
        trains = self._event_trains()
        since, shifts = d1 - int(SUPPORT_SPAN_S * NS), int(max(abs(s) for s in SHIFTS_S) * NS)
        trains[self.tgt_stream].forget(since - shifts)  # memory bounded while it searches widely
        trains[self.ref_stream].forget(since + prior - 2 * shifts - int(self.win.s.search_s * NS))
        if not res.ok:
            return res
        tgt = trains[self.tgt_stream].since(since)
        ref = trains[self.ref_stream].since(since + res.offset_ns - shifts)
        s = support(ref, tgt + res.offset_ns, max(SUPPORT_WIDTH_NS, 2.0 * res.sigma_ns))
        if s.beyond_chance:
            return res
        return dataclasses.replace(res, ok=False, reason=f"chance peak: its offset lines up {s.matched} events, as "
                                                         f"many as others do ({s.chance:.0f} on average)")

    def stats(self) -> dict:
        return {**self.counts, "tracking": self.tracking, "method": self.method, "reasons": dict(self.reasons),
                "drift_ppm": self.drift.drift_ppm,
                "drift_sigma_ppm": self.drift.drift_sigma_ppm,
                "drift_rejected": self.drift.rejected}
