"""Training, validation and held-out data from the real-signal corpus (``corpus/``), rendered once into compact
``.npz`` files that a training run loads (a GPU machine has no TTS engines or sound packages).

``prepare(out_dir)`` (``synchub train --prepare-corpus``) writes two files under ``out_dir``:

* ``corpus.npz``: the **train** split (training) and the **validation** split (model selection), featurized on
  the 50 Hz grid with every stream on the reference clock: ``speech`` recordings (microphone + marker log) and
  ``events`` recordings (microphone + marker log + IMU + camera).  Audio, IMU and video features are stored as int8
  (1/16 steps over the +-8 clip range; text as float16): ~0.5-5 kB per second of recording.
* ``corpus-heldout.npz``: the **held-out** split as raw streams (16-bit microphone samples, marker lines, IMU,
  camera frames, reference times), for the final end-to-end metrics only; training never opens it.

What a marker means is the corpus's truth: the start of its sound (the first sample of the dry sound above its
threshold, ``corpus/audio.py``), not its energy peak.  Lines are stamped at that onset plus the rig's logging
latency (0-2 ms), and the streams are on the reference clock, so lag 0 between the marker log and the microphone
*is* "marker = sound start"; ``onset`` marks those frames (and the physical cause the IMU and camera see).
"""

from __future__ import annotations

import pathlib

import numpy as np

from . import features
from .dataset import DataSet, code_hash, featurize_all, frame_marks, read_meta, render, save_npz, stack
from .features import FRAME_NS

KINDS = {"speech": ("audio", "text"), "events": ("imu", "audio", "video", "text")}
#: (split, kind) -> (recordings, seconds each) written by ``prepare`` (sized so both files stay under ~60 MB)
SIZES = {
    ("train", "speech"): (800, 30.0), ("train", "events"): (240, 30.0),
    ("validation", "speech"): (60, 20.0), ("validation", "events"): (30, 20.0),
    ("heldout", "speech"): (24, 20.0), ("heldout", "events"): (12, 20.0),
}
QUICK_SIZES = {k: (2 if k[1] == "speech" else 1, 10.0) for k in SIZES}
INT8_STEP = 16.0  # int8 storage: value * 16, +-CLIP * 16 = +-128 -> clipped to 127
INT8_MODALITIES = ("audio", "imu", "video")
FILE, HELDOUT_FILE = "corpus.npz", "corpus-heldout.npz"
FORMAT = "1"


class CorpusDataError(RuntimeError):
    """A corpus data file that is missing, unreadable, or made by other feature code."""


def features_hash() -> str:
    return code_hash(features)


def pack(modality: str, x: np.ndarray) -> np.ndarray:
    if modality in INT8_MODALITIES:
        return np.clip(np.rint(np.asarray(x, np.float32) * INT8_STEP), -127, 127).astype(np.int8)
    return np.asarray(x, np.float16)


def unpack(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) / INT8_STEP).astype(np.float16) if x.dtype == np.int8 else x.astype(np.float16)


# ------------------------------------------------------------------------------------------------ workers
def _render(spec, cache_root):
    from . import corpus

    return corpus.render(spec, corpus.ClipCache(cache_root))


def train_item(spec, cache_root):
    """One corpus recording as training data: (packed features, act, onset).  Worker function (numpy only)."""
    rec = _render(spec, cache_root)
    n = int(round(spec.duration_s * 1e9 / FRAME_NS))
    ev, mk = rec.events, rec.markers
    marks = np.concatenate([ev["onset_ns"], ev["cause_ns"], mk["log_ns"][mk["event"] >= 0]])
    act, onset = frame_marks(n, ev["onset_ns"], ev["end_ns"], marks)
    feats = featurize_all(rec.on_reference(), n)
    return {m: pack(m, v) for m, v in feats.items()}, act, onset


def _times(t: np.ndarray) -> dict[str, np.ndarray]:
    """Reference times, as (first, step, count) when exactly regular (the microphone), else in full."""
    t = np.asarray(t, np.int64)
    if len(t) > 2 and np.all(np.diff(t) == t[1] - t[0]):
        return {"t0dtn": np.array([t[0], t[1] - t[0], len(t)], np.int64)}
    return {"t": t}


def heldout_item(spec, cache_root) -> dict[str, np.ndarray]:
    """One held-out recording's raw streams on the reference clock (lossless: the microphone is a 16-bit ADC)."""
    rec = _render(spec, cache_root)
    out = {}
    for m, (x, t) in rec.on_reference().items():
        if m == "audio":
            x = np.rint(np.asarray(x, np.float64) * 32768.0).astype(np.int16)
        elif m == "text":
            x = np.array(list(x), dtype=str)
        out.update({f"{m}/x": np.asarray(x), **{f"{m}/{k}": v for k, v in _times(t).items()}})
    return out


