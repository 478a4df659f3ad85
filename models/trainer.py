"""The training loop of ``synchub train`` (torch; train extra): one encoder per modality, trained jointly on the
simulator and the real-signal corpus, on a CPU or a CUDA device, with model selection on the validation sets.

Each step draws (with a CPU generator, so batches do not depend on the device):

* ``batch`` simulator recordings (all six modalities, every pair);
* ``corpus_batch`` 10 s crops of corpus recordings, half speech (microphone + marker log), half sound effects
  (microphone, marker log, IMU, camera), each with the pairs it has;

and minimizes, per pair, the sequence loss and the frame InfoNCE (``losses.py``; onset frames strict for fast
modalities), the corpus's pairs weighted by ``corpus_weight``, plus the autoencoder reconstruction loss (0.1)
and the modality classifier (0.1, on detached embeddings).  AdamW with a one-cycle learning rate.

Every ``eval_every`` steps it measures lag accuracy (+-1 frame, lag 0 over +-2 s) per pair on the validation
sets (simulator validation seeds; the corpus's validation split) and keeps the best state (mean accuracy, then
mean sequence loss); ``patience`` evaluations without a better one stop it (after half the steps).
"""

from __future__ import annotations

import copy
import itertools
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import encoders, losses
from .corpus_data import KINDS
from .evaluate import ALL_PAIRS, EVAL_PAIRS
from .features import FRAME_RATE_HZ, MODALITIES

MAX_LAG = 2 * FRAME_RATE_HZ  # +-2 s
CROP = 10 * FRAME_RATE_HZ  # corpus crops: 10 s, as long as a simulator training recording


def corpus_pairs(kind: str) -> tuple[tuple[str, str], ...]:
    return tuple(itertools.combinations([m for m in MODALITIES if m in KINDS[kind]], 2))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device here (torch "
                         f"{torch.__version__}, built for CUDA {torch.version.cuda or 'none'})")
    return torch.device(name)


class _Set:
    """A ``DataSet`` as tensors on the device (float16 features)."""

    def __init__(self, ds, device):
        self.name, self.n, self.frames = ds.name, ds.n, ds.frames
        self.feats = {m: torch.from_numpy(v).to(device) for m, v in ds.feats.items()}
        self.act = torch.from_numpy(ds.act).to(device)
        self.onset = torch.from_numpy(ds.onset).to(device)

    def batch(self, idx, starts=None, length=None):
        idx = idx.to(self.act.device)
        x = {m: v[idx].float() for m, v in self.feats.items()}
        act, onset = self.act[idx].float(), self.onset[idx]
        if starts is not None:
            x = {m: losses.crop(v, starts, length) for m, v in x.items()}
            act = losses.crop(act[:, None], starts, length)[:, 0]
            onset = losses.crop(onset[:, None], starts, length)[:, 0]
        return x, act, onset


