"""Latency calibration: a pair's systematic alignment latency, measured where triggers map the stream too.

An aligner finds where a target stream's events line up with the reference's, but a device's own lag (a camera's
exposure-to-timestamp delay, a microphone's buffering) shifts every window the same way: no window shows it.  In a
session where the stream is *also* mapped by triggers (or probes), each window's aligner offset minus the trigger
path's offset at the same device time is that latency, measured.  ``LatencyMeter`` (pure) accumulates those
differences per ``PairKey`` (the same device on the same rig: target stream + modality, reference stream +
modality) and yields a ``Latency`` (robust: the median of the windows within a few MADs, its sigma the median's
standard error) once ``min_windows`` agree.  ``LatencyStore`` holds the measured latencies (JSON text in and out, versioned;
``from_text`` refuses a foreign or damaged file with a one-line ``ValueError``), and ``apply`` corrects a later,
unwired session's aligner estimate: the latency subtracted from its offset, its sigma added in quadrature to the
estimate's shared error (every window of the session shares it).  File I/O is the agent's
(``synchub.agent.pipeline.latency_io``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from synchub.agent.clock.fallback import MIN_WINDOWS, robust_median
from synchub.agent.core.evidence import OffsetEstimate

FORMAT = "synchub-latency-calibration"
VERSION = 1
#: Windows that must agree before a latency is stored: ``MIN_WINDOWS`` (outliers and the median's sigma:
#: ``synchub.agent.clock.fallback.robust_median``).


@dataclass(frozen=True, order=True)
class PairKey:
    """The same device on the same rig: the aligned stream and its modality, the reference it is aligned to and
    its modality."""

    stream: str
    modality: str
    ref: str
    ref_modality: str

    def label(self) -> str:
        return f"{self.stream} ({self.modality}) -> {self.ref} ({self.ref_modality})"


@dataclass(frozen=True)
class Latency:
    """aligner offset - trigger-path offset of one pair: ``latency_ns`` with 1-sigma ``sigma_ns``, from ``n``
    windows (``rejected`` more were outliers), measured in ``session`` at UTC ``measured_utc`` (ISO text)."""

    latency_ns: int
    sigma_ns: int
    n: int
    rejected: int = 0
    session: str = ""
    measured_utc: str = ""


class LatencyMeter:
    """Accumulates (aligner offset - trigger-path offset) per pair; ``result`` once enough windows agree.  Pure."""

    def __init__(self, min_windows: int = MIN_WINDOWS):
        if min_windows < 3:
            raise ValueError("min_windows must be >= 3 (a median and a spread)")
        self.min_windows = min_windows
        self.diffs: dict[PairKey, list[int]] = {}

    def add(self, key: PairKey, aligner_offset_ns: int, trigger_offset_ns: int) -> None:
        self.diffs.setdefault(key, []).append(int(aligner_offset_ns) - int(trigger_offset_ns))

    def result(self, key: PairKey) -> Latency | None:
        """The pair's latency, or None with fewer than ``min_windows`` windows within ``OUTLIER_MADS`` of the
        median (outliers: a window whose aligner picked a look-alike peak): ``robust_median``, which the clock
        layer's trigger fallback measures with too."""
        d = self.diffs.get(key, ())
        r = robust_median(d, self.min_windows)
        if r is None:
            return None
        return Latency(r[0], r[1], r[2], len(d) - r[2])

    def results(self) -> dict[PairKey, Latency]:
        out = {k: self.result(k) for k in sorted(self.diffs)}
        return {k: v for k, v in out.items() if v is not None}

    def counts(self) -> dict[str, int]:
        return {k.label(): len(v) for k, v in sorted(self.diffs.items())}


class LatencyStore:
    """The stored latencies of an agent's pairs (``to_text``/``from_text``: versioned JSON).  Pure."""

    def __init__(self, entries: dict[PairKey, Latency] | None = None):
        self.entries: dict[PairKey, Latency] = dict(entries or {})

    def get(self, key: PairKey) -> Latency | None:
        return self.entries.get(key)

    def update(self, measured: dict[PairKey, Latency], session: str = "", utc: str = "") -> list[PairKey]:
        """A newer measurement replaces a stored one (the device or its settings may have changed since)."""
        for k, v in measured.items():
            self.entries[k] = dataclasses.replace(v, session=session or v.session, measured_utc=utc or v.measured_utc)
        return sorted(measured)

    def to_text(self) -> str:
        rows = [{**dataclasses.asdict(k), **dataclasses.asdict(v)} for k, v in sorted(self.entries.items())]
        return json.dumps({"format": FORMAT, "version": VERSION, "pairs": rows}, indent=1) + "\n"

    @classmethod
    def from_text(cls, text: str) -> LatencyStore:
        """Raises ValueError (one line) on anything but a file ``to_text`` wrote (of this version)."""
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        if doc.get("version") != VERSION:
            raise ValueError(f"version {doc.get('version')!r} (this synchub reads version {VERSION})")
        rows = doc.get("pairs")
        if not isinstance(rows, list):
            raise ValueError("no 'pairs' list")
        entries = {}
        key_names = [f.name for f in dataclasses.fields(PairKey)]
        for i, r in enumerate(rows):
            try:
                key = PairKey(*(str(r[n]) for n in key_names))
                lat = Latency(int(r["latency_ns"]), int(r["sigma_ns"]), int(r["n"]), int(r.get("rejected", 0)),
                              str(r.get("session", "")), str(r.get("measured_utc", "")))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"pair {i}: bad entry ({exc!r:.60})") from None
            if lat.sigma_ns <= 0 or lat.n <= 0:
                raise ValueError(f"pair {i}: sigma_ns and n must be > 0")
            entries[key] = lat
        return cls(entries)

    def describe(self) -> list[dict]:
        """One plain dict per pair (for status and the recording's metadata)."""
        return [{"pair": k.label(), **dataclasses.asdict(k), **dataclasses.asdict(v)}
                for k, v in sorted(self.entries.items())]


def apply(est: OffsetEstimate, lat: Latency) -> OffsetEstimate:
    """An unwired session's aligner estimate corrected by a stored latency: the latency subtracted from its offset,
    the latency's sigma added in quadrature to the error every window shares (``shared_ns``)."""
    shared = math.hypot(est.shared_ns, lat.sigma_ns)
    return dataclasses.replace(est, offset_ns=est.offset_ns - lat.latency_ns, shared_ns=max(1, int(round(shared))))
