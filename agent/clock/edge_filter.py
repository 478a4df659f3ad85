"""EdgeFilter: validation of one side's trigger edges before ``triggers.TriggerMatcher`` pairs them.

Pure (no I/O).  Out-of-order and duplicated edges, pulses too narrow or too wide, edges off a periodic line's grid
are rejected and counted; a device clock that restarted is recognised once the next edge confirms the new timeline
(see ``triggers`` for the whole description).
"""

from __future__ import annotations

from synchub.agent.core.units import NS

from .resets import ResetRule


class EdgeFilter:
    """Validation of one side's edges (see the module docstring)."""

    def __init__(self, period_ns: int = 0, *, period_tol: float = 0.1, min_width_ns: int = 0,
                 max_width_ns: int = 0, polarity: int = 1, counts: dict[str, int] | None = None, side: str = ""):
        self.period = int(period_ns)
        self.tol = float(period_tol)
        self.min_width = int(min_width_ns)
        self.max_width = int(max_width_ns)
        self.polarity = int(polarity)
        self.counts = counts if counts is not None else {}
        self.side = side
        self.last_t: int | None = None
        self.last_seq: int | None = None
        self._rejected_run: list[int] = []
        self.resets = ResetRule(back=NS)  # a device edge this far back starts a new timeline once the next confirms it
        self.reset_seen = False
        self._reset_cand: int | None = None
        if self.period > 0:
            self.period_f = float(self.period)

    def _count(self, reason: str) -> None:
        key = f"{self.side}_{reason}" if self.side else reason
        self.counts[key] = self.counts.get(key, 0) + 1

    def accept(self, t_ns: int, width_ns: int = 0, seq: int = -1, polarity: int = 1) -> bool:
        t = int(t_ns)
        if self.polarity and polarity != self.polarity:
            self._count("other_polarity")
            return False
        if width_ns < 0 or (self.min_width and width_ns < self.min_width) or (
            self.max_width and width_ns > self.max_width
        ):
            self._count("width")
            return False
        if self.last_t is not None:
            if t == self.last_t or (seq >= 0 and self.last_seq is not None and seq == self.last_seq):
                self._count("duplicate")
                return False
            if self.resets.went_back(self.last_t, t):
                # far back: a stray edge, or the device clock restarted.  A reset is confirmed by the next edge
                # continuing the new timeline (on the grid after this one); then matching starts over.
                cand = self._reset_cand
                if cand is not None and t > cand and (self.period <= 0 or self._grid_ok(t - cand)):
                    self._count("clock_reset")
                    self.reset_seen = True
                    self._reset_cand = None
                    self._rejected_run.clear()
                    if self.period > 0:
                        self.period_f = float(self.period)
                    self._take(t, seq)
                    return True
                self._reset_cand = t
                self._count("out_of_order")
                return False
            if t < self.last_t:
                self._count("out_of_order")
                return False
            if self.period > 0 and not self._on_grid(t):
                return False
        self._take(t, seq)
        return True

    def _on_grid(self, t: int) -> bool:
        dt = t - self.last_t
        p = self.period_f
        if dt < (1.0 - self.tol) * p:
            reason = "too_soon"
        else:
            k = round(dt / p)
            if abs(dt - k * p) <= self.tol * p:
                if k == 1:  # refine the period on consecutive edges (follows the device's drift)
                    self.period_f += 0.05 * (dt - self.period_f)
                self._rejected_run.clear()
                return True
            reason = "off_period"
        self._count(reason)
        self._rejected_run.append(t)
        run = self._rejected_run[-3:]
        if len(run) == 3 and all(self._grid_ok(b - a) for a, b in zip(run[:-1], run[1:], strict=False)):
            self._count("reanchor")
            self._rejected_run.clear()
            self.last_t = t
            return True
        return False

    def _grid_ok(self, dt: int) -> bool:
        p = self.period_f if self.period > 0 else 0.0
        if p <= 0:
            return dt > 0
        k = round(dt / p)
        return k >= 1 and abs(dt - k * p) <= self.tol * p

    def _take(self, t: int, seq: int) -> None:
        self._reset_cand = None
        self.last_t = t
        if seq >= 0:
            self.last_seq = seq

    def anchor(self, t_ns: int) -> None:
        """An edge already validated (before a restart) anchors the grid."""
        self._take(int(t_ns), -1)

    def restart(self) -> None:
        """Forget the timeline (a new one begins): the next edge is accepted and anchors the grid again."""
        self.last_t = None
        self.last_seq = None
        self._rejected_run.clear()
        self._reset_cand = None
        self.reset_seen = False
        if self.period > 0:
            self.period_f = float(self.period)