class Trainer:
    def __init__(self, sim, corpus: dict | None, steps: int, batch: int = 8, corpus_batch: int = 8, lr: float = 3e-3,
                 seed: int = 0, device: str = "cpu", hidden: int = encoders.HIDDEN, corpus_weight: float = 1.0,
                 strict_onsets: bool = True, init_models: dict | None = None):
        self.device = torch.device(device)
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.steps, self.batch, self.corpus_batch = steps, batch, corpus_batch if corpus else 0
        self.corpus_weight, self.strict = corpus_weight, strict_onsets
        chans = {m: sim.feats[m].shape[1] for m in MODALITIES}
        self.models = init_models or {m: encoders.build(m, chans[m], hidden) for m in MODALITIES}
        for m in self.models.values():
            m.to(self.device)
        self.cls = torch.nn.Linear(2 * encoders.EMB_DIM, len(MODALITIES)).to(self.device)
        if init_models:
            self.cls.load_state_dict(init_models["imu"].cls.state_dict())
        self.log_scales = torch.nn.Parameter(torch.tensor([np.log(30.0), np.log(10.0)], device=self.device))
        self.params = [p for m in self.models.values() for p in m.parameters()] + list(self.cls.parameters()) + \
            [self.log_scales]
        self.max_lr, self.done = lr, 0
        self.opt = torch.optim.AdamW(self.params, lr=lr, weight_decay=1e-4)
        self.sim = _Set(sim, self.device)
        self.corpus = {k: _Set(ds, self.device) for k, ds in (corpus or {}).items() if ds.n}
        self.hist: list[list[float]] = []
        self._hist: list[torch.Tensor] = []

    # ------------------------------------------------------------------------------------------- one step
    def _schedule(self) -> None:
        """One-cycle learning rate and momentum (as torch's ``OneCycleLR``, 10 % warm-up, cosine), computed from
        the step and ``self.steps``, so a run can be shortened on the way (``fit``'s time budget)."""
        warm = max(1, int(0.1 * self.steps))
        if self.done < warm:
            frac, (lr0, lr1), (b0, b1) = self.done / warm, (self.max_lr / 25, self.max_lr), (0.95, 0.85)
        else:
            frac = (self.done - warm) / max(1, self.steps - warm)
            (lr0, lr1), (b0, b1) = (self.max_lr, self.max_lr / 25e4), (0.85, 0.95)
        c = (1 + math.cos(math.pi * min(frac, 1.0))) / 2
        for g in self.opt.param_groups:
            g["lr"] = lr1 + (lr0 - lr1) * c
            g["betas"] = (b1 + (b0 - b1) * c, g["betas"][1])

    def _draw(self) -> list[tuple]:
        """This step's groups: (simulator batch, all pairs), then corpus crops per kind with the pairs they have;
        each ``(x: {modality: (B, C, T)}, act, onset, pairs)``."""
        x, act, onset = self.sim.batch(torch.randint(0, self.sim.n, (self.batch,), generator=self.gen))
        groups = [(x, act, onset, ALL_PAIRS)]
        kinds = list(self.corpus)
        for k, kind in enumerate(kinds):
            cs = self.corpus[kind]
            nb = self.corpus_batch // len(kinds) + (k < self.corpus_batch % len(kinds))
            if nb:
                idx = torch.randint(0, cs.n, (nb,), generator=self.gen)
                starts = torch.randint(0, cs.frames - CROP + 1, (nb,), generator=self.gen)
                groups.append((*cs.batch(idx, starts, CROP), corpus_pairs(kind)))
        return groups

    def _group_loss(self, emb: dict, act, onset, pairs, scales):
        """Sequence and frame loss of every pair of one group at once (the pairs stacked along the batch)."""
        n_pairs, B = len(pairs), len(act)
        ea = torch.cat([emb[a] for a, _ in pairs])
        eb = torch.cat([emb[b] for _, b in pairs])
        strict = None
        if self.strict:
            fast = torch.tensor([a in losses.STRICT_MODALITIES and b in losses.STRICT_MODALITIES for a, b in pairs],
                                device=self.device).repeat_interleave(B)
            strict = onset.repeat(n_pairs, 1) & fast[:, None]
        return losses.pair_losses(ea, eb, act.repeat(n_pairs, 1), MAX_LAG, scales[0], scales[1], strict)

    def step(self) -> None:
        for m in self.models.values():
            m.train()
        scales = self.log_scales.clamp(max=np.log(200.0)).exp()
        groups = self._draw()
        embs: list[dict] = [{} for _ in groups]
        rec_l, cls_l = [], []
        for m in MODALITIES:  # one forward per modality over every group that has it
            have = [k for k, g in enumerate(groups) if m in g[0]]
            if not have:
                continue
            emb, anomaly, _ = self.models[m](losses.time_mask(torch.cat([groups[k][0][m] for k in have]), self.gen))
            for k, e in zip(have, torch.split(emb, [len(groups[k][1]) for k in have]), strict=True):
                embs[k][m] = e
            rec_l.append(anomaly.mean())
            e = emb.detach()
            logits = self.cls(torch.cat([e.mean(dim=1), e.std(dim=1)], dim=1))
            cls_l.append(F.cross_entropy(logits, torch.full((len(e),), MODALITIES.index(m), dtype=torch.long,
                                                             device=self.device)))
        seq_l, frame_l = self._group_loss(embs[0], *groups[0][1:], scales)
        c_seq = c_frame = torch.zeros((), device=self.device)
        for k in range(1, len(groups)):
            s, f = self._group_loss(embs[k], *groups[k][1:], scales)
            c_seq, c_frame = c_seq + s / (len(groups) - 1), c_frame + f / (len(groups) - 1)
        rec_l, cls_l = torch.stack(rec_l).mean(), torch.stack(cls_l).mean()
        loss = seq_l + frame_l + self.corpus_weight * (c_seq + c_frame) + 0.1 * rec_l + 0.1 * cls_l
        self._schedule()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.opt.step()
        self.done += 1
        self._hist.append(torch.stack([seq_l, frame_l, c_seq, c_frame, rec_l, cls_l]).detach())

    def recent_losses(self, n: int = 50) -> np.ndarray:
        """Mean of the last ``n`` steps' losses: sim seq, sim frame, corpus seq, corpus frame, rec, cls (the
        values stay on the device until asked for: no synchronization per step)."""
        if self._hist:
            self.hist += torch.stack(self._hist).cpu().tolist()
            self._hist = []
        return np.mean(self.hist[-n:], axis=0)

    # ------------------------------------------------------------------------------------------- validation
    @torch.no_grad()
    def embed(self, s: _Set, mods, batch: int = 32) -> dict[str, torch.Tensor]:
        for m in self.models.values():
            m.eval()
        out = {m: [] for m in mods}
        for i in range(0, s.n, batch):
            for m in mods:
                out[m].append(self.models[m](s.feats[m][i : i + batch].float())[0])
        return {m: torch.cat(v) for m, v in out.items()}

    @torch.no_grad()
    def validate(self, sets: dict) -> dict:
        """{group: {pair: {"acc", "ce"}}} for ``{"sim": _Set, "corpus/speech": _Set, ...}``, plus the score."""
        res: dict = {}
        for name, s in sets.items():
            pairs = EVAL_PAIRS if name == "sim" else corpus_pairs(name.split("/")[1])
            e = self.embed(s, sorted({m for p in pairs for m in p}))
            res[name] = {}
            for a, b in pairs:
                hit, ce = losses.lag_hits(e[a], e[b], MAX_LAG)
                res[name][f"{a}-{b}"] = {"acc": round(float(hit.float().mean()), 4), "ce": round(float(ce.mean()), 4)}
        groups = {"sim": [], "corpus": []}
        for name, pairs in res.items():
            groups["corpus" if name.startswith("corpus") else "sim"] += list(pairs.values())
        means = [(np.mean([v["acc"] for v in g]), np.mean([v["ce"] for v in g])) for g in groups.values() if g]
        res["score"] = {"acc": round(float(np.mean([a for a, _ in means])), 4),
                        "ce": round(float(np.mean([c for _, c in means])), 4)}
        return res

    def state(self) -> dict:
        return {"models": {m: copy.deepcopy({k: v.detach().cpu() for k, v in mod.state_dict().items()})
                           for m, mod in self.models.items()},
                "cls": {k: v.detach().cpu().clone() for k, v in self.cls.state_dict().items()}}

    def finish(self, state: dict) -> dict:
        """Load ``state`` (the selected one), put the shared classifier into every encoder, move to the CPU."""
        for m, mod in self.models.items():
            mod.load_state_dict(state["models"][m])
            mod.cls.load_state_dict(state["cls"])
            mod.cpu().eval()
        return self.models


