"""Training sets for the encoders: rendered in parallel worker processes, cached on disk (numpy only, no torch).

A ``DataSet`` is a stack of equally long recordings of some modalities on the common frame grid
(``features.py``): ``feats[m]`` ``(N, C, T)`` float16, ``act`` ``(N, T)`` (1 near an event's start or end: where
the frame loss weighs most) and ``onset`` ``(N, T)`` (frames where an event starts: its sound, its marker, its
cause; the frame loss tells those frames from their neighbours).  Every stream of a recording is on the
reference clock, so frame ``k`` of every modality shows the same moment (the positives of contrastive training).

* simulator: ``sim_set(seeds, duration_s)`` (``simdata``; all six modalities);
* real-signal corpus: ``corpus_data.py`` (audio + marker text, and for sound effects IMU + video).

``render(fn, jobs, workers)`` runs ``fn(*job)`` for every job in ``workers`` spawned processes (numpy only: the
workers never import torch) and returns the results in job order, so a set does not depend on ``workers``.
Sets are cached as ``.npz`` (never pickle) under ``default_dir()`` keyed by what made them, the source code of
the features and the simulator included, so a changed renderer never serves a stale set.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import pathlib
import sys
import time
from dataclasses import dataclass

import numpy as np

from synchub.drivers.sim import render as sim_render
from synchub.drivers.sim import world as sim_world

from . import features, simdata
from .features import FRAME_NS, MODALITIES

#: numpy/BLAS thread variables set to 1 in the workers (one process per core renders best)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
ACT_BEFORE_NS, ACT_AFTER_NS = 100_000_000, 300_000_000


def default_dir() -> pathlib.Path:
    """``$SYNCHUB_TRAIN_DATA`` or ``.cache/train-data`` under the current folder."""
    return pathlib.Path(os.environ.get("SYNCHUB_TRAIN_DATA") or ".cache/train-data")


def code_hash(*modules) -> str:
    """Short hash of the source of ``modules`` (what renders a set)."""
    h = hashlib.sha1()
    for m in modules:
        h.update(pathlib.Path(m.__file__).read_bytes())
    return h.hexdigest()[:12]


@dataclass
class DataSet:
    name: str
    feats: dict[str, np.ndarray]  # modality -> (N, C, T) float16
    act: np.ndarray  # (N, T) float16
    onset: np.ndarray  # (N, T) bool

    @property
    def n(self) -> int:
        return len(self.act)

    @property
    def frames(self) -> int:
        return self.act.shape[1]

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.feats)

    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.feats.values()) + self.act.nbytes + self.onset.nbytes

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        out = {f"{prefix}feat/{m}": v for m, v in self.feats.items()}
        out[f"{prefix}act"], out[f"{prefix}onset"] = self.act, self.onset
        return out

    @classmethod
    def from_arrays(cls, name: str, z, prefix: str = "") -> DataSet:
        feats = {m: np.asarray(z[f"{prefix}feat/{m}"]) for m in MODALITIES if f"{prefix}feat/{m}" in z}
        return cls(name, feats, np.asarray(z[f"{prefix}act"]), np.asarray(z[f"{prefix}onset"]))


def frame_marks(n_frames: int, starts_ns, ends_ns=(), onsets_ns=()) -> tuple[np.ndarray, np.ndarray]:
    """(act, onset) of one recording: ``act`` 1 from 100 ms before to 300 ms after every start and end;
    ``onset`` True in the frames of ``onsets_ns`` (defaults to the starts)."""
    act = np.zeros(n_frames, np.float16)
    for t in np.concatenate([np.asarray(starts_ns, np.int64), np.asarray(ends_ns, np.int64)]):
        a = max(0, int((t - ACT_BEFORE_NS) // FRAME_NS))
        b = min(n_frames, int((t + ACT_AFTER_NS) // FRAME_NS) + 1)
        act[a:b] = 1.0
    onset = np.zeros(n_frames, bool)
    on = np.asarray(onsets_ns if len(onsets_ns) else starts_ns, np.int64) // FRAME_NS
    onset[on[(on >= 0) & (on < n_frames)]] = True
    return act, onset


def featurize_all(streams: dict[str, tuple[object, np.ndarray]], n_frames: int) -> dict[str, np.ndarray]:
    """{modality: (C, n_frames) float16} of streams ``{modality: (samples, reference times)}`` on [0, n_frames)."""
    return {m: features.featurize(m, x, t, 0, n_frames).x.astype(np.float16) for m, (x, t) in streams.items()}


# ------------------------------------------------------------------------------------------------ simulator
def sim_item(seed: int, duration_s: float):
    """One simulator recording: (features, act, onset).  Worker function (numpy only)."""
    rec = simdata.make_recording(int(seed), float(duration_s))
    n = int(round(duration_s * 1e9 / FRAME_NS))
    ev = rec["_world"].events
    act, onset = frame_marks(n, ev["t_ns"], ev["t_ns"] + ev["dur_ns"])
    return featurize_all({m: (rec[m].samples, rec[m].times_ns) for m in MODALITIES}, n), act, onset


def sim_set(name: str, seeds, duration_s: float, workers: int = 1, cache_dir=None, log=print) -> DataSet:
    """Simulator recordings ``seeds`` of ``duration_s`` each, from the cache when there (``cache_dir=None``:
    ``default_dir()``; ``False``: no cache)."""
    seeds = np.asarray(seeds, dtype=np.int64)
    key = f"sim-{int(seeds[0])}-{len(seeds)}-{int(seeds[-1])}-{duration_s:g}s-" + \
        code_hash(features, simdata, sim_render, sim_world)
    path = None if cache_dir is False else pathlib.Path(cache_dir or default_dir()) / f"{key}.npz"
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                ds = DataSet.from_arrays(name, z)
            log(f"{name}: {ds.n} simulator recordings from {path}")
            return ds
        except (OSError, ValueError, KeyError) as exc:
            log(f"{name}: cache {path} unreadable ({exc}); rendering again")
    ds = stack(name, render(sim_item, [(int(s), duration_s) for s in seeds], workers, f"{name} (simulator)", log))
    if path is not None:
        save_npz(path, ds.arrays(), compress=False)
    return ds


# ------------------------------------------------------------------------------------------------ workers
def _call(job):
    fn, args = job
    return fn(*args)


def worker_modules() -> list[str]:
    """The heavy modules loaded in this process (a worker must have no torch)."""
    return sorted(m for m in ("torch", "onnx", "onnxruntime") if m in sys.modules)


@contextlib.contextmanager
def _single_threaded_env():
    old = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update(dict.fromkeys(THREAD_VARS, "1"))
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def render(fn, jobs: list[tuple], workers: int = 1, label: str = "", log=print) -> list:
    """``[fn(*job) for job in jobs]``, in ``workers`` spawned processes when > 1 (results in job order)."""
    t0 = time.time()
    out = []
    every = max(1, len(jobs) // 10) if len(jobs) >= 50 else len(jobs)

    def progress(k):
        if label and ((k + 1) % every == 0 or k + 1 == len(jobs)):
            log(f"  {label}: {k + 1}/{len(jobs)} rendered in {time.time() - t0:.0f} s")

    if workers <= 1 or len(jobs) <= 1:
        for k, j in enumerate(jobs):
            out.append(fn(*j))
            progress(k)
        return out
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch or CUDA
    chunk = max(1, min(16, len(jobs) // (workers * 8)))
    with _single_threaded_env(), ctx.Pool(min(workers, len(jobs))) as pool:
        for k, r in enumerate(pool.imap(_call, [(fn, j) for j in jobs], chunksize=chunk)):
            out.append(r)
            progress(k)
    return out


def stack(name: str, items: list) -> DataSet:
    """A ``DataSet`` of items ``(feats, act, onset)`` of equal length and modalities."""
    if not items:
        raise ValueError(f"{name}: no recordings")
    mods = [m for m in MODALITIES if m in items[0][0]]
    feats = {m: np.empty((len(items), *items[0][0][m].shape), np.float16) for m in mods}
    for i, (f, _a, _o) in enumerate(items):
        for m in mods:
            feats[m][i] = f[m]
    return DataSet(name, feats, np.stack([a for _f, a, _o in items]), np.stack([o for _f, _a, o in items]))


# ------------------------------------------------------------------------------------------------ npz files
def save_npz(path: pathlib.Path, arrays: dict[str, np.ndarray], meta: dict | None = None,
             compress: bool = True) -> None:
    """Write ``arrays`` (and ``meta`` as JSON) atomically; never pickle."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if meta is not None:
        arrays = {**arrays, "meta": np.array(json.dumps(meta))}
    tmp = path.with_name(path.name + ".tmp.npz")
    (np.savez_compressed if compress else np.savez)(tmp, **arrays)
    tmp.replace(path)


def read_meta(z) -> dict:
    return json.loads(str(z["meta"])) if "meta" in z else {}
