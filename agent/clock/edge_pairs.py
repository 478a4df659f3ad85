"""Pairing one stream's sync edges with the reference stream's, as SpikeGLX TPrime does, for the clock model.

TPrime maps every stream's sync edges onto the reference stream's edges: both recorded the same pulses, so each
edge of a stream has a partner among the reference's edges, and any time in between maps by the pairs around it.
Here the pairs are found and then given to the agent's ``ClockModel`` as trigger edge pairs (it handles the drift,
the steps, the outliers and the uncertainty the same way as live).

``pair_edges(src, ref)``:

1. **Coarse offset by the pulses' intervals**: for a few blocks of consecutive source edges spread over the
   recording, every difference ``ref - src`` is binned (``tol``); the bins where most of a block's edges find a
   partner are candidate offsets (a pattern of irregular intervals, missing pulses, a start or an end, is matched
   only at the right offset).
2. **Walk**: from each candidate's anchor pair, forward and backward through the source edges, the partner of the
   next edge is the one reference edge within the window around the prediction of the pairs so far (a line fitted
   to the last ``WALK_FIT`` pairs, so drift is followed; the window grows with the distance from the last pair by
   ``MAX_SKEW`` until three pairs give a rate).  Several reference edges in a window: no pair (ambiguous).
3. The candidate with the most pairs wins.  A strictly periodic train pairs about as well at every whole period:
   those candidates are **ambiguous** and the one nearest the prior (``prior_ns``, the expected ref - src) is
   taken, as TPrime does with its common start.  ``EdgePairs`` says which.

``pair_codes`` pairs decoded barcodes by value (no ambiguity).  Pure: arrays in, arrays out; int64 ns.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

#: The largest rate difference of two clocks before a rate is known from the pairs (crystals: a few 100 ppm).
MAX_SKEW = 1e-3
#: Pairs the walk's line is fitted to.
WALK_FIT = 16
BLOCKS, BLOCK_EDGES = 8, 16
#: Candidates whose pair count is within this fraction of the best are as good (a periodic train).
TIE = 0.9


@dataclass
class EdgePairs:
    src: np.ndarray
    ref: np.ndarray
    offset_ns: int = 0
    how: str = "intervals"  # "intervals", "prior" (ambiguous: the prior chose), "barcodes", "none"
    candidates: list[tuple[int, float]] = field(default_factory=list)  # (offset ns, score) of the best few
    unmatched_src: int = 0
    unmatched_ref: int = 0

    @property
    def n(self) -> int:
        return len(self.src)


def default_tol(ref: np.ndarray, src: np.ndarray, sample_ns: int = 0) -> int:
    """The pairing window: three sample periods of the coarser stream (2 ms at least: the edges' own timing
    error), at most a quarter of the smallest typical interval of either side (a pulse cannot pair with its
    neighbour)."""
    iv = [np.median(np.diff(np.sort(a))) for a in (ref, src) if len(a) >= 2]
    quarter = int(min(iv) / 4) if iv else 250_000_000
    return int(max(min(max(3 * sample_ns, 2_000_000), quarter), 1_000))


def _candidates(src: np.ndarray, ref: np.ndarray, tol: int, prior: int | None) -> list[tuple[int, int]]:
    """``(offset, anchor source time)`` candidates: the best-populated bins of each block's ref - src, and the
    well-populated one nearest the prior (a periodic train populates a bin per period)."""
    out: list[tuple[int, int]] = []
    starts = np.unique(np.linspace(0, max(len(src) - BLOCK_EDGES, 0), BLOCKS).astype(int))
    for s in starts.tolist():
        blk = src[s:s + BLOCK_EDGES]
        tol = _coarse_tol(blk, tol)
        d = (ref[None, :] - blk[:, None]).ravel()
        who = np.repeat(np.arange(len(blk)), len(ref))
        b = np.floor_divide(d, tol)
        # each source edge counts once per bin (and once in the bin next to it: an offset on a bin edge)
        for shift in (0, 1):
            key = np.unique((b + shift) * len(blk) + who) // len(blk)
            bins, counts = np.unique(key, return_counts=True)
            pick = np.argsort(-counts, kind="stable")[:4].tolist()
            if prior is not None and len(counts):
                good = np.flatnonzero(counts >= TIE * counts.max())
                pick.append(int(good[np.argmin(np.abs(bins[good] * tol - prior))]))
            for k in pick:
                sel = (b + shift) == bins[k]
                out.append((int(np.median(d[sel])), int(blk[len(blk) // 2])))
    out.sort()
    merged: list[tuple[int, int]] = []
    for c in out:
        if not merged or c[0] - merged[-1][0] > tol:
            merged.append(c)
    return merged


def _coarse_tol(blk: np.ndarray, tol: int) -> int:
    """A block's window: the pairing window plus what the largest skew can add over the block."""
    return int(tol + MAX_SKEW * (int(blk[-1]) - int(blk[0])) / 2) if len(blk) else tol


