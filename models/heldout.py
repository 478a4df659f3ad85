"""End-to-end held-out metrics of exported encoders (numpy + onnxruntime: no torch), as the aligner uses them:
raw samples -> ``EncoderRunner`` -> embedding sequences -> lag curve over +-2 s.

* simulator: ``export.evaluate_onnx`` (held-out seeds ``9_500_000 + i``);
* real-signal corpus: ``corpus_onnx`` on the corpus's **held-out** split (``corpus_data.load_heldout``): for
  every pair a recording has, the second stream's clock is shifted by ``offsets`` random offsets (+-1.5 s,
  sub-frame part included) and the peak of the lag curve is compared with the true offset.

Besides top-1 accuracy (+-1 frame) it reports the signed bias: ``bias_ms`` is the median of (true - found lag)
x 20 ms with the parabolic peak, > 0 when the second stream's events are matched to *later* moments of the first
(for ``audio-text``: markers matched to the sound's energy peak rather than its start come out > 0).
"""

from __future__ import annotations

import numpy as np

from .evaluate import lag_curve, peak_lag, refined_peak
from .features import FRAME_NS, FRAME_RATE_HZ

#: corpus pairs (first, second): the microphone first, as the aligner's reference
CORPUS_PAIRS = {"speech": (("audio", "text"),),
                "events": (("audio", "text"), ("audio", "imu"), ("audio", "video"), ("imu", "video"),
                           ("text", "imu"), ("text", "video"))}


def _common(ea, eb):
    ka, kb = ea.frame_times_ns // FRAME_NS, eb.frame_times_ns // FRAME_NS
    k0, k1 = max(ka[0], kb[0]), min(ka[-1], kb[-1]) + 1
    return ea.vectors[k0 - ka[0] : k1 - ka[0]], eb.vectors[k0 - kb[0] : k1 - kb[0]]


def corpus_onnx(model_dir, recordings: list[dict], offsets: int = 3, max_offset_s: float = 1.5, seed: int = 4243,
                runners: dict | None = None) -> dict:
    """Per ``kind/pair``: acc_1frame (integer peak), acc_1frame_parabolic, median/p90 |error| (frames), bias_ms,
    acc_1frame_lag0 (no shift: the training-time measure), n (trials)."""
    from .runner import EncoderRunner

    rng = np.random.default_rng(seed)
    runners = runners or {}
    res: dict[str, dict[str, list]] = {}
    for rec in recordings:
        st = rec["streams"]
        for a, b in CORPUS_PAIRS[rec["kind"]]:
            for m in (a, b):
                if m not in runners:
                    runners[m] = EncoderRunner.load(m, model_dir=model_dir)
            key = f"{rec['kind']}/{a}-{b}"
            r = res.setdefault(key, {"hit": [], "hit_p": [], "err": [], "signed": [], "hit0": []})
            ea = runners[a].embed(*st[a])
            va, vb = _common(ea, runners[b].embed(*st[b]))
            r["hit0"].append(abs(peak_lag(lag_curve(va, vb, 2 * FRAME_RATE_HZ))) <= 1)
            for _ in range(offsets):
                off = int(rng.uniform(-max_offset_s, max_offset_s) * 1e9)
                va, vb = _common(ea, runners[b].embed(st[b][0], st[b][1] + off))
                curve = lag_curve(va, vb, 2 * FRAME_RATE_HZ)
                true = off / FRAME_NS
                r["hit"].append(abs(peak_lag(curve) - true) <= 1.0)
                r["hit_p"].append(abs(refined_peak(curve) - true) <= 1.0)
                r["err"].append(abs(peak_lag(curve) - true))
                r["signed"].append(true - refined_peak(curve))
    out = {}
    for key, r in res.items():
        signed = np.array(r["signed"])
        near = np.abs(signed) <= 5  # the bias of the peaks that found the event, not of the misses
        out[key] = {"acc_1frame": float(np.mean(r["hit"])), "acc_1frame_parabolic": float(np.mean(r["hit_p"])),
                    "median_abs_err_frames": float(np.median(r["err"])),
                    "p90_abs_err_frames": float(np.percentile(r["err"], 90)),
                    "bias_ms": float(np.median(signed[near]) * FRAME_NS / 1e6) if near.any() else None,
                    "acc_1frame_lag0": float(np.mean(r["hit0"])), "n": len(r["hit"])}
    return out


def print_table(title: str, res: dict, log=print) -> None:
    log(title)
    for k, v in res.items():
        bias = v.get("bias_ms")
        log(f"  {k:22s} acc +-1 frame {v['acc_1frame'] * 100:5.1f} % (parabolic {v['acc_1frame_parabolic'] * 100:5.1f} %)"
            f"  median |err| {v.get('median_abs_err_frames', float('nan')):.2f} frames"
            + (f"  bias {bias:+.1f} ms" if bias is not None else ""))
