"""``synchub train``: train the per-modality encoders on the simulator and the real-signal corpus; export ONNX.

Needs the ``train`` extra (torch, onnx).  Seeded; runs on a CPU (default two threads) or a CUDA device
(``--device``, ``auto`` picks CUDA when torch sees one).  Steps:

1. data (``dataset.py``, rendered in ``--workers`` processes, numpy only, cached under ``--data``):
   * simulator: ``--recordings`` training recordings of 10 s (seeds ``TRAIN_SEED_BASE + seed * 100_000 + i``),
     ``--val-recordings`` validation recordings of 20 s (``VALIDATION_SEED_BASE + i``) and ``--heldout`` held-out
     ones (``HELDOUT_SEED_BASE + i``, never trained on, never used to select);
   * real-signal corpus (``corpus_data.py``): its train split (training) and validation split (model
     selection), loaded from ``<data>/corpus.npz``, which ``--prepare-corpus`` renders where the corpus's Debian
     packages are installed (a GPU machine without them loads the file);
2. train (``trainer.py``): sequence loss + frame InfoNCE per pair, simulator and corpus pairs together;
   validation every ``--eval-every`` steps keeps the best state;
3. final metrics on held-out data only: lag accuracy (+-1 frame) per pair on the simulator (training-time, and
   end to end through ONNX) and on the corpus's held-out split (end to end, ``heldout.py``, from
   ``<data>/corpus-heldout.npz``);
4. export ONNX + metadata, reference outputs, ``checkpoint.pt`` and ``metrics.json`` to ``--out``.

``--evaluate DIR`` measures the held-out metrics of the encoders exported in DIR (e.g. the shipped ones).
"""

from __future__ import annotations

import json
import os
import pathlib
import time

import numpy as np
import torch

from synchub.argtypes import nonnegative, positive
from synchub.errors import UserError

from . import corpus_data, dataset, encoders, heldout, simdata
from .evaluate import EVAL_PAIRS, lag_curve, peak_lag
from .features import MODALITIES
from .trainer import MAX_LAG, Trainer, fit, pick_device

MODELS_DIR = pathlib.Path(__file__).resolve().parent
VALIDATION_SEED_BASE = 5_000_000


def add_arguments(p) -> None:
    p.add_argument("--out", default=str(MODELS_DIR), help="folder for the .onnx files, card data and references")
    p.add_argument("--recordings", type=int, default=480, help="simulator training recordings (10 s each)")
    p.add_argument("--heldout", type=int, default=32, help="simulator held-out recordings (20 s) for the metrics")
    p.add_argument("--val-recordings", type=int, default=64, help="simulator validation recordings (20 s)")
    p.add_argument("--steps", type=int, default=900, help="optimizer steps (the shipped set: 3,196 of batch 32 on a GPU)")
    p.add_argument("--batch", type=int, default=8, help="simulator recordings per step")
    p.add_argument("--corpus-batch", type=int, default=None, help="corpus crops (10 s) per step (default: --batch)")
    p.add_argument("--corpus-weight", type=nonnegative, default=2.0,
                   help="weight of the corpus pairs' losses (the shipped set: 2)")
    p.add_argument("--lr", type=positive, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=encoders.HIDDEN, help="channels of each encoder's conv stack")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: cuda when available")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 16),
                   help="processes rendering data (numpy only; the data do not depend on it)")
    p.add_argument("--data", default=None, help="folder of cached training data (default: $SYNCHUB_TRAIN_DATA or "
                                                ".cache/train-data)")
    p.add_argument("--corpus", default="auto", help="corpus data file, 'off', or 'auto' (<data>/corpus.npz if there)")
    p.add_argument("--eval-every", type=int, default=0, help="validate every N steps (default: steps/20)")
    p.add_argument("--patience", type=int, default=0, help="stop after N validations without a better one (0: never)")
    p.add_argument("--time-budget", type=nonnegative, default=0.0, metavar="S",
                   help="shorten the run (schedule included) if its first steps show it would train longer than S s")
    p.add_argument("--no-strict-onsets", action="store_true", help="onset frames' neighbours are not negatives")
    p.add_argument("--quick", action="store_true", help="tiny run (smoke test): few recordings and steps")
    p.add_argument("--no-export", action="store_true", help="train and evaluate only")
    p.add_argument("--init", metavar="DIR", help="start from the encoders exported in DIR (continue training)")
    p.add_argument("--prepare-corpus", action="store_true",
                   help="render the corpus's train/validation/held-out data into <data> and exit")
    p.add_argument("--evaluate", metavar="DIR", help="held-out metrics of the encoders exported in DIR, then exit")
    p.add_argument("--eval-json", metavar="FILE", help="with --evaluate: write the metrics to FILE")


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


def init_models(folder: pathlib.Path, chans: dict) -> dict:
    import onnx
    from onnx import numpy_helper

    out = {}
    for m in MODALITIES:
        path = folder / f"{m}.onnx"
        w = {i.name: i for i in onnx.load(str(path)).graph.initializer}
        hidden = int(numpy_helper.to_array(w["inp.weight"]).shape[0])
        out[m] = encoders.build(m, chans[m], hidden)
        load_onnx_weights(out[m], path)
    return out


