"""When the neural candidate is out of its depth: the hybrid's windows disagree with a confident classical result,
one window after another, and the classical results agree with each other.  Pure.

The hybrid abstains in a window where its neural and classical estimates are further apart than their combined
sigmas allow (``Aligner.fuse``): one of them is wrong, and one window cannot say which.  Many windows can.  A tone
burst logged as "tone" (a sound unlike the encoders' training: speech, the corpus's sound effects, the simulator's
events) comes out of the neural path ~110 ms late in every window at 8, 16 and 44.1 kHz, and ``synchub align``
refused the log although its onset correlation found every tone within 2 ms.  A neural path that is wrong by
chance is wrong differently in different windows; a classical one that locks onto a look-alike lag does so in some
windows, not on one line through all of them.  So where ``MIN_WINDOWS`` windows whose centres span at least
``MIN_SPAN_WINDOWS`` window lengths (so that they hold different events, not the same ones seen again by
overlapping windows) all disagreed, none fused in between (a window answered by the neural candidate alone, where
the onsets abstained, or one the onsets confirmed on the run's classical offsets neither ends nor extends the run: a
tone log the microphone heard a fifth of, or among five times as many other sounds, had such windows between every
disagreement and was mapped 110 ms late), and their classical offsets lie on one line within ``K_SIGMA`` of their
sigmas (a drift of a few hundred ppm allowed), the neural estimates are not trained on signals like these: the
classical correlation alone ties the pair (the live ``AlignmentTracker`` from then on; ``synchub align``'s aligner
link reruns so, around the offset the classical estimates agreed on), and says so.
"""

from __future__ import annotations

import numpy as np

from synchub.agent.core.units import NS

from .aligner import AlignResult

#: the start of ``Aligner.fuse``'s reason for abstaining: the window's neural and classical estimates disagree
DISAGREE = "neural and classical disagree"
MIN_WINDOWS = 4
MIN_SPAN_WINDOWS = 2.0
K_SIGMA = 3.0
FLOOR_NS = 2_000_000  # a classical sigma smaller than this is not taken at its word here
MAX_DRIFT_PPM = 500.0


def disagreed(r: AlignResult) -> bool:
    """``r`` is a hybrid window's abstention because its neural and classical estimates disagree (its offset and
    sigma are the classical one's)."""
    return not r.ok and r.reason.startswith(DISAGREE)


class DisagreementRun:
    """The run of windows since the last fused one whose neural and classical estimates disagreed (see the module
    docstring).  ``add`` every window's hybrid result; ``decided`` once the run says the neural path is out of its
    depth."""

    def __init__(self, window_ns: int, min_windows: int = MIN_WINDOWS, min_span_windows: float = MIN_SPAN_WINDOWS):
        self.window_ns = int(window_ns)
        self.min_windows = min_windows
        self.min_span_windows = min_span_windows
        self.points: list[tuple[int, int, int]] = []  # (window centre, classical offset, its sigma) ns
        self.decided = False

    def add(self, r: AlignResult) -> bool:
        """One window's hybrid result; True once decided.  A window the onset correlation confirmed ends the run
        unless it lies on the run's classical offsets (``_on_line``); other abstentions (a flat or ambiguous window)
        and answers of the neural candidate alone neither end nor extend it."""
        if r.ok and not r.neural_only and not self._on_line(r):
            self.points.clear()
        elif disagreed(r) and r.sigma_ns > 0:
            self.points.append((int(r.device_ns), int(r.offset_ns), int(r.sigma_ns)))
            self.decided = self.decided or self._consistent()
        return self.decided

    def _on_line(self, r: AlignResult) -> bool:
        """A confirmed window whose offset is the run's last classical offset (within ``K_SIGMA`` of their sigmas
        and the drift ``MAX_DRIFT_PPM`` allows since): the onsets found it there, the neural candidate did not say
        otherwise; it does not end the run."""
        if not self.points:
            return False
        t, off, sig = self.points[-1]
        slack = K_SIGMA * max(float(sig), float(r.sigma_ns), FLOOR_NS) + MAX_DRIFT_PPM * 1e-6 * abs(r.device_ns - t)
        return abs(r.offset_ns - off) <= slack

    def _consistent(self) -> bool:
        if len(self.points) < self.min_windows:
            return False
        p = np.array(self.points, dtype=np.int64)
        if int(p[-1, 0] - p[0, 0]) < self.min_span_windows * self.window_ns:
            return False
        x = (p[:, 0] - p[0, 0]).astype(np.float64) / NS
        y = (p[:, 1] - p[0, 1]).astype(np.float64)
        b, a = np.polyfit(x, y, 1)
        s = np.maximum(p[:, 2].astype(np.float64), FLOOR_NS)
        return bool(np.all(np.abs(y - a - b * x) <= K_SIGMA * s))

    def offset_ns(self) -> int:
        """The median of the run's classical offsets (0 without any)."""
        return int(np.median([p[1] for p in self.points])) if self.points else 0

    def note(self) -> str:
        """What was decided, for a link's notes or a tracker's reasons."""
        return (f"neural and classical disagreed in {len(self.points)} windows, none the onsets confirmed between "
                "them, the classical results on one line: the neural encoders are not trained on signals like these; "
                "classical alone")
