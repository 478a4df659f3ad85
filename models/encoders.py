"""Torch definitions of the per-modality encoders (train extra only; the runtime uses the exported ONNX files).

One small temporal conv net per modality maps features ``(B, C, T)`` (``synchub.models.features``) to

* ``emb``: ``(B, T, EMB_DIM)`` L2-normalized embeddings, one per frame, in a space shared by all modalities;
* ``anomaly``: ``(B, T)`` per-frame reconstruction error of an autoencoder head that decodes the input features
  from the (unnormalized) embedding: high where the stream does not look like what the encoder was trained on;
* ``modality_logits``: ``(B, len(MODALITIES))`` a modality classifier over the embedding sequence's statistics
  (mean and spread over time).  The classifier's input is detached during training so it never pulls the shared
  space apart; it says which kind of stream an embedding sequence looks like.
"""

from __future__ import annotations

import torch
from torch import nn

from .features import MODALITIES

EMB_DIM = 32  # fixed by the runtime (runner.EMB_DIM)
HIDDEN = 64  # channels of the conv stack (``synchub train --hidden``; the shipped set; the ONNX contract does not depend on it)
DILATIONS = {
    "imu": (1, 2, 4, 8, 16),
    "audio": (1, 2, 4, 8, 16),
    "video": (1, 2, 4, 8, 16),
    "image": (1, 2, 4, 8, 16, 32),  # 1 fps stills: a wider view
    "text": (1, 2, 4, 8, 16),
    "telemetry": (1, 2, 4, 8, 16),
}


def receptive_margin(modality: str) -> int:
    """Frames of context on each side that one output frame sees."""
    return 2 + sum(DILATIONS[modality])


class Encoder(nn.Module):
    def __init__(self, modality: str, in_ch: int, emb_dim: int = EMB_DIM, hidden: int = HIDDEN):
        super().__init__()
        self.modality = modality
        self.in_ch = in_ch
        self.emb_dim = emb_dim
        self.hidden = hidden
        self.inp = nn.Conv1d(in_ch, hidden, 5, padding=2)
        self.blocks = nn.ModuleList(nn.Conv1d(hidden, hidden, 3, padding=d, dilation=d) for d in DILATIONS[modality])
        self.proj = nn.Conv1d(hidden, emb_dim, 1)
        self.dec1 = nn.Conv1d(emb_dim, hidden, 3, padding=1)
        self.dec2 = nn.Conv1d(hidden, in_ch, 1)
        self.cls = nn.Linear(2 * emb_dim, len(MODALITIES))

    def forward(self, x: torch.Tensor):
        h = torch.relu(self.inp(x))
        for block in self.blocks:
            h = h + torch.relu(block(h))
        z = self.proj(h)  # (B, d, T)
        emb = z / torch.sqrt((z * z).sum(dim=1, keepdim=True) + 1e-6)
        rec = self.dec2(torch.relu(self.dec1(z)))
        anomaly = ((rec - x) ** 2).mean(dim=1)  # (B, T)
        stats = emb.detach() if self.training else emb
        logits = self.cls(torch.cat([stats.mean(dim=2), stats.std(dim=2)], dim=1))
        return emb.transpose(1, 2), anomaly, logits


def build(modality: str, in_ch: int, hidden: int = HIDDEN) -> Encoder:
    return Encoder(modality, in_ch, hidden=hidden)
