"""Feeding a live ``AlignmentTracker`` as the hub would: the reference's and the target's chunks interleaved by
host time, polled after each."""

import numpy as np

from synchub.agent.core.stream import Chunk
from synchub.agent.core.units import NS


def chunks(name, data, device, host, ref=None, every=0.25):
    """``every`` seconds of samples per chunk; ``ref``: corrected times (a reference stream's)."""
    n = len(device)
    step = max(1, int(every * n / ((device[-1] - device[0]) / NS)))
    out = []
    for a in range(0, n, step):
        b = min(n, a + step)
        out.append(Chunk(name, a, data[a:b], device[a:b], host[a:b],
                         ref_ns=None if ref is None else ref[a:b], unc_ns=None if ref is None else np.zeros(b - a)))
    return out


def feed(tracker, ref_name, ref_chunks, tgt_name, tgt_chunks, each=None) -> list:
    """Push both streams' chunks in host-time order, poll after each push; ``each()`` after every poll.  Returns
    every estimate polled."""
    a, b = ref_chunks, tgt_chunks
    out = []
    ia = ib = 0
    while ia < len(a) or ib < len(b):
        if ib >= len(b) or (ia < len(a) and a[ia].host_ns[0] <= b[ib].host_ns[0]):
            tracker.push(ref_name, a[ia])
            ia += 1
        else:
            tracker.push(tgt_name, b[ib])
            ib += 1
        out.extend(tracker.poll())
        if each is not None:
            each()
    return out
