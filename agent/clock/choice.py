"""Which estimate a mapped time gets.  Pure.

Every segment offers estimators (trigger edges and aligner offsets, probes, arrival times: ``Segment.candidates``);
``choices`` narrows them to the one a stream's ``method`` forces, and ``choose`` gives each time the estimate with
the smallest variance there.  The choice depends on the evidence and on the time itself only, so a recording mapped
chunk by chunk gives the same times as mapped at once.  ``METHOD_ORDER`` ranks the methods a chunk may carry (the
best first); ``UNKNOWN_UNC_NS`` is the uncertainty reported where nothing at all is known.
"""

from __future__ import annotations

import numpy as np

#: Uncertainty reported where nothing at all is known about a segment (ns).
UNKNOWN_UNC_NS = 10**15

METHOD_ORDER = ("triggers", "hybrid", "neural", "probes", "arrival", "identity")

#: A forced ``method`` -> the estimators that satisfy it, in order of preference.
FORCED = {"triggers": ("triggers", "hybrid"), "hybrid": ("hybrid", "triggers", "neural"), "neural": ("neural", "hybrid"),
          "probes": ("probes",), "arrival": ("arrival",), "identity": ()}


def choices(candidates: list[str], forced: str) -> list[str]:
    """The estimators a segment offers under ``method = forced`` ("auto": all of them), or identity."""
    if not candidates:
        return ["identity"]
    if forced == "auto":
        return candidates
    wanted = FORCED.get(forced, ())
    picked = [c for c in candidates if c in wanted]  # (two only where a wired stream's aligner is its fallback)
    if picked:
        return picked
    return ["identity"] if forced == "identity" else candidates


def choose(estimates: list[tuple[np.ndarray, np.ndarray]], names: list[str]):
    """Per time, the estimate with the smallest variance (ties: the first): ``(offset, variance, names used)``."""
    if len(estimates) == 1 or len(estimates[0][0]) == 0:
        return estimates[0][0], estimates[0][1], {names[0]}
    V = np.vstack([v for _, v in estimates])
    pick = np.argmin(V, axis=0)
    cols = np.arange(V.shape[1])
    a = np.vstack([a for a, _ in estimates])[pick, cols]
    return a, V[pick, cols], {names[i] for i in np.unique(pick).tolist()}

