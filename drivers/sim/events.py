"""What the renderers share: which of the world's events touch a span of time (cached per kind), and the shapes
and draws they build signals from (envelopes, window overlaps, rotations, random augmentation draws).  Pure."""

from __future__ import annotations

import weakref

import numpy as np

from .world import World


def events_in(world: World, kind: int, lo_ns: int, hi_ns: int, tail_ns: int) -> np.ndarray:
    """Events of ``kind`` whose support ``[t0, t0 + dur + tail)`` intersects ``[lo_ns, hi_ns)``."""
    ev = kind_cache(world)[kind]
    if len(ev) == 0:
        return ev
    max_dur = int(ev["dur_ns"].max())
    i0 = int(np.searchsorted(ev["t_ns"], lo_ns - max_dur - tail_ns, side="left"))
    i1 = int(np.searchsorted(ev["t_ns"], hi_ns, side="left"))
    cand = ev[i0:i1]
    return cand[cand["t_ns"] + cand["dur_ns"] + tail_ns > lo_ns]


_KIND_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def kind_cache(world: World) -> dict[int, np.ndarray]:
    c = _KIND_CACHE.get(world)
    if c is None:
        c = {k: world.of_kind(k) for k in range(5)}
        _KIND_CACHE[world] = c
    return c


def span(t: np.ndarray, a_ns: int, b_ns: int) -> slice:
    """Indices of sorted ``t`` inside ``[a_ns, b_ns)``."""
    return slice(int(np.searchsorted(t, a_ns, side="left")), int(np.searchsorted(t, b_ns, side="left")))


def hann_env(dt_s: np.ndarray, dur_s: float) -> np.ndarray:
    """Smooth 0 -> 1 -> 0 envelope over ``[0, dur]`` (zero outside)."""
    x = np.clip(dt_s / max(dur_s, 1e-9), 0.0, 1.0)
    return np.sin(np.pi * x) ** 2


def window_overlap(ev: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per window ``[lo_i, hi_i)``: sum over events of ``amp * overlap / window`` (duration events)."""
    out = np.zeros(len(lo), dtype=np.float64)
    w = np.maximum(hi - lo, 1).astype(np.float64)
    for e in ev:
        t0, t1 = int(e["t_ns"]), int(e["t_ns"] + e["dur_ns"])
        ov = np.minimum(hi, t1) - np.maximum(lo, t0)
        out += float(e["amp"]) * np.clip(ov, 0, None) / w
    return out


def rotation_matrix(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    r_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    r_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return r_z @ r_y @ r_x


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