# ------------------------------------------------------------------------------------------------ files
def prepare(out_dir, sizes: dict | None = None, workers: int = 1, cache_root=None, log=print) -> dict:
    """Render the corpus's train, validation and held-out data into ``out_dir`` (needs the corpus's Debian
    packages and soundfile); returns {file: bytes}."""
    from . import corpus

    sizes = sizes or SIZES
    cache_root = str(cache_root or corpus.default_cache_dir())
    out_dir = pathlib.Path(out_dir)
    arrays, meta = {}, {"format": FORMAT, "features": features_hash(), "frame_ns": FRAME_NS, "sets": {}}
    for split in ("train", "validation"):
        for kind in KINDS:
            n, dur = sizes[(split, kind)]
            specs = corpus.plan(split, n, kind, dur)
            items = render(train_item, [(s, cache_root) for s in specs], workers, f"corpus {split} {kind}", log)
            ds = stack(f"{split}/{kind}", items)
            arrays.update(ds.arrays(f"{split}/{kind}/"))
            meta["sets"][f"{split}/{kind}"] = {"recordings": [s.name for s in specs], "seconds": dur,
                                               "seeds": [specs[0].seed, specs[-1].seed]}
    save_npz(out_dir / FILE, arrays, meta)
    h_arrays, h_meta = {}, {"format": FORMAT, "recordings": []}
    for kind in KINDS:
        n, dur = sizes[("heldout", kind)]
        specs = corpus.plan("heldout", n, kind, dur)
        recs = render(heldout_item, [(s, cache_root) for s in specs], workers, f"corpus heldout {kind}", log)
        for s, r in zip(specs, recs, strict=True):
            h_arrays.update({f"{s.name}/{k}": v for k, v in r.items()})
            h_meta["recordings"].append({"name": s.name, "kind": kind, "seconds": dur, "seed": s.seed})
    save_npz(out_dir / HELDOUT_FILE, h_arrays, h_meta)
    return {str(out_dir / f): (out_dir / f).stat().st_size for f in (FILE, HELDOUT_FILE)}


def _open(path: pathlib.Path):
    if not path.exists():
        raise CorpusDataError(f"{path} does not exist; make it with `synchub train --prepare-corpus` (needs the "
                              f"corpus's Debian packages: models/corpus/DATA_CARD.md)")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CorpusDataError(f"{path}: unreadable ({exc}); make it again with `synchub train --prepare-corpus`")\
            from None


def load(path) -> tuple[dict[str, dict[str, DataSet]], dict]:
    """``({"train": {"speech": DataSet, "events": DataSet}, "validation": {...}}, meta)`` from ``corpus.npz``."""
    path = pathlib.Path(path)
    with _open(path) as z:
        meta = read_meta(z)
        if meta.get("format") != FORMAT or meta.get("features") != features_hash():
            raise CorpusDataError(f"{path} was made by other feature code (features {meta.get('features')}, this "
                                  f"is {features_hash()}); make it again with `synchub train --prepare-corpus`")
        out: dict[str, dict[str, DataSet]] = {}
        for key in meta["sets"]:
            split, kind = key.split("/")
            ds = DataSet.from_arrays(key, z, key + "/")
            ds.feats = {m: unpack(v) for m, v in ds.feats.items()}
            out.setdefault(split, {})[kind] = ds
    return out, meta


def load_heldout(path) -> list[dict]:
    """Held-out recordings: ``[{"name", "kind", "streams": {modality: (samples, reference times ns)}}]``."""
    path = pathlib.Path(path)
    out = []
    with _open(path) as z:
        for r in read_meta(z)["recordings"]:
            streams = {}
            for m in KINDS[r["kind"]]:
                p = f"{r['name']}/{m}/"
                if p + "t0dtn" in z:
                    t0, dt, n = (int(v) for v in z[p + "t0dtn"])
                    t = t0 + dt * np.arange(n, dtype=np.int64)
                else:
                    t = np.asarray(z[p + "t"])
                x = np.asarray(z[p + "x"])
                if m == "audio":
                    x = (x.astype(np.float32) / 32768.0)[:, None]
                elif m == "text":
                    x = [str(s) for s in x]
                streams[m] = (x, t)
            out.append({**r, "streams": streams})
    return out

