"""Window-level alignment of one target stream against a reference stream, offline and live.  Pure: no I/O.

* ``WindowAligner`` turns one window of raw samples of both streams into ``AlignResult``s for the methods
  ``classical`` (onset correlation), ``neural`` (encoder embeddings only) and ``hybrid`` (neural coarse + fine
  onset correlation; classical coarse when the encoders abstain or have no model).  The benchmark and the live
  tracker both use it.
* ``AlignmentTracker`` is what the agent pipeline runs live: it buffers chunks of the reference stream (with
  corrected times) and the target stream (device + host times), and every ``hop_s`` of target device time aligns
  the last ``window_s``.  ``poll()`` returns ``OffsetEstimate`` evidence for the target's ClockModel; abstentions
  are not emitted but counted with their reasons in ``stats()``.

The search is centred on a prior: first the arrival estimate (median host - device of the target), then the
drift-tracked prediction from accepted windows.  Windows overlap (``hop_s < window_s``), so consecutive estimates
share events: the emitted sigma is scaled by sqrt(window / hop) so a clock model fusing them does not count the
same events several times.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.core.units import NS

from .aligner import Aligner, AlignerSettings, AlignResult, DriftTracker, apply_arrival_bound, gcc_fine
from .classical import onsets

log = logging.getLogger(__name__)

METHODS = ("classical", "neural", "hybrid")


def modality_of(info: StreamInfo) -> str:
    """The encoder/feature modality of a stream (``marker`` streams are text)."""
    return "text" if info.type == "marker" else info.type


def period_s(info: StreamInfo) -> float:
    return 0.0 if info.irregular else 1.0 / info.nominal_srate


def load_runners(modalities, providers=None) -> dict[str, Any]:
    """``{modality: EncoderRunner or a reason string}``; a missing model or runtime is a reason, not an error."""
    out: dict[str, Any] = {}
    try:
        from synchub.models.runner import EncoderRunner, NoModelError
    except Exception as exc:  # the encoder runtime is not installed/built
        return {m: f"no encoder runtime ({exc.__class__.__name__}: {exc})" for m in modalities}
    for m in modalities:
        if m in out:
            continue
        try:
            out[m] = EncoderRunner.load(m, providers=providers)
        except NoModelError as exc:
            out[m] = f"no model for {m} ({exc})"
        except Exception as exc:  # a broken model file: refused at load, the aligner abstains with the reason
            out[m] = f"model for {m} refused ({exc})"
    return out


class WindowAligner:
    """Aligns windows of ``tgt`` (device clock) against ``ref`` (reference clock)."""

    def __init__(self, ref_info: StreamInfo, tgt_info: StreamInfo, runners: dict | None = None,
                 settings: AlignerSettings | None = None):
        self.aligner = Aligner(settings)
        self.s = self.aligner.s
        self.ref_mod = modality_of(ref_info)
        self.tgt_mod = modality_of(tgt_info)
        self.period_s = max(period_s(ref_info), period_s(tgt_info))
        runners = runners or {}
        self.runners = {m: runners.get(m, f"no encoder given for {m}") for m in (self.ref_mod, self.tgt_mod)}

    def ref_range(self, span, prior_ns: int) -> tuple[int, int]:
        """Reference-clock range the reference data must cover for a target window ``span``."""
        margin = int((self.s.search_s + max(self.s.fine_s, self.period_s) + 0.5) * NS)
        return int(span[0]) + prior_ns - margin, int(span[1]) + prior_ns + margin

    def _embed(self, modality: str, times: np.ndarray, samples, span):
        r = self.runners.get(modality)
        if isinstance(r, str) or r is None:
            return None, r or f"no model for {modality}"
        if len(times) == 0:
            return None, f"no {modality} samples in the window"
        try:
            e = r.embed(samples, times, span_ns=(int(span[0]), int(span[1])))
        except Exception as exc:  # noqa: BLE001 - bad input to an encoder: abstain with the reason
            return None, f"{modality} encoder failed: {exc}"
        return e, ""

    def neural(self, ref_t, ref_x, tgt_t, tgt_x, span, prior_ns: int, ref_emb=None, tgt_emb=None) -> AlignResult:
        """Encoders only.  ``ref_emb``/``tgt_emb``: embeddings of the whole streams computed once (the runner's
        output does not depend on how a stream is cut), used instead of embedding the window again."""
        from .aligner import _abstain

        if ref_emb is not None and tgt_emb is not None:
            re, te = ref_emb, tgt_emb
        else:
            re, why = self._embed(self.ref_mod, ref_t, ref_x, self.ref_range(span, prior_ns))
            if re is None:
                return _abstain("neural", span, why, prior_ns)
            te, why = self._embed(self.tgt_mod, tgt_t, tgt_x, span)
            if te is None:
                return _abstain("neural", span, why, prior_ns)
        for e in (re, te):
            if isinstance(e, str):
                return _abstain("neural", span, e, prior_ns)
        ft = np.asarray(te.frame_times_ns)
        rate = NS / float(np.median(np.diff(ft))) if len(ft) > 1 else 50.0
        return self.aligner.neural(re.frame_times_ns, re.vectors, te.frame_times_ns, te.vectors, span, prior_ns,
                                   rate)

    def estimate(self, ref_t, ref_x, tgt_t, tgt_x, span, prior_ns: int,
                 methods=METHODS, ref_emb=None, tgt_emb=None,
                 arrival_bound_ns: int | None = None) -> dict[str, AlignResult]:
        """Results per method for the target window ``span`` (device clock).  ``ref_t`` are reference-clock
        times covering ``ref_range(span, prior_ns)``; ``tgt_t`` device times covering ``span``.
        ``arrival_bound_ns`` (min host - device of the window's target samples) bounds the hybrid offset."""
        ref_t = np.asarray(ref_t, dtype=np.int64)
        tgt_t = np.asarray(tgt_t, dtype=np.int64)
        out: dict[str, AlignResult] = {}
        ro = to = None
        if "classical" in methods or "hybrid" in methods:
            ro = onsets(self.ref_mod, ref_t, ref_x, partner=self.tgt_mod)
            to = onsets(self.tgt_mod, tgt_t, tgt_x, partner=self.ref_mod)
        if "classical" in methods:
            out["classical"] = self.aligner.classical(ro, to, span, prior_ns, self.period_s)
        nr = None
        if "neural" in methods or "hybrid" in methods:
            nr = self.neural(ref_t, ref_x, tgt_t, tgt_x, span, prior_ns, ref_emb, tgt_emb)
            if "neural" in methods:
                out["neural"] = nr
        if "hybrid" in methods:
            out["hybrid"] = apply_arrival_bound(self.aligner.hybrid(ro, to, span, prior_ns, self.period_s, nr),
                                                arrival_bound_ns)
        if self.ref_mod == self.tgt_mod == "audio":  # same waveform: GCC-PHAT on the raw samples refines
            for m in ("classical", "hybrid"):
                r = out.get(m)
                if r is not None and r.ok:
                    g = gcc_fine(ref_t, ref_x, tgt_t, tgt_x, span, float(r.offset_ns),
                                 max(3.0 * r.sigma_ns, 2e6), 1.0 / self.period_s if self.period_s else 16000.0,
                                 method=m)
                    if g.ok:
                        out[m] = AlignResult(True, g.offset_ns, g.sigma_ns, r.confidence, g.device_ns, m)
        return out


class _Buffer:
    """Concatenated times + samples of one stream, trimmed from the front."""

    def __init__(self):
        self.t = np.zeros(0, dtype=np.int64)
        self.x: Any = None  # ndarray or list[str]

    def add(self, t: np.ndarray, x) -> None:
        if isinstance(x, list):
            self.x = (self.x or []) + list(x)
        else:
            x = np.asarray(x)
            self.x = x.copy() if self.x is None else np.concatenate([self.x, x])
        self.t = np.concatenate([self.t, t])

    def trim_before(self, t_ns: int) -> None:
        k = int(np.searchsorted(self.t, t_ns, side="left"))
        if k > 0:
            self.t = self.t[k:]
            self.x = self.x[k:]

    def cut(self, a: int, b: int):
        i, j = int(np.searchsorted(self.t, a, side="left")), int(np.searchsorted(self.t, b, side="left"))
        return self.t[i:j], self.x[i:j] if self.x is not None else []

    @property
    def last(self) -> int | None:
        return int(self.t[-1]) if len(self.t) else None


class AlignmentTracker:
    """Live alignment of ``tgt_stream`` against ``ref_stream`` (see module doc).  Pure: push chunks, poll."""

    def __init__(self, ref_stream: str, tgt_stream: str, ref_info: StreamInfo, tgt_info: StreamInfo,
                 runners: dict | None = None, window_s: float = 8.0, hop_s: float = 4.0,
                 settings: AlignerSettings | None = None, method: str = "hybrid"):
        if method not in METHODS:
            raise ValueError(f"unknown alignment method {method!r}; allowed: {', '.join(METHODS)}")
        if window_s <= 0 or hop_s <= 0:
            raise ValueError("window_s and hop_s must be > 0")
        self.ref_stream, self.tgt_stream = ref_stream, tgt_stream
        self.window_ns, self.hop_ns = int(window_s * NS), int(hop_s * NS)
        self.method = method
        self.win = WindowAligner(ref_info, tgt_info, runners, settings)
        self.ref = _Buffer()
        self.tgt = _Buffer()
        self._lat = _Buffer()  # host - device of the target's samples (the arrival bound)
        self._arrival: list[float] = []  # host - device of target samples (first ones)
        self.drift = DriftTracker()
        self.next_d0: int | None = None
        self.counts: dict[str, int] = {"windows": 0, "emitted": 0, "abstained": 0, "outliers": 0, "bad_chunks": 0}
        self.reasons: dict[str, int] = {}

    def _count(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def push(self, stream_name: str, chunk: Chunk) -> None:
        if chunk.n == 0:
            return
        if stream_name == self.ref_stream:
            if chunk.ref_ns is None:
                self.counts["bad_chunks"] += 1
                self._count("reference chunk without corrected times")
                return
            t = chunk.ref_ns
            buf = self.ref
        elif stream_name == self.tgt_stream:
            t = chunk.device_ns
            buf = self.tgt
            if len(self._arrival) < 2000:
                self._arrival.extend((chunk.host_ns - chunk.device_ns)[:200].astype(np.float64).tolist())
            if buf.last is None or int(t[0]) > buf.last:
                self._lat.add(t, (chunk.host_ns - chunk.device_ns)[:, None])
        else:
            self._count(f"chunk of unrelated stream {stream_name!r}")
            return
        if buf.last is not None and int(t[0]) <= buf.last:
            self.counts["bad_chunks"] += 1
            self._count("chunk not after the previous one (skipped)")
            return
        buf.add(t, chunk.data)
        if stream_name == self.tgt_stream and self.next_d0 is None:
            self.next_d0 = int(t[0])

    def prior_ns(self, device_ns: int) -> int:
        if self.drift.points:
            return int(round(self.drift.offset_at(device_ns)))
        return int(np.median(self._arrival)) if self._arrival else 0

    def poll(self) -> list[OffsetEstimate]:
        out: list[OffsetEstimate] = []
        while self.next_d0 is not None and self.tgt.last is not None:
            d0 = self.next_d0
            d1 = d0 + self.window_ns
            if self.tgt.last < d1:
                break
            prior = self.prior_ns((d0 + d1) // 2)
            lo, hi = self.win.ref_range((d0, d1), prior)
            if self.ref.last is None or self.ref.last < hi:
                break  # wait for the reference to catch up
            tt, tx = self.tgt.cut(d0, d1)
            rt, rx = self.ref.cut(lo, hi)
            _, lat = self._lat.cut(d0, d1)
            bound = int(np.min(lat)) if len(lat) else None
            res = self.win.estimate(rt, rx, tt, tx, (d0, d1), prior, methods=(self.method,),
                                    arrival_bound_ns=bound)[self.method]
            self.counts["windows"] += 1
            if res.ok:
                if self.drift.add(res):
                    # overlapping windows share events: each estimate is worth hop/window of an independent one
                    overlap = max(1.0, self.window_ns / self.hop_ns) ** 0.5
                    ev = res.evidence(self.tgt_stream)
                    ev = dataclasses.replace(ev, sigma_ns=int(ev.sigma_ns * overlap))
                    out.append(ev)
                    self.counts["emitted"] += 1
                else:
                    self.counts["outliers"] += 1
                    self._count("offset disagrees with the drift line (outlier)")
            else:
                self.counts["abstained"] += 1
                self._count(res.reason)
            self.next_d0 = d0 + self.hop_ns
            self.tgt.trim_before(self.next_d0)
            self._lat.trim_before(self.next_d0)
            self.ref.trim_before(self.win.ref_range((self.next_d0, self.next_d0 + self.window_ns), prior)[0]
                                 - self.window_ns)
        return out

    def stats(self) -> dict:
        return {**self.counts, "reasons": dict(self.reasons), "drift_ppm": self.drift.drift_ppm,
                "drift_rejected": self.drift.rejected}
