"""Offset and drift from successive window offsets.  Pure.

``DriftTracker`` fits a line through the accepted windows over device time, over the whole recording (or the last
``span_s``): a Theil-Sen start (``theil_sen``), then iteratively reweighted least squares with each window weighted
by 1 / its sigma^2 and a Tukey biweight of its residual (windows far off the line count for nothing), so one
confident wrong window cannot tilt the drift.  ``drift_sigma_ppm`` is the fit's 1-sigma, from the weights and the
residuals' own scatter (whichever is larger).  Windows far off the line (> 5 robust sigmas and > 3 of their own
sigma) are reported as such when they arrive (``add`` returns False: the live tracker does not emit them).
Where all windows are at hand, ``synchub.agent.clock.robust`` judges them together (two-sided).
"""

from __future__ import annotations

import numpy as np

from synchub.agent.clock.robust import TUKEY_C, sigma_scale, theil_sen, weighted_line
from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.units import NS

from .aligner import AlignResult

__all__ = ["TUKEY_C", "DriftTracker", "sigma_scale", "theil_sen"]  # the robust line's pieces: ``clock.robust``


class DriftTracker:
    """Robust offset + drift from successive window offsets (see module doc)."""

    def __init__(self, max_points: int = 5000, min_points_for_drift: int = 4, span_s: float = 0.0,
                 overlap: float = 1.0):
        self.max_points = max_points
        self.overlap = max(1.0, overlap)  # windows sharing data (window / hop): each worth 1 / overlap of one
        self.min_points = min_points_for_drift
        self.span_ns = int(span_s * NS)  # 0: the whole recording
        self.points: list[tuple[int, int, int]] = []  # (device_ns, offset_ns, sigma_ns)
        self.rejected = 0
        self._cache: tuple[float, float, int, float] | None = None

    def add(self, r: AlignResult | OffsetEstimate) -> bool:
        """Add an accepted estimate; returns False (and counts it) when it is an outlier against the line."""
        if isinstance(r, AlignResult) and not r.ok:
            return False
        pt = (int(r.device_ns), int(r.offset_ns), int(r.sigma_ns))
        if len(self.points) >= self.min_points:
            a, b, x0, _ = self._fit()
            d = np.array([p[0] for p in self.points], dtype=np.float64)
            o = np.array([p[1] for p in self.points], dtype=np.float64)
            res = o - (a + b * (d - x0) / NS)
            mad = 1.4826 * float(np.median(np.abs(res))) if len(res) else 0.0
            err = abs(pt[1] - (a + b * (pt[0] - x0) / NS))
            outlier = err > 5.0 * max(mad, 1.0) and err > 3.0 * max(pt[2], 1)
        else:
            outlier = False
        # kept either way: the fit's biweight gives a point far off the final line no weight, and a line fitted to a
        # few early (possibly wrong) windows must not lock the later right ones out
        self.points.append(pt)
        del self.points[: -self.max_points]
        if self.span_ns:
            while self.points and self.points[0][0] < pt[0] - self.span_ns:
                self.points.pop(0)
        self._cache = None
        self.rejected += int(outlier)
        return not outlier

    def _fit(self) -> tuple[float, float, int, float]:
        """(intercept at x0, slope ns per s, x0 = the last point's device time, slope 1-sigma)."""
        if self._cache is not None:
            return self._cache
        d = np.array([p[0] for p in self.points], dtype=np.int64)
        o = np.array([p[1] for p in self.points], dtype=np.float64)
        sig = np.maximum(np.array([p[2] for p in self.points], dtype=np.float64), 1.0)
        x0 = int(d[-1])
        if len(self.points) < self.min_points:
            self._cache = (float(np.median(o)), 0.0, x0, float("inf"))
            return self._cache
        x = (d - x0) / NS
        a, b = theil_sen(x, o)
        cov_bb = float("inf")
        for _ in range(6):
            r = o - (a + b * x)
            scale = sigma_scale(r, sig)
            u = r / (TUKEY_C * scale * sig)
            w = np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0) / (scale * sig) ** 2
            line = weighted_line(x, o, w) if np.count_nonzero(w) >= 2 else None
            if line is None:
                break
            a, b, cov_bb = line
        self._cache = (float(a), float(b), x0, float(np.sqrt(cov_bb)))
        return self._cache

    def offset_at(self, device_ns: int) -> float:
        if not self.points:
            return 0.0
        a, b, x0, _ = self._fit()
        return a + b * (int(device_ns) - x0) / NS

    @property
    def drift_ppm(self) -> float:
        """Device clock rate error (ppm, > 0: the device runs fast, so ref - device falls over time)."""
        if len(self.points) < self.min_points:
            return 0.0
        return -self._fit()[1] / 1e3  # offset slope ns per s -> ppm, sign of the device's drift

    @property
    def drift_sigma_ppm(self) -> float:
        """1-sigma of ``drift_ppm`` (inf until there are enough windows)."""
        if len(self.points) < self.min_points:
            return float("inf")
        return self._fit()[3] * np.sqrt(self.overlap) / 1e3
