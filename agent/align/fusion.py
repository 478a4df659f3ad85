"""Fused multimodal vectors (the source paper's stage 5): per window of the reference timeline, one vector that
fuses every stream's embedding, with every stream's anomaly score.  Pure: push corrected chunks, poll fused chunks.

The pipeline emits the fused chunks as a stream of type ``fused`` (``fused_info``), so they become their own MCAP
channel; ``export_fused_json`` writes them from a recording as JSON.

Layout of one fused sample (float32, ``channel_labels`` say the same):

* ``v0 .. v{d-1}``: the L2-normalized mean of the streams' window embeddings (the encoders share one embedding
  space, so the mean is a fused description of the moment); all NaN when no stream has an encoder;
* ``anomaly.<stream>``: the stream's mean autoencoder reconstruction error over the window (NaN without a model
  or without samples in the window);
* ``activity.<stream>``: the stream's classical onset energy in the window (``agent/align/onsets.py``), which exists
  for every modality (NaN without samples).

A window ``[t0, t0 + window)`` is emitted once every stream's data has passed ``t0 + window + wait`` (or, for a
stream that went quiet, once the others are ``max_wait_s`` past it): late data is never mixed into a window that
was already emitted; it is counted.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.core.units import NS
from synchub.agent.formats.mcap_read import read_session

from .onsets import onsets
from .window import modality_of

log = logging.getLogger(__name__)

FUSED_STREAM = "fused"


def fused_info(streams: list[str], emb_dim: int, window_s: float, name: str = FUSED_STREAM) -> StreamInfo:
    labels = tuple(f"v{i}" for i in range(emb_dim)) + tuple(f"anomaly.{s}" for s in streams) + tuple(
        f"activity.{s}" for s in streams)
    return StreamInfo(name=name, type="fused", nominal_srate=1.0 / window_s, channel_count=len(labels),
                      channel_format="float32", channel_labels=labels, source_id="synchub.fusion",
                      quality=(("window_s", str(window_s)),))


class Fuser:
    """Per-window fused vector + anomaly scores of ``infos`` (name -> StreamInfo) on the reference clock.

    ``runners`` maps a modality to an ``EncoderRunner`` (or anything with ``embed`` and ``meta``); a missing or
    failing encoder leaves that stream's part NaN (counted), never raises.
    """

    def __init__(self, infos: dict[str, StreamInfo], runners: dict | None = None, window_s: float = 1.0,
                 wait_s: float = 0.5, max_wait_s: float = 10.0, name: str = FUSED_STREAM):
        if window_s <= 0:
            raise ValueError("fusion window_s must be > 0")
        self.infos = dict(infos)
        self.streams = sorted(self.infos)
        self.modality = {s: modality_of(info) for s, info in self.infos.items()}
        self.runners = {}
        for s, m in self.modality.items():
            r = (runners or {}).get(m)
            self.runners[s] = r if (r is not None and not isinstance(r, str)) else None
        dims = {int(r.meta.get("emb_dim", 0)) for r in self.runners.values() if r is not None}
        self.emb_dim = max(dims) if dims else 0
        self.window_ns = int(window_s * NS)
        self.wait_ns = int(wait_s * NS)
        self.max_wait_ns = int(max_wait_s * NS)
        self.info = fused_info(self.streams, self.emb_dim, window_s, name)
        self._t: dict[str, list[np.ndarray]] = {s: [] for s in self.streams}
        self._x: dict[str, list[Any]] = {s: [] for s in self.streams}
        self._last: dict[str, int | None] = {s: None for s in self.streams}
        self.next_t0: int | None = None
        self.seq = 0
        self.counts: dict[str, int] = {"windows": 0, "late_samples": 0, "uncorrected_chunks": 0,
                                       "unknown_stream": 0, "encoder_errors": 0}

    def push(self, stream: str, chunk: Chunk) -> None:
        if stream not in self._t:
            self.counts["unknown_stream"] += 1
            return
        if chunk.n == 0:
            return
        if chunk.ref_ns is None:
            self.counts["uncorrected_chunks"] += 1
            return
        t = chunk.ref_ns
        data = chunk.data
        if self.next_t0 is not None:
            late = t < self.next_t0
            if late.any():
                self.counts["late_samples"] += int(late.sum())
                keep = np.nonzero(~late)[0]
                t = t[keep]
                data = [data[i] for i in keep] if isinstance(data, list) else data[keep]
                if len(t) == 0:
                    return
        self._t[stream].append(t)
        self._x[stream].append(data)
        last = int(t.max())
        self._last[stream] = last if self._last[stream] is None else max(self._last[stream], last)
        if self.next_t0 is None:
            self.next_t0 = int(t.min()) // self.window_ns * self.window_ns

    def _ready_until(self) -> int | None:
        lasts = [v for v in self._last.values() if v is not None]
        if not lasts:
            return None
        newest = max(lasts)
        # a stream that went quiet for max_wait no longer holds the others back
        active = [v for v in lasts if newest - v < self.max_wait_ns]
        return min(active) - self.wait_ns

    def _take(self, s: str, t0: int, t1: int):
        ts, xs = self._t[s], self._x[s]
        if not ts:
            return np.zeros(0, np.int64), []
        t = np.concatenate(ts)
        x = sum((list(a) for a in xs), []) if isinstance(xs[0], list) else np.concatenate(xs)
        inside = (t >= t0) & (t < t1)
        keep = t >= t1
        sel = np.nonzero(inside)[0]
        out_t = t[sel]
        out_x = [x[i] for i in sel] if isinstance(x, list) else x[sel]
        k = np.nonzero(keep)[0]
        self._t[s] = [t[k]] if len(k) else []
        self._x[s] = ([[x[i] for i in k]] if isinstance(x, list) else [x[k]]) if len(k) else []
        return out_t, out_x

    def _window(self, t0: int) -> np.ndarray:
        t1 = t0 + self.window_ns
        n_s = len(self.streams)
        row = np.full(self.emb_dim + 2 * n_s, np.nan, dtype=np.float32)
        vecs = []
        for i, s in enumerate(self.streams):
            t, x = self._take(s, t0, t1)
            if len(t) == 0:
                continue
            o = onsets(self.modality[s], t, x)
            row[self.emb_dim + n_s + i] = float(np.sum(o.mass)) if o.ok else 0.0
            r = self.runners[s]
            if r is None:
                continue
            try:
                e = r.embed(x, t)
            except Exception as exc:  # noqa: BLE001 - bad window for an encoder: NaN, counted
                self.counts["encoder_errors"] += 1
                log.debug("fusion: %s encoder failed: %s", s, exc)
                continue
            if len(e.vectors):
                v = np.asarray(e.vectors, dtype=np.float64).mean(axis=0)
                if np.all(np.isfinite(v)) and v.shape[0] == self.emb_dim:
                    vecs.append(v)
                if len(e.anomaly):
                    row[self.emb_dim + i] = float(np.mean(e.anomaly))
        if vecs:
            f = np.mean(vecs, axis=0)
            nrm = float(np.linalg.norm(f))
            row[: self.emb_dim] = f / nrm if nrm > 0 else f
        return row

    def poll(self) -> list[Chunk]:
        """Fused chunks (one sample per window) of every window that is complete."""
        out = []
        until = self._ready_until()
        while self.next_t0 is not None and until is not None and self.next_t0 + self.window_ns <= until:
            t0 = self.next_t0
            row = self._window(t0)
            c = t0 + self.window_ns // 2
            tt = np.array([c], dtype=np.int64)
            out.append(Chunk(self.info.name, self.seq, row[None, :], tt, tt.copy(), ref_ns=tt.copy(),
                             unc_ns=np.zeros(1, np.int64), method="identity"))
            self.seq += 1
            self.counts["windows"] += 1
            self.next_t0 = t0 + self.window_ns
        return out


def fused_records(labels, t_ns, rows) -> list[dict]:
    """JSON-ready records of fused samples (NaN -> None)."""
    labels = list(labels)
    vec_idx = [i for i, lab in enumerate(labels) if lab.startswith("v") and lab[1:].isdigit()]
    out = []

    def num(v):
        v = float(v)
        return None if not math.isfinite(v) else round(v, 6)

    for t, row in zip(t_ns, rows, strict=True):
        rec = {"t_ns": int(t), "vector": [num(row[i]) for i in vec_idx], "anomaly": {}, "activity": {}}
        for i, lab in enumerate(labels):
            for kind in ("anomaly", "activity"):
                if lab.startswith(kind + "."):
                    rec[kind][lab[len(kind) + 1:]] = num(row[i])
        out.append(rec)
    return out


def export_fused_json(mcap_path, out_json, session: dict | None = None) -> int:
    """Write every fused stream of a recording as JSON ``{"streams": {name: [records]}}``; returns the record
    count.  Raises ``ValueError`` when the recording has no fused stream.  ``session``: the recording as
    ``read_session`` returned it, when the caller has read it already."""
    sess = read_session(mcap_path) if session is None else session
    result: dict[str, list[dict]] = {}
    for name, st in sess["streams"].items():
        info = st.get("info") or {}
        if info.get("type") != "fused":
            continue
        labels = info.get("channel_labels") or []
        t = st["ref_ns"] if st.get("ref_ns") is not None else st["device_ns"]
        rows = np.asarray(st["data"]).reshape(len(t), -1) if len(t) else np.zeros((0, len(labels)))
        result[name] = fused_records(labels, t, rows)
    if not result:
        raise ValueError(f"{mcap_path}: no stream of type 'fused' in this recording")
    Path(out_json).write_text(json.dumps({"streams": result}, indent=1) + "\n")
    return sum(len(v) for v in result.values())
