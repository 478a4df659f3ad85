"""Signals a user makes by hand to try synchub: a microphone's WAV samples with known sound onsets."""

from __future__ import annotations

import numpy as np


def tone_bursts(rate: int, seconds: float, seed: int = 1):
    """A microphone in faint noise hearing 50 ms tone bursts (640 Hz) 1-3 s apart: (samples, onsets s)."""
    rng = np.random.default_rng(seed)
    onsets = np.cumsum(rng.uniform(1.0, 3.0, int(seconds)))
    onsets = onsets[onsets < seconds - 2.0]
    x = rng.normal(0.0, 0.01, int(rate * seconds)).astype(np.float32)
    n = int(0.05 * rate)
    for t in onsets:
        i = int(t * rate)
        x[i:i + n] += (0.5 * np.sin(2 * np.pi * 640.0 * np.arange(n) / rate)).astype(np.float32)
    return x, onsets
