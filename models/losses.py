"""Contrastive losses of the encoders and their batched lag metric (torch; train extra).

For a pair of modalities whose embedding sequences ``ea``, ``eb`` ``(B, T, d)`` show the same moments (lag 0):

* **sequence loss**: the mean similarity of the two sequences over lags ``-max_lag..max_lag`` (what the
  aligner's coarse search computes), as a softmax over lags, must peak at lag 0;
* **frame InfoNCE**: each anchor frame must pick its partner among the other stream's frames shifted by up to
  ``max_lag`` (hard negatives from the same recording), weighted up near events (``act``).  Shifts of 1-2 frames
  are neither positive nor negative, except at *onset* frames (where an event starts: a sound, its marker, its
  physical cause): there the neighbours are negatives, so the embedding marks where the event starts, not where
  its energy peaks.  Only for pairs of fast modalities (``STRICT_MODALITIES``): a 30 fps camera or a 10 Hz
  sensor cannot tell 20 ms apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: modalities sampled finely enough (or stamped, for text) to place an onset within a 20 ms frame
STRICT_MODALITIES = frozenset({"imu", "audio", "text"})


def gather_lags(ea: torch.Tensor, eb: torch.Tensor, max_lag: int) -> torch.Tensor:
    """(B, A, 2*max_lag+1): similarity of anchor frame i (central crop of a) with b[i + lag]."""
    T = ea.shape[1]
    anchors = torch.arange(max_lag, T - max_lag, device=ea.device)
    sim = ea[:, anchors] @ eb.transpose(1, 2)  # (B, A, T)
    lags = torch.arange(-max_lag, max_lag + 1, device=ea.device)
    idx = (anchors[:, None] + lags[None, :]).expand(ea.shape[0], -1, -1)
    return sim.gather(2, idx)


def pair_losses(ea, eb, act, max_lag, scale_seq, scale_frame, onset=None):
    """(sequence loss, frame loss) of one pair; ``onset`` (B, T) bool: anchors whose neighbours are negatives."""
    g = gather_lags(ea, eb, max_lag)  # (B, A, L)
    B, A, L = g.shape
    target = torch.full((B,), max_lag, dtype=torch.long, device=g.device)
    seq = F.cross_entropy(g.mean(dim=1) * scale_seq, target)
    lags = torch.arange(-max_lag, max_lag + 1, device=g.device)
    near = ((lags.abs() >= 1) & (lags.abs() <= 2))[None, None, :]
    if onset is not None:
        near = near & ~onset[:, max_lag : max_lag + A, None]
    logits = (g * scale_frame).masked_fill(near, -1e4)
    ce = F.cross_entropy(logits.reshape(B * A, L), torch.full((B * A,), max_lag, dtype=torch.long, device=g.device),
                         reduction="none")
    w = act[:, max_lag : max_lag + A].reshape(-1) + 0.05
    frame = (ce * w).sum() / w.sum()
    return seq, frame


def time_mask(x: torch.Tensor, gen: torch.Generator, p: float = 0.3) -> torch.Tensor:
    """Zero a random span (5-49 frames) in a share ``p`` of the recordings: missing data, valid channel included.
    ``gen`` is a CPU generator (the draws do not depend on the device)."""
    B, _, T = x.shape
    hit = torch.rand(B, generator=gen) < p
    w = torch.randint(5, 50, (B,), generator=gen)
    s = (torch.rand(B, generator=gen) * (T - w)).long()
    t = torch.arange(T)
    keep = ~(hit[:, None] & (t[None, :] >= s[:, None]) & (t[None, :] < (s + w)[:, None]))
    return x * keep.to(x.device, x.dtype)[:, None, :]


def crop(x: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """(B, C, length) windows of (B, C, T) starting at ``starts`` (B,)."""
    idx = starts.to(x.device)[:, None] + torch.arange(length, device=x.device)[None, :]
    return x.gather(2, idx[:, None, :].expand(-1, x.shape[1], -1))


def lag_hits(ea: torch.Tensor, eb: torch.Tensor, max_lag: int, tol: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per recording: is the peak of the mean similarity over lags within ``tol`` frames of 0, and the sequence
    loss (cross entropy at lag 0, unscaled similarity x 100)."""
    curve = gather_lags(ea, eb, max_lag).mean(dim=1)  # (B, L)
    peak = curve.argmax(dim=1) - max_lag
    ce = F.cross_entropy(curve * 100.0, torch.full((len(curve),), max_lag, dtype=torch.long, device=curve.device),
                         reduction="none")
    return peak.abs() <= tol, ce
