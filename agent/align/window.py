"""Window-level alignment of one target stream against a reference stream.  Pure: no I/O.

``WindowAligner`` turns one window of raw samples of both streams into ``AlignResult``s for the methods
``classical`` (onset correlation), ``neural`` (encoder embeddings only) and ``hybrid`` (neural coarse + fine onset
correlation; classical coarse when the encoders abstain or have no model).  The benchmark and the live tracker
(``synchub.agent.align.tracker``) both use it; ``load_runners`` loads the encoders it embeds with.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

import numpy as np

from synchub.agent.core.stream import StreamInfo
from synchub.agent.core.units import NS
from synchub.models.runner import EncoderRunner, NoModelError, fingerprints

from .aligner import Aligner, AlignerSettings, AlignResult, abstain, apply_arrival_bound, gcc_fine
from .calibration import FILES_TABLE, REAL_TABLE, SIM_TABLE, SigmaTable, pair_floor_ns, window_scales
from .markers import MarkerSemantics
from .onsets import onsets

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


def reason_kind(why: str) -> str:
    """An abstention's reason with its numbers taken out (``PSR 5.9 < 8.0`` -> ``PSR # < #``), so that the windows
    that abstained for the same reason are counted together."""
    return re.sub(r"\d+(\.\d+)?", "#", why)


def table_mismatch(table) -> str:
    """"" when the sigma ``table`` (``calibration.SigmaTable``) was fitted with the encoders loaded now, else one
    line naming those that differ (``$SYNCHUB_MODEL_DIR``: retrained on a rig, or a candidate set being judged)."""
    stale = table.stale(fingerprints(table.modalities()))
    return "" if not stale else (f"the sigma table was fitted with other {', '.join(stale)} encoders than these: "
                                 "its coverage does not hold for them until it is refitted (synchub bench align "
                                 "--fit-sigma)")


def sigma_table(simulated: bool, files: bool = False) -> SigmaTable | None:
    """The fitted sigma table aligned windows are weighed by: the simulated rig's for a simulated rig, else the
    real-signal corpus's (the agent's live aligners, ``synchub align``'s aligner links); ``files``: the one that
    calibrates what ``synchub align``'s aligner links report (``FILES_TABLE``).  None (logged) when it is not
    installed; a warning when it was fitted with other encoders (``table_mismatch``)."""
    path = FILES_TABLE if files else SIM_TABLE if simulated else REAL_TABLE
    try:
        table = SigmaTable.load(path)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("alignment: no sigma table (%s): the aligners' own sigmas are used", exc)
        return None
    why = table_mismatch(table)
    if why:  # e.g. encoders retrained on this rig ($SYNCHUB_MODEL_DIR): the table's coverage is not theirs
        log.warning("alignment: %s (%s)", why, path.name)
    return table


class WindowAligner:
    """Aligns windows of ``tgt`` (device clock) against ``ref`` (reference clock)."""

    def __init__(self, ref_info: StreamInfo, tgt_info: StreamInfo, runners: dict | None = None,
                 settings: AlignerSettings | None = None):
        s = settings or AlignerSettings()
        self.ref_mod = modality_of(ref_info)
        self.tgt_mod = modality_of(tgt_info)
        floor = pair_floor_ns(s.pair_sigma_floor_ms, self.ref_mod, self.tgt_mod, 0.0)
        if floor > s.sigma_floor_ns:
            s = dataclasses.replace(s, sigma_floor_ns=floor)
        ks = window_scales(s.window_sigma_scales, self.ref_mod, self.tgt_mod)
        if ks:
            s = dataclasses.replace(s, **{f"{m}_sigma_k": k for m, k in ks.items()})
        self.aligner = Aligner(s)
        self.s = self.aligner.s
        self.period_s = max(period_s(ref_info), period_s(tgt_info))
        self.semantics = MarkerSemantics(self.s.markers)
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

    def _without_unseen_ends(self, modality: str, partner: str, t, x):
        """A marker window without the lines logging an end ``partner`` does not see (``MarkerSemantics``)."""
        if modality != "text" or partner == "text" or len(t) == 0:
            return t, x
        drop = self.semantics.unseen_ends(x, partner)
        if not drop.any():
            return t, x
        keep = ~drop
        return np.asarray(t)[keep], [v for v, k in zip(x, keep, strict=True) if k]

    def neural(self, ref_t, ref_x, tgt_t, tgt_x, span, prior_ns: int, ref_emb=None, tgt_emb=None) -> AlignResult:
        """Encoders only.  ``ref_emb``/``tgt_emb``: embeddings of the whole streams computed once (the runner's
        output does not depend on how a stream is cut), used instead of embedding the window again."""
        if ref_emb is not None and tgt_emb is not None:
            re, te = ref_emb, tgt_emb
        else:
            ref_t, ref_x = self._without_unseen_ends(self.ref_mod, self.tgt_mod, ref_t, ref_x)
            tgt_t, tgt_x = self._without_unseen_ends(self.tgt_mod, self.ref_mod, tgt_t, tgt_x)
            re, why = self._embed(self.ref_mod, ref_t, ref_x, self.ref_range(span, prior_ns))
            if re is None:
                return abstain("neural", span, why, prior_ns)
            te, why = self._embed(self.tgt_mod, tgt_t, tgt_x, span)
            if te is None:
                return abstain("neural", span, why, prior_ns)
        for e in (re, te):
            if isinstance(e, str):
                return abstain("neural", span, e, prior_ns)
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
            ro = onsets(self.ref_mod, ref_t, ref_x, partner=self.tgt_mod, semantics=self.semantics)
            to = onsets(self.tgt_mod, tgt_t, tgt_x, partner=self.ref_mod, semantics=self.semantics)
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
