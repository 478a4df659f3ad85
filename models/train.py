"""``synchub train``: train the per-modality encoders contrastively on the simulated rig and export ONNX.

Needs the ``train`` extra (torch, onnx).  Seeded and CPU-only; the defaults run in well under 20 minutes on two
cores.  Steps:

1. render ``--recordings`` training recordings (seeds ``TRAIN_SEED_BASE + i``) and ``--heldout`` held-out ones
   (seeds ``HELDOUT_SEED_BASE + i``, never used for training) with wide augmentation (``simdata``);
2. train one encoder per modality with, for every pair of modalities:
   * a sequence loss: the mean similarity of the two embedding sequences over lags -2 s..+2 s, as a softmax over
     lags, must peak at the true lag (what the aligner's coarse search does);
   * a frame InfoNCE: each frame near an event must pick its partner frame among the other stream's frames
     shifted by +-60 ms..2 s (hard negatives from the same recording; +-20/40 ms are neither positive nor negative);
   plus the autoencoder reconstruction loss and the modality classifier loss;
3. measure top-1 lag accuracy (within +-1 frame) per pair on the held-out recordings;
4. export ONNX + metadata, reference outputs and ``metrics.json`` (``export.py``).
"""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import encoders, simdata
from .evaluate import ALL_PAIRS, EVAL_PAIRS, lag_curve, peak_lag
from .features import FRAME_RATE_HZ, MODALITIES

MODELS_DIR = pathlib.Path(__file__).resolve().parent
MAX_LAG = 2 * FRAME_RATE_HZ  # +-2 s


def add_arguments(p) -> None:
    p.add_argument("--out", default=str(MODELS_DIR), help="folder for the .onnx files, card data and references")
    p.add_argument("--recordings", type=int, default=480, help="training recordings (10 s each)")
    p.add_argument("--heldout", type=int, default=32, help="held-out recordings (20 s each) for the metrics")
    p.add_argument("--steps", type=int, default=900, help="optimizer steps (the shipped models: 900)")
    p.add_argument("--batch", type=int, default=8, help="recordings per step")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="tiny run (smoke test): few recordings and steps")
    p.add_argument("--no-export", action="store_true", help="train and evaluate only")
    p.add_argument("--init", metavar="DIR", help="start from the encoders exported in DIR (continue training)")


def _progress(i: int, n: int, t0: float, extra: str) -> None:
    frac = i / max(n, 1)
    bar = "#" * int(30 * frac)
    eta = (time.time() - t0) / max(frac, 1e-9) * (1 - frac)
    print(f"\r[{bar:<30}] {i}/{n} {extra} eta {eta:4.0f}s", end="", flush=True)


def build_dataset(seeds, duration_s: float, label: str):
    feats = {m: [] for m in MODALITIES}
    acts = []
    t0 = time.time()
    for k, s in enumerate(seeds):
        f, a = simdata.recording_features(int(s), duration_s)
        for m in MODALITIES:
            feats[m].append(f[m])
        acts.append(a)
        if k % 10 == 0 or k == len(seeds) - 1:
            _progress(k + 1, len(seeds), t0, f"rendering {label}")
    print()
    return {m: torch.from_numpy(np.stack(v)) for m, v in feats.items()}, torch.from_numpy(np.stack(acts))


def _gather_lags(ea: torch.Tensor, eb: torch.Tensor, max_lag: int) -> torch.Tensor:
    """(B, A, 2*max_lag+1): similarity of anchor frame i (central crop of a) with b[i + lag]."""
    T = ea.shape[1]
    anchors = torch.arange(max_lag, T - max_lag)
    sim = ea[:, anchors] @ eb.transpose(1, 2)  # (B, A, T)
    lags = torch.arange(-max_lag, max_lag + 1)
    idx = (anchors[:, None] + lags[None, :]).expand(ea.shape[0], -1, -1)
    return sim.gather(2, idx)