def evaluate(models, held, pairs=EVAL_PAIRS, tol: int = 1, batch: int = 16) -> dict:
    """Top-1 lag accuracy (|peak| <= tol frames) and median |peak| per pair on held-out simulator recordings
    (training-time measure: features of the whole recording, true lag 0)."""
    embs = {m: [] for m in MODALITIES}
    with torch.no_grad():
        for m in MODALITIES:
            models[m].eval()
            for s in range(0, held.n, batch):
                embs[m].append(models[m](torch.from_numpy(held.feats[m][s : s + batch]).float())[0].numpy())
    embs = {m: np.concatenate(v) for m, v in embs.items()}
    out = {}
    for a, b in pairs:
        peaks = np.abs([peak_lag(lag_curve(embs[a][i], embs[b][i], MAX_LAG)) for i in range(held.n)])
        out[f"{a}-{b}"] = {"acc_1frame": float(np.mean(peaks <= tol)), "median_abs_lag_frames": float(np.median(peaks)),
                           "acc_5frames": float(np.mean(peaks <= 5))}
    return out


def _corpus_paths(args, data: pathlib.Path) -> tuple[pathlib.Path | None, pathlib.Path | None]:
    if args.corpus == "off":
        return None, None
    path = data / corpus_data.FILE if args.corpus == "auto" else pathlib.Path(args.corpus)
    if args.corpus == "auto" and not path.exists():
        print(f"no corpus data at {path} (make it with --prepare-corpus): training on the simulator only")
        return None, None
    held = path.with_name(corpus_data.HELDOUT_FILE)
    return path, held if held.exists() else None


