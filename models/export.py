"""Export trained encoders to ONNX (pinned opset) with metadata, plus reference outputs for the reproduction test.

Each ``<modality>.onnx`` takes ``features`` float32 ``(batch, C, WINDOW_FRAMES)`` and returns ``emb``
``(batch, WINDOW_FRAMES, EMB_DIM)``, ``anomaly`` ``(batch, WINDOW_FRAMES)`` and ``modality_logits``
``(batch, len(MODALITIES))``.  ``metadata_props`` say what the runner must agree with (see ``runner.py``).
Needs torch and onnx (train extra).
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
import torch

from . import encoders, simdata
from .evaluate import EVAL_PAIRS, lag_curve, peak_lag, refined_peak
from .features import FRAME_NS, FRAME_RATE_HZ, MODALITIES, NORMALIZATION

OPSET = 17
WINDOW_FRAMES = 256
MODEL_VERSION = "1"
INPUT_NAME = "features"
OUTPUT_NAMES = ("emb", "anomaly", "modality_logits")
SAMPLE_SHAPES = {"imu": "6", "audio": "1", "video": "24,32", "image": "24,32", "text": "str", "telemetry": "5"}
MAX_BYTES = 1_000_000


def metadata(modality: str, in_ch: int) -> dict[str, str]:
    return {
        "modality": modality,
        "frame_rate_hz": str(FRAME_RATE_HZ),
        "window_frames": str(WINDOW_FRAMES),
        "margin_frames": str(encoders.receptive_margin(modality)),
        "emb_dim": str(encoders.EMB_DIM),
        "in_channels": str(in_ch),
        "normalization": NORMALIZATION,
        "version": MODEL_VERSION,
        "opset": str(OPSET),
        "input_name": INPUT_NAME,
        "input_shape": f"batch,{in_ch},{WINDOW_FRAMES}",
        "output_names": ",".join(OUTPUT_NAMES),
        "modalities": ",".join(MODALITIES),
        "sample_shape": SAMPLE_SHAPES[modality],
    }


def export_one(model: encoders.Encoder, path: pathlib.Path) -> pathlib.Path:
    model.eval()
    x = torch.zeros(1, model.in_ch, WINDOW_FRAMES)
    axes = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}}
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                      output_names=list(OUTPUT_NAMES), dynamic_axes=axes, do_constant_folding=True)
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for k, v in metadata(model.modality, model.in_ch).items():
        proto.metadata_props.add(key=k, value=v)
    proto.doc_string = f"synchub {model.modality} encoder v{MODEL_VERSION}"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise RuntimeError(f"{path} is {size} bytes, over the {MAX_BYTES} byte limit")
    return path


def reference_inputs(seed: int = simdata.HELDOUT_SEED_BASE + 999) -> dict[str, np.ndarray]:
    """Fixed inputs (1, C, WINDOW_FRAMES) per modality from a held-out recording."""
    feats, _ = simdata.recording_features(seed, WINDOW_FRAMES * FRAME_NS / 1e9 + 0.5)
    return {m: feats[m][None, :, :WINDOW_FRAMES].astype(np.float32) for m in MODALITIES}


def export_all(models: dict[str, encoders.Encoder], out: pathlib.Path) -> None:
    out = pathlib.Path(out)
    ref = {}
    for m, model in models.items():
        export_one(model, out / f"{m}.onnx")
    inputs = reference_inputs()
    with torch.no_grad():
        for m, model in models.items():
            model.eval()
            emb, anomaly, logits = model(torch.from_numpy(inputs[m]))
            ref[f"{m}/features"] = inputs[m]
            ref[f"{m}/emb"] = emb.numpy()
            ref[f"{m}/anomaly"] = anomaly.numpy()
            ref[f"{m}/modality_logits"] = logits.numpy()
    np.savez_compressed(out / "reference_outputs.npz", **ref)
    print(f"exported {len(models)} encoders to {out}")


def evaluate_onnx(out: pathlib.Path, n: int = 48, duration_s: float = 20.0, max_offset_s: float = 1.5) -> dict:
    """End to end through ``EncoderRunner``: held-out recordings, stream b shifted by a random offset (+-1.5 s,
    sub-frame), both embedded from raw samples; is the lag-curve peak within +-1 frame of the true offset?"""
    from .runner import EncoderRunner

    runners = {m: EncoderRunner.load(m, model_dir=out) for m in MODALITIES}
    rng = np.random.default_rng(4242)
    hits = {f"{a}-{b}": [] for a, b in EVAL_PAIRS}
    errs = {k: [] for k in hits}
    for i in range(n):
        rec = simdata.make_recording(simdata.HELDOUT_SEED_BASE + 500_000 + i, duration_s)
        for a, b in EVAL_PAIRS:
            off = int(rng.uniform(-max_offset_s, max_offset_s) * 1e9)
            ea = runners[a].embed(rec[a].samples, rec[a].times_ns)
            eb = runners[b].embed(rec[b].samples, rec[b].times_ns + off)
            ka = ea.frame_times_ns // FRAME_NS
            kb = eb.frame_times_ns // FRAME_NS
            k0, k1 = max(ka[0], kb[0]), min(ka[-1], kb[-1]) + 1
            va = ea.vectors[k0 - ka[0] : k1 - ka[0]]
            vb = eb.vectors[k0 - kb[0] : k1 - kb[0]]
            curve = lag_curve(va, vb, 2 * FRAME_RATE_HZ)
            e = abs(peak_lag(curve) - off / FRAME_NS)
            hits[f"{a}-{b}"].append((e <= 1.0, abs(refined_peak(curve) - off / FRAME_NS) <= 1.0))
            errs[f"{a}-{b}"].append(e)
    return {k: {"acc_1frame": float(np.mean([h[0] for h in v])),
                "acc_1frame_parabolic": float(np.mean([h[1] for h in v])),
                "median_abs_err_frames": float(np.median(errs[k])),
                "p90_abs_err_frames": float(np.percentile(errs[k], 90))}
            for k, v in hits.items()}
