"""Encoder runtime: onnxruntime only (no torch), batched, execution provider selectable.

```python
runner = EncoderRunner.load("audio")                 # CPU; providers=["CUDAExecutionProvider", ...] on a Jetson
emb = runner.embed(samples, times_ns)                 # any length; windows are batched through the model
emb.frame_times_ns, emb.vectors, emb.anomaly, emb.modality_probs, emb.valid, emb.problems
```

A stream is featurized on the common frame grid (``features.py``), cut into overlapping windows of
``window_frames`` (each window keeps only its centre, ``margin_frames`` of context on each side), run as one
batch, and stitched back, so the result does not depend on how the stream was cut.

``load`` refuses a model whose metadata disagrees with what this runtime computes (modality, frame rate,
normalization, version, channels, window, embedding size, tensor names and shapes) with ``ModelMismatchError``; a
modality without a shipped model raises ``NoModelError``.  Models are read from ``model_dir``, else
``$SYNCHUB_MODEL_DIR``, else the shipped ones next to this file.  Bad samples (NaN, flat, empty, out-of-order) are
masked and counted in ``Embedding.problems`` and ``EncoderRunner.counts``; the runner does not raise on them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
from dataclasses import dataclass, field

import numpy as np

from synchub.extras import require

from . import features as F

log = logging.getLogger(__name__)

MODEL_DIR = pathlib.Path(__file__).resolve().parent
MODEL_DIR_ENV = "SYNCHUB_MODEL_DIR"
EMB_DIM = 32
SUPPORTED_VERSIONS = ("1",)
SUPPORTED_OPSETS = ("17",)
OUTPUT_NAMES = ("emb", "anomaly", "modality_logits")
MODALITIES = F.MODALITIES


class NoModelError(LookupError):
    """No encoder is shipped for this modality."""


class ModelMismatchError(ValueError):
    """An ONNX file whose metadata or graph does not match what the runner expects."""


@dataclass
class Embedding:
    frame_times_ns: np.ndarray  # int64 (T,) frame centres on the stream's own clock
    vectors: np.ndarray  # float32 (T, d), L2-normalized
    anomaly: np.ndarray  # float32 (T,) reconstruction error per frame
    modality_probs: np.ndarray  # float32 (len(MODALITIES),)
    valid: np.ndarray  # float32 (T,) fraction of each frame backed by real samples (0 = masked)
    problems: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame_times_ns)


def model_path(modality: str, model_dir=None) -> pathlib.Path:
    """``<model_dir>/<modality>.onnx``; by default from ``$SYNCHUB_MODEL_DIR`` (e.g. to benchmark a freshly
    trained set: ``SYNCHUB_MODEL_DIR=out synchub bench align --real``), else the shipped models."""
    return pathlib.Path(model_dir or os.environ.get(MODEL_DIR_ENV) or MODEL_DIR) / f"{modality}.onnx"


def fingerprints(modalities, model_dir=None) -> dict[str, str | None]:
    """``{modality: first 16 hex digits of the SHA-256 of its .onnx file}`` (None where there is none): what a
    sigma table fitted with these encoders records, so that a table and another set of encoders are told apart."""
    out: dict[str, str | None] = {}
    for m in sorted(set(modalities)):
        try:
            out[m] = hashlib.sha256(model_path(m, model_dir).read_bytes()).hexdigest()[:16]
        except OSError:
            out[m] = None
    return out


def available_modalities(model_dir=None) -> list[str]:
    return [m for m in MODALITIES if model_path(m, model_dir).exists()]


class EncoderRunner:
    def __init__(self, session, meta: dict[str, str], path: pathlib.Path, max_batch: int = 4):
        self.session = session
        self.path = path
        self.modality = meta["modality"]
        self.max_batch = int(max_batch)
        self.window = int(meta["window_frames"])
        self.margin = int(meta["margin_frames"])
        self.in_channels = int(meta["in_channels"])
        self.input_name = meta["input_name"]
        self.meta: dict = {
            "modality": self.modality,
            "frame_rate_hz": int(meta["frame_rate_hz"]),
            "window_frames": self.window,
            "margin_frames": self.margin,
            "emb_dim": int(meta["emb_dim"]),
            "in_channels": self.in_channels,
            "normalization": meta["normalization"],
            "version": meta["version"],
            "opset": int(meta["opset"]),
            "sample_shape": meta.get("sample_shape", ""),
            "providers": list(session.get_providers()),
            "path": str(path),
        }
        self.counts: dict[str, int] = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, modality: str, providers=None, model_dir=None, path=None, threads: int = 1,
             max_batch: int = 4) -> EncoderRunner:
        """Load ``<model_dir>/<modality>.onnx`` and check its metadata.  ``providers``: onnxruntime execution
        providers in order of preference (default CPU); ones not available on this machine are skipped.
        ``synchub.extras.MissingExtra`` (naming the ``neural`` extra) when onnxruntime is not installed."""
        ort = require("onnxruntime", "the ONNX encoders (neural alignment, fusion)")

        if modality not in MODALITIES:
            raise NoModelError(f"no encoder for modality {modality!r} (encoders exist for: {', '.join(MODALITIES)})")
        p = pathlib.Path(path) if path else model_path(modality, model_dir)
        if not p.exists():
            raise NoModelError(f"no encoder model for modality {modality!r}: {p} does not exist")
        wanted = list(providers) if providers else ["CPUExecutionProvider"]
        have = ort.get_available_providers()
        chosen = [pr for pr in wanted if (pr[0] if isinstance(pr, tuple) else pr) in have]
        if not chosen:
            raise ValueError(f"none of the execution providers {wanted} is available (available: {have})")
        skipped = [pr for pr in wanted if pr not in chosen]
        if skipped:
            log.warning("%s encoder: execution providers not available here, skipped: %s", modality, skipped)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(p), sess_options=opts, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
            raise ModelMismatchError(f"{p}: not a loadable ONNX model ({exc})") from exc
        meta = dict(session.get_modelmeta().custom_metadata_map)
        check_metadata(modality, meta, session, p)
        return cls(session, meta, p, max_batch=max_batch)

    # ------------------------------------------------------------------ inference
    def run_windows(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw model outputs for a batch of feature windows ``(B, C, window_frames)``, run ``max_batch`` at a time
        (on one x86 core, per-window time measured 0.42 ms at batch 1-4 but 0.9 ms at 16: small batches win)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (self.in_channels, self.window):
            raise ValueError(f"{self.modality}: windows must be (B, {self.in_channels}, {self.window}), got {x.shape}")
        outs = [self.session.run(list(OUTPUT_NAMES), {self.input_name: x[s : s + self.max_batch]})
                for s in range(0, len(x), self.max_batch)]
        return tuple(np.concatenate([o[k] for o in outs]) for k in range(3))  # type: ignore[return-value]

    def embed_features(self, feats: F.Features) -> Embedding:
        x = feats.x
        T = x.shape[1]
        problems = dict(feats.problems)
        if x.shape[0] != self.in_channels:
            raise ValueError(f"{self.modality}: stream gives {x.shape[0]} feature channels, the model takes "
                             f"{self.in_channels} (sample shape {self.meta['sample_shape']})")
        if T == 0:
            self._count(problems)
            return Embedding(feats.frame_times_ns, np.zeros((0, EMB_DIM), np.float32), np.zeros(0, np.float32),
                             np.full(len(MODALITIES), 1.0 / len(MODALITIES), np.float32), feats.valid, problems)
        m, w = self.margin, self.window
        step = w - 2 * m
        nw = -(-T // step)
        padded = np.zeros((self.in_channels, nw * step + 2 * m), np.float32)
        padded[:, m : m + T] = x
        idx = np.arange(nw)[:, None] * step + np.arange(w)[None, :]
        windows = padded[:, idx].transpose(1, 0, 2)  # (nw, C, w)
        emb, anomaly, logits = self.run_windows(windows)
        vectors = emb[:, m : m + step].reshape(-1, emb.shape[2])[:T]
        anom = anomaly[:, m : m + step].reshape(-1)[:T]
        z = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        cover = np.array([feats.valid[i * step : (i + 1) * step].mean() for i in range(nw)]) + 1e-6
        probs = (probs * cover[:, None]).sum(axis=0) / cover.sum()
        masked = int(np.sum(feats.valid <= 0))
        if masked:
            problems["masked_frames"] = masked
        self._count(problems)
        return Embedding(feats.frame_times_ns, np.ascontiguousarray(vectors, np.float32), anom.astype(np.float32),
                         probs.astype(np.float32), feats.valid, problems)

    def embed(self, samples, times_ns, span_ns: tuple[int, int] | None = None) -> Embedding:
        """Embeddings of one stream span: ``samples`` (n, ...) array or list[str] (text), ``times_ns`` (n,) on
        the stream's own clock.  The frames cover the samples' time range, or ``span_ns = (start, end)`` when
        given (useful for irregular streams such as text, whose first and last lines do not mark the span)."""
        k0 = n = None
        if span_ns is not None:
            k0 = int(span_ns[0]) // F.FRAME_NS
            n = max(0, (int(span_ns[1]) - 1) // F.FRAME_NS - k0 + 1)
        return self.embed_features(F.featurize(self.modality, samples, times_ns, k0, n))

    def _count(self, problems: dict[str, int]) -> None:
        for k, v in problems.items():
            self.counts[k] = self.counts.get(k, 0) + int(v)
        if problems:
            log.debug("%s encoder input problems: %s", self.modality, problems)


def check_metadata(modality: str, meta: dict[str, str], session, path) -> None:
    """Raise ``ModelMismatchError`` unless the model's metadata and graph match this runtime."""

    def bad(what: str, got, want) -> ModelMismatchError:
        return ModelMismatchError(f"{path}: {what} is {got!r} but the runner expects {want!r}; "
                                  f"re-export the model (synchub train) or use a matching synchub version")

    need = ("modality", "frame_rate_hz", "window_frames", "margin_frames", "emb_dim", "in_channels",
            "normalization", "version", "opset", "input_name", "modalities")
    missing = [k for k in need if k not in meta]
    if missing:
        raise ModelMismatchError(f"{path}: metadata lacks {', '.join(missing)}; not a synchub encoder export")
    expect = {
        "modality": modality,
        "frame_rate_hz": str(F.FRAME_RATE_HZ),
        "emb_dim": str(EMB_DIM),
        "normalization": F.NORMALIZATION,
        "modalities": ",".join(MODALITIES),
    }
    if modality != "telemetry":
        expect["in_channels"] = str(F.channels(modality))
    for k, want in expect.items():
        if meta[k] != want:
            raise bad(f"metadata {k}", meta[k], want)
    if meta["version"] not in SUPPORTED_VERSIONS:
        raise bad("metadata version", meta["version"], SUPPORTED_VERSIONS)
    if meta["opset"] not in SUPPORTED_OPSETS:
        raise bad("metadata opset", meta["opset"], SUPPORTED_OPSETS)
    try:
        window, margin, in_ch = int(meta["window_frames"]), int(meta["margin_frames"]), int(meta["in_channels"])
    except ValueError as exc:
        raise ModelMismatchError(f"{path}: non-integer window/margin/channels in metadata ({exc})") from None
    if not 0 <= 2 * margin < window:
        raise bad("margin_frames (must be < window/2)", margin, f"< {window / 2}")
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != meta["input_name"]:
        raise bad("graph input", [i.name for i in inputs], [meta["input_name"]])
    shape = list(inputs[0].shape)
    if len(shape) != 3 or shape[1:] != [in_ch, window]:
        raise bad("graph input shape", shape, ["batch", in_ch, window])
    outs = {o.name: list(o.shape) for o in session.get_outputs()}
    if tuple(outs) != OUTPUT_NAMES:
        raise bad("graph outputs", list(outs), list(OUTPUT_NAMES))
    if outs["emb"][1:] != [window, EMB_DIM]:
        raise bad("graph output emb shape", outs["emb"], ["batch", window, EMB_DIM])
    if outs["modality_logits"][1:] != [len(MODALITIES)]:
        raise bad("graph output modality_logits shape", outs["modality_logits"], ["batch", len(MODALITIES)])