def _sizes(args) -> dict:
    if args.quick:
        return {"rec": 16, "held": 4, "val": 4, "steps": 30, "eval_every": 15}
    return {"rec": args.recordings, "held": args.heldout, "val": args.val_recordings, "steps": args.steps,
            "eval_every": args.eval_every or max(10, args.steps // 20)}


def train(args) -> dict:
    t_start = time.time()
    try:
        device = pick_device(args.device)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = pathlib.Path(args.data) if args.data else dataset.default_dir()
    z = _sizes(args)
    train_seeds = simdata.TRAIN_SEED_BASE + args.seed * 100_000 + np.arange(z["rec"])
    val_seeds = VALIDATION_SEED_BASE + np.arange(z["val"])
    held_seeds = simdata.HELDOUT_SEED_BASE + np.arange(z["held"])
    assert not (set(train_seeds) | set(val_seeds)) & set(held_seeds) and not set(train_seeds) & set(val_seeds)
    cache = False if args.quick else data
    print(f"device {device}, {args.workers} rendering workers, data in {data}")
    sim = dataset.sim_set("sim/train", train_seeds, 10.0, args.workers, cache)
    sim_val = dataset.sim_set("sim/validation", val_seeds, 20.0, args.workers, cache) if z["val"] else None
    held = dataset.sim_set("sim/heldout", held_seeds, 20.0, args.workers, cache)
    corpus_path, corpus_held = _corpus_paths(args, data)
    corpus, corpus_meta = (None, {})
    if corpus_path is not None:
        try:
            corpus, corpus_meta = corpus_data.load(corpus_path)
        except corpus_data.CorpusDataError as exc:
            raise UserError(str(exc)) from None
        print("corpus: " + ", ".join(f"{s}/{k} {ds.n} x {ds.frames / 50:.0f} s" for s, d in corpus.items()
                                     for k, ds in d.items()) + f" from {corpus_path}")
    t_data = time.time() - t_start
    chans = {m: sim.feats[m].shape[1] for m in MODALITIES}
    init = init_models(pathlib.Path(args.init), chans) if args.init else None
    tr = Trainer(sim, corpus["train"] if corpus else None, z["steps"], args.batch,
                 args.corpus_batch if args.corpus_batch is not None else args.batch, args.lr, args.seed, str(device),
                 args.hidden, args.corpus_weight, not args.no_strict_onsets, init)
    val = {"sim": sim_val, **({f"corpus/{k}": ds for k, ds in corpus["validation"].items()} if corpus else {})}
    res = fit(tr, val, z["eval_every"], args.patience, args.time_budget)
    models = tr.finish(res["state"])
    n_params = {m: int(sum(p.numel() for p in mod.parameters())) for m, mod in models.items()}
    info = {
        "recordings": int(z["rec"]), "recording_s": 10.0, "validation_recordings": int(z["val"]),
        "heldout_recordings": int(z["held"]), "heldout_recording_s": 20.0,
        "train_seeds": [int(train_seeds[0]), int(train_seeds[-1])],
        "validation_seeds": [int(val_seeds[0]), int(val_seeds[-1])] if z["val"] else [],
        "heldout_seeds": [int(held_seeds[0]), int(held_seeds[-1])],
        "corpus": {k: {kk: vv for kk, vv in v.items() if kk != "recordings"} for k, v in corpus_meta.get("sets", {}).items()},
        "steps": int(res["steps"]), "planned_steps": int(res["planned_steps"]), "stopped_at": res["stopped_at"],
        "selected_step": res["best_step"], "time_budget_s": float(args.time_budget),
        "batch": int(args.batch), "corpus_batch": int(tr.corpus_batch), "corpus_weight": float(args.corpus_weight),
        "strict_onsets": not args.no_strict_onsets, "lr": float(args.lr), "seed": int(args.seed),
        "hidden": int(args.hidden), "parameters": n_params, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "threads": int(args.threads), "workers": int(args.workers),
        "data_seconds": round(t_data, 1), "train_seconds": res["seconds"],
        "loss_scales": [round(float(v), 3) for v in tr.log_scales.detach().exp().cpu()],
        "init": str(args.init) if args.init else None,
        "final_losses": dict(zip(["seq", "frame", "corpus_seq", "corpus_frame", "rec", "cls"],
                                 tr.recent_losses(50).round(4).tolist(), strict=True)),
    }
    return {"models": models, "held": held, "corpus_held": corpus_held, "history": res["history"], "info": info,
            "state": res["state"]}


def heldout_metrics(out: pathlib.Path, sim_n: int, corpus_held, quick: bool = False) -> dict:
    """End-to-end held-out metrics of the encoders exported in ``out``."""
    from .export import evaluate_onnx

    res = {"onnx_heldout_lag_accuracy": evaluate_onnx(out, n=sim_n)}
    if corpus_held is not None:
        recs = corpus_data.load_heldout(corpus_held)
        if quick:
            recs = [r for k in corpus_data.KINDS for r in [r for r in recs if r["kind"] == k][:2]]
        res["corpus_heldout_lag_accuracy"] = heldout.corpus_onnx(out, recs, offsets=1 if quick else 3)
        res["corpus_heldout"] = {"file": str(corpus_held), "recordings": [r["name"] for r in recs]}
    return res


def run(args) -> int:
    t_start = time.time()
    data = pathlib.Path(args.data) if args.data else dataset.default_dir()
    if args.prepare_corpus:
        from . import corpus

        sizes = corpus_data.QUICK_SIZES if args.quick else None
        try:
            files = corpus_data.prepare(data, sizes, args.workers)
        except corpus.Unavailable as exc:
            raise UserError(f"real-signal corpus unavailable: {exc}") from None
        for f, size in files.items():
            print(f"wrote {f} ({size / 1e6:.1f} MB)")
        return 0
    if args.evaluate:
        return _evaluate(args, data)
    result = train(args)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"models": result["state"]["models"], "cls": result["state"]["cls"], "hidden": args.hidden},
               out / "checkpoint.pt")
    metrics = {"heldout_lag_accuracy": evaluate(result["models"], result["held"])}
    for pair, v in metrics["heldout_lag_accuracy"].items():
        print(f"held-out {pair:18s} lag acc (+-1 frame) {v['acc_1frame']*100:5.1f} %  median |lag| "
              f"{v['median_abs_lag_frames']:.1f} frames")
    if not args.no_export:
        from . import export

        export.export_all(result["models"], out)
        metrics.update(heldout_metrics(out, 4 if args.quick else args.heldout, result["corpus_held"], args.quick))
        heldout.print_table("simulator, held out, end to end:", metrics["onnx_heldout_lag_accuracy"])
        if "corpus_heldout_lag_accuracy" in metrics:
            heldout.print_table("real-signal corpus, held-out split, end to end:",
                                metrics["corpus_heldout_lag_accuracy"])
    metrics["validation"] = {"best_step": result["info"]["selected_step"], "history": result["history"]}
    metrics["train"] = result["info"]
    metrics["train"]["total_seconds"] = round(time.time() - t_start, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(f"wrote {out} in {time.time() - t_start:.0f} s")
    return 0


def _evaluate(args, data: pathlib.Path) -> int:
    folder = pathlib.Path(args.evaluate)
    missing = [m for m in MODALITIES if not (folder / f"{m}.onnx").exists()]
    if missing:
        raise UserError(f"--evaluate {folder}: no {', '.join(m + '.onnx' for m in missing)} there")
    _path, held = _corpus_paths(args, data)
    res = heldout_metrics(folder, 4 if args.quick else args.heldout, held, args.quick)
    heldout.print_table(f"{folder}: simulator, held out, end to end:", res["onnx_heldout_lag_accuracy"])
    if "corpus_heldout_lag_accuracy" in res:
        heldout.print_table(f"{folder}: real-signal corpus, held-out split, end to end:",
                            res["corpus_heldout_lag_accuracy"])
    else:
        print(f"no corpus held-out data in {data} (make it with --prepare-corpus)")
    if args.eval_json:
        pathlib.Path(args.eval_json).write_text(json.dumps(res, indent=1) + "\n")
    return 0