def _score(src: np.ndarray, ref: np.ndarray, offset: int, anchor: int, tol: int) -> float:
    """The fraction of the block of source edges around ``anchor`` with a reference edge within the block's window
    of ``src + offset``."""
    i = int(np.searchsorted(src, anchor))
    sel = src[max(i - BLOCK_EDGES // 2, 0):i + BLOCK_EDGES // 2]
    tol = _coarse_tol(sel, tol)
    if len(sel) == 0 or len(ref) == 0:
        return 0.0
    pred = sel + offset
    j = np.clip(np.searchsorted(ref, pred), 1, max(len(ref) - 1, 1))
    near = np.minimum(np.abs(ref[j - 1] - pred), np.abs(ref[np.minimum(j, len(ref) - 1)] - pred))
    return float(np.mean(near <= tol))


def _walk(src: np.ndarray, ref: np.ndarray, offset: int, anchor: int, tol: int) -> tuple[list[int], list[int]]:
    """Pairs (source index, reference index) reached from the source edge nearest ``anchor`` whose partner at
    ``offset`` is within ``tol``."""
    rl = ref.tolist()
    sl = src.tolist()
    pred0 = src + offset
    j = np.clip(np.searchsorted(ref, pred0), 1, max(len(ref) - 1, 1))
    j = np.where(np.abs(ref[j - 1] - pred0) < np.abs(ref[np.minimum(j, len(ref) - 1)] - pred0), j - 1, j)
    j = np.minimum(j, len(ref) - 1)
    ok = np.flatnonzero(np.abs(ref[j] - pred0) <= tol)
    if len(ok) == 0:
        return [], []
    i0 = int(ok[np.argmin(np.abs(src[ok] - anchor))])
    pairs = {i0: int(j[i0])}
    used = {int(j[i0])}
    for step in (1, -1):
        recent = [(sl[i0], rl[pairs[i0]])]
        i = i0 + step
        while 0 <= i < len(sl):
            t = sl[i]
            s_last, r_last = recent[-1]
            slope, slack = 0.0, MAX_SKEW
            if len(recent) >= 3:
                n = len(recent)
                mx = sum(p[0] - s_last for p in recent) / n
                my = sum(p[1] - p[0] for p in recent) / n
                sxx = sum((p[0] - s_last - mx) ** 2 for p in recent)
                if sxx > 0:
                    slope = sum((p[0] - s_last - mx) * (p[1] - p[0] - my) for p in recent) / sxx
                    slack = 50e-6
            pred = t + (r_last - s_last) + slope * (t - s_last)
            win = tol + slack * abs(t - s_last)
            lo = bisect.bisect_left(rl, pred - win)
            hi = bisect.bisect_right(rl, pred + win)
            if hi - lo == 1 and lo not in used:
                pairs[i] = lo
                used.add(lo)
                recent.append((t, rl[lo]))
                if len(recent) > WALK_FIT:
                    recent.pop(0)
            i += step
    keys = sorted(pairs)
    return keys, [pairs[k] for k in keys]


def pair_edges(src, ref, prior_ns: int | None = None, tol_ns: int | None = None, sample_ns: int = 0) -> EdgePairs:
    """Pairs of source edges (its clock) and reference edges (see the module docstring)."""
    src = np.sort(np.asarray(src, dtype=np.int64))
    ref = np.sort(np.asarray(ref, dtype=np.int64))
    empty = EdgePairs(np.zeros(0, np.int64), np.zeros(0, np.int64), how="none", unmatched_src=len(src),
                      unmatched_ref=len(ref))
    if len(src) == 0 or len(ref) == 0:
        return empty
    tol = int(tol_ns) if tol_ns else default_tol(ref, src, sample_ns)
    cands = _candidates(src, ref, tol, prior_ns)
    if prior_ns is not None:
        cands.append((int(prior_ns), int(src[len(src) // 2])))
    scored = sorted(((_score(src, ref, c, a, tol), c, a) for c, a in cands), key=lambda s: -s[0])
    if not scored or scored[0][0] == 0:
        return empty
    best = scored[0]
    # as good and not the same line seen from another anchor (drift moves the offset by the skew)
    ties = [s for s in scored if s[0] >= TIE * best[0]
            and abs(s[1] - best[1]) > 2 * tol + MAX_SKEW * abs(s[2] - best[2])]
    how = "intervals"
    if ties:  # a periodic train: the offset is known modulo its period; the prior chooses
        how = "prior"
        target = 0 if prior_ns is None else int(prior_ns)
        best = min([best, *ties], key=lambda s: abs(s[1] - target))
    si, ri = _walk(src, ref, best[1], best[2], tol)
    if not si:
        return empty
    off = int(np.median(ref[ri] - src[si]))
    return EdgePairs(src[si], ref[ri], off, how, [(c, round(f, 3)) for f, c, _ in scored[:5]], len(src) - len(si),
                     len(ref) - len(si))


def pair_codes(src_codes, ref_codes) -> EdgePairs:
    """Pairs of decoded barcodes ``[(t_ns, value)]`` by value (a value seen twice on one side is left out)."""
    def index(codes):
        seen = Counter(v for _, v in codes)
        return {v: t for t, v in codes if seen[v] == 1}

    a, b = index(src_codes), index(ref_codes)
    common = sorted(set(a) & set(b), key=lambda v: a[v])
    s = np.array([a[v] for v in common], dtype=np.int64)
    r = np.array([b[v] for v in common], dtype=np.int64)
    off = int(np.median(r - s)) if len(s) else 0
    return EdgePairs(s, r, off, "barcodes" if len(s) else "none", [], len(src_codes) - len(s),
                     len(ref_codes) - len(s))
