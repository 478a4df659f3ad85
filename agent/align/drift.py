"""Offset and drift from successive window offsets: ``DriftTracker`` fits a Theil-Sen line (``theil_sen``) through
the accepted windows over device time, leaving out outliers (> 5 robust sigmas and > 3 of their own sigma from the
line).  Pure.
"""

from __future__ import annotations

import numpy as np

from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.units import NS

from .aligner import AlignResult


def theil_sen(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Robust line y = a + b x: (intercept a, slope b) from the median of pairwise slopes."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) == 0:
        return 0.0, 0.0
    if len(x) == 1:
        return float(y[0]), 0.0
    i, j = np.triu_indices(len(x), 1)
    dx = x[j] - x[i]
    ok = dx != 0
    b = float(np.median((y[j] - y[i])[ok] / dx[ok])) if ok.any() else 0.0
    a = float(np.median(y - b * x))
    return a, b


class DriftTracker:
    """Robust offset + drift from successive window offsets (Theil-Sen over the last ``max_points``)."""

    def __init__(self, max_points: int = 40, min_points_for_drift: int = 4):
        self.max_points = max_points
        self.min_points = min_points_for_drift
        self.points: list[tuple[int, int, int]] = []  # (device_ns, offset_ns, sigma_ns)
        self.rejected = 0

    def add(self, r: AlignResult | OffsetEstimate) -> bool:
        """Add an accepted estimate; returns False (and counts it) when it is an outlier against the line."""
        if isinstance(r, AlignResult) and not r.ok:
            return False
        pt = (int(r.device_ns), int(r.offset_ns), int(r.sigma_ns))
        if len(self.points) >= self.min_points:
            pred = self.offset_at(pt[0])
            res = np.array([o - self.offset_at(d) for d, o, _ in self.points], dtype=np.float64)
            mad = 1.4826 * float(np.median(np.abs(res))) if len(res) else 0.0
            err = abs(pt[1] - pred)
            if err > 5.0 * max(mad, 1.0) and err > 3.0 * max(pt[2], 1):
                self.rejected += 1
                return False
        self.points.append(pt)
        del self.points[: -self.max_points]
        return True

    def _fit(self) -> tuple[float, float, int]:
        d = np.array([p[0] for p in self.points], dtype=np.int64)
        o = np.array([p[1] for p in self.points], dtype=np.float64)
        x0 = int(d[-1])
        if len(self.points) < self.min_points:
            return float(np.median(o)), 0.0, x0
        a, b = theil_sen((d - x0) / NS, o)
        return a, b, x0

    def offset_at(self, device_ns: int) -> float:
        if not self.points:
            return 0.0
        a, b, x0 = self._fit()
        return a + b * (int(device_ns) - x0) / NS

    @property
    def drift_ppm(self) -> float:
        """Device clock rate error (ppm, > 0: the device runs fast, so ref - device falls over time)."""
        if len(self.points) < self.min_points:
            return 0.0
        return -self._fit()[1] / 1e3  # offset slope ns per s -> ppm, sign of the device's drift