def fit(tr: Trainer, val_sets: dict, eval_every: int, patience: int = 0, budget_s: float = 0.0, log=print) -> dict:
    """Run ``tr.steps`` steps with validation; returns {"state", "history", "best_step", "stopped_at",
    "planned_steps", "seconds"}.  ``budget_s`` > 0: if the first steps show that the run would take longer, the
    run is shortened (the learning-rate schedule follows) so that it ends within about that many seconds."""
    t0 = time.time()
    val = {k: _Set(ds, tr.device) for k, ds in val_sets.items() if ds is not None and ds.n}
    history, best, best_state, since = [], None, tr.state(), 0
    planned = tr.steps
    t_probe = None
    step = 0
    while step < tr.steps:
        step += 1
        tr.step()
        if budget_s and step == 10:
            t_probe = time.time()
        if budget_s and step == 60 and t_probe is not None:
            per = (time.time() - t_probe) / 50 * (1.0 + 0.1 * bool(val))  # validation: ~10 % more
            fit_steps = int((budget_s - (time.time() - t0)) / per) + step
            if fit_steps < tr.steps:
                log(f"  {per * 1e3:.0f} ms per step: {tr.steps} steps would take {per * tr.steps:.0f} s; "
                    f"shortened to {fit_steps} steps to fit the {budget_s:.0f} s budget")
                tr.steps = max(fit_steps, step + 1)
                eval_every = max(10, min(eval_every, tr.steps // 20))
        if step % 50 == 0 or step == tr.steps:
            h = tr.recent_losses(50)
            el = time.time() - t0
            log(f"step {step}/{tr.steps} sim seq {h[0]:.3f} frame {h[1]:.3f} | corpus seq {h[2]:.3f} frame {h[3]:.3f}"
                f" | rec {h[4]:.3f} cls {h[5]:.3f} | {el:.0f} s, eta {el / step * (tr.steps - step):.0f} s")
        if val and (step % eval_every == 0 or step == tr.steps):
            v = tr.validate(val)
            key = (v["score"]["acc"], -v["score"]["ce"])
            improved = best is None or key > best[0]
            if improved:
                best, best_state, since = (key, step), tr.state(), 0
            else:
                since += 1
            history.append({"step": step, **v})
            log(f"  validation at step {step}: mean acc {v['score']['acc'] * 100:.1f} %, seq loss {v['score']['ce']:.3f}"
                + (" (best)" if improved else f" (best: step {best[1]})"))
            if patience and since >= patience and step >= tr.steps // 2:
                log(f"  no better validation for {patience} evaluations: stopping at step {step}")
                break
    if not val:
        best_state, best = tr.state(), (None, step)
    return {"state": best_state, "history": history, "best_step": best[1], "stopped_at": step,
            "planned_steps": planned, "steps": tr.steps, "seconds": round(time.time() - t0, 1)}