def pair_losses(ea, eb, act, max_lag, scale_seq, scale_frame):
    g = _gather_lags(ea, eb, max_lag)  # (B, A, L)
    B, A, L = g.shape
    target = torch.full((B,), max_lag, dtype=torch.long)
    seq = F.cross_entropy(g.mean(dim=1) * scale_seq, target)
    lags = torch.arange(-max_lag, max_lag + 1)
    near = (lags.abs() >= 1) & (lags.abs() <= 2)
    logits = (g * scale_frame).masked_fill(near[None, None, :], -1e4)
    ce = F.cross_entropy(logits.reshape(B * A, L), torch.full((B * A,), max_lag, dtype=torch.long), reduction="none")
    w = act[:, max_lag : max_lag + A].reshape(-1) + 0.05
    frame = (ce * w).sum() / w.sum()
    return seq, frame


def load_onnx_weights(model: torch.nn.Module, path: pathlib.Path) -> None:
    """Set ``model``'s parameters from an exported ONNX file's initializers (same names as the state dict)."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    state = model.state_dict()
    missing = [k for k in state if k not in inits]
    if missing:
        raise ValueError(f"{path}: no initializers for {missing}")
    model.load_state_dict({k: torch.from_numpy(inits[k].copy()) for k in state})


def _time_mask(x: torch.Tensor, gen: torch.Generator, p: float = 0.3) -> torch.Tensor:
    """Zero a random span (up to 1 s) in some recordings: missing data, valid channel included."""
    B, _, T = x.shape
    x = x.clone()
    for b in range(B):
        if torch.rand(1, generator=gen).item() < p:
            w = int(torch.randint(5, 50, (1,), generator=gen))
            s = int(torch.randint(0, T - w, (1,), generator=gen))
            x[b, :, s : s + w] = 0.0
    return x


def embed_all(models, feats, idx):
    with torch.no_grad():
        return {m: models[m](feats[m][idx])[0] for m in MODALITIES}


def evaluate(models, feats, pairs=EVAL_PAIRS, tol: int = 1, batch: int = 16) -> dict:
    """Top-1 lag accuracy (|peak| <= tol frames) and median |peak| per pair on held-out recordings."""
    for m in models.values():
        m.eval()
    n = next(iter(feats.values())).shape[0]
    embs = {m: [] for m in MODALITIES}
    for s in range(0, n, batch):
        e = embed_all(models, feats, slice(s, s + batch))
        for m in MODALITIES:
            embs[m].append(e[m].numpy())
    embs = {m: np.concatenate(v) for m, v in embs.items()}
    out = {}
    for a, b in pairs:
        peaks = [peak_lag(lag_curve(embs[a][i], embs[b][i], MAX_LAG)) for i in range(n)]
        peaks = np.abs(np.array(peaks))
        out[f"{a}-{b}"] = {"acc_1frame": float(np.mean(peaks <= tol)), "median_abs_lag_frames": float(np.median(peaks)),
                           "acc_5frames": float(np.mean(peaks <= 5))}
    return out


def train(args) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    n_rec, n_held, steps = (16, 4, 30) if args.quick else (args.recordings, args.heldout, args.steps)
    train_seeds = simdata.TRAIN_SEED_BASE + args.seed * 100_000 + np.arange(n_rec)
    held_seeds = simdata.HELDOUT_SEED_BASE + np.arange(n_held)
    assert not set(train_seeds) & set(held_seeds)
    feats, act = build_dataset(train_seeds, 10.0, "train")
    held, _ = build_dataset(held_seeds, 20.0, "held-out")
    models = {m: encoders.build(m, feats[m].shape[1]) for m in MODALITIES}
    cls = torch.nn.Linear(2 * encoders.EMB_DIM, len(MODALITIES))
    previous = []
    if args.init:
        for m in MODALITIES:
            load_onnx_weights(models[m], pathlib.Path(args.init) / f"{m}.onnx")
        cls.load_state_dict(models["imu"].cls.state_dict())
        prev = pathlib.Path(args.init) / "metrics.json"
        if prev.exists():
            old = json.loads(prev.read_text())["train"]
            previous = old.pop("previous_runs", []) + [old]
    log_scales = torch.nn.Parameter(torch.tensor([np.log(30.0), np.log(10.0)]))
    params = [p for m in models.values() for p in m.parameters()] + list(cls.parameters()) + [log_scales]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    hist = []
    for step in range(1, steps + 1):
        for m in models.values():
            m.train()
        idx = torch.randint(0, n_rec, (args.batch,), generator=gen)
        out = {m: models[m](_time_mask(feats[m][idx], gen)) for m in MODALITIES}
        a = act[idx]
        scales = log_scales.clamp(max=np.log(200.0)).exp()
        seq_l, frame_l = 0.0, 0.0
        for ma, mb in ALL_PAIRS:
            s, f = pair_losses(out[ma][0], out[mb][0], a, MAX_LAG, scales[0], scales[1])
            seq_l, frame_l = seq_l + s, frame_l + f
        seq_l, frame_l = seq_l / len(ALL_PAIRS), frame_l / len(ALL_PAIRS)
        rec_l = sum(o[1].mean() for o in out.values()) / len(out)
        cls_l = 0.0
        for k, m in enumerate(MODALITIES):
            e = out[m][0].detach()  # (B, T, d)
            logits = cls(torch.cat([e.mean(dim=1), e.std(dim=1)], dim=1))
            cls_l = cls_l + F.cross_entropy(logits, torch.full((args.batch,), k, dtype=torch.long))
        cls_l = cls_l / len(MODALITIES)
        loss = seq_l + frame_l + 0.1 * rec_l + 0.1 * cls_l
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        sched.step()
        hist.append([float(v.detach()) for v in (seq_l, frame_l, rec_l, cls_l)])
        if step % 10 == 0 or step == steps:
            h = np.mean(hist[-10:], axis=0)
            _progress(step, steps, t0, f"seq {h[0]:.3f} frame {h[1]:.3f} rec {h[2]:.3f} cls {h[3]:.3f}")
    print()
    for m in models.values():  # the shared classifier goes into every encoder
        m.cls.load_state_dict(cls.state_dict())
        m.eval()
    metrics = evaluate(models, held)
    return {
        "models": models,
        "metrics": {
            "heldout_lag_accuracy": metrics,
            "train": {
                "recordings": int(n_rec),
                "recording_s": 10.0,
                "heldout_recordings": int(n_held),
                "heldout_recording_s": 20.0,
                "train_seeds": [int(train_seeds[0]), int(train_seeds[-1])],
                "heldout_seeds": [int(held_seeds[0]), int(held_seeds[-1])],
                "steps": int(steps),
                "batch": int(args.batch),
                "lr": float(args.lr),
                "seed": int(args.seed),
                "threads": int(args.threads),
                "train_seconds": round(time.time() - t0, 1),
                "loss_scales": [round(float(v), 3) for v in log_scales.detach().exp()],
                "init": str(args.init) if args.init else None,
                "previous_runs": previous,
                "final_losses": dict(zip(["seq", "frame", "rec", "cls"], np.mean(hist[-50:], axis=0).round(4).tolist(),
                                         strict=True)),
            },
        },
    }


def run(args) -> int:
    t_start = time.time()
    result = train(args)
    metrics = result["metrics"]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({m: model.state_dict() for m, model in result["models"].items()}, out / "checkpoint.pt")
    for pair, v in metrics["heldout_lag_accuracy"].items():
        print(f"held-out {pair:18s} lag acc (+-1 frame) {v['acc_1frame']*100:5.1f} %  median |lag| "
              f"{v['median_abs_lag_frames']:.1f} frames")
    if not args.no_export:
        from . import export

        export.export_all(result["models"], out)
        metrics["onnx_heldout_lag_accuracy"] = export.evaluate_onnx(out, n=4 if args.quick else args.heldout)
    metrics["train"]["total_seconds"] = round(time.time() - t_start, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(f"wrote {out} in {time.time() - t_start:.0f} s")
    return 0
