"""The data model every part of synchub shares: stream metadata, chunks of samples, gaps.

* ``StreamInfo`` is LSL-style metadata, so a stream maps one-to-one onto an XDF stream and an MCAP channel.
* ``Chunk`` carries samples with three kinds of time per sample (DESIGN.md): raw device time, host receive
  time, and corrected (reference) time with its 1-sigma uncertainty.  Raw times are never overwritten:
  ``Chunk.corrected`` returns a new chunk, so correction is a layer that can be rerun on stored raw times.
* ``Gap`` records data that was lost, with its cause.  Loss is never silent.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .units import as_ns_array

#: Modalities (LSL ``type``) synchub knows.  ``marker`` is LSL's name for irregular event strings.
MODALITIES = ("imu", "audio", "video", "image", "text", "telemetry", "trigger", "marker", "fused", "other")

#: LSL channel formats and the numpy dtype a chunk carries for each.
CHANNEL_FORMATS: dict[str, np.dtype | None] = {
    "float32": np.dtype(np.float32),
    "double64": np.dtype(np.float64),
    "int8": np.dtype(np.int8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "uint8": np.dtype(np.uint8),  # not in LSL; used for video frames (XDF writes them as int16)
    "string": None,  # samples are a list of str
}

#: Correction methods a chunk can carry.
METHODS = ("none", "identity", "arrival", "triggers", "probes", "neural", "classical", "hybrid", "pps")


@dataclass(frozen=True)
class StreamInfo:
    """LSL-style stream metadata.

    ``nominal_srate`` is in Hz, 0.0 for an irregular stream.  ``shape`` is the per-sample shape when a sample
    is more than a vector (a video frame is ``(h, w)``); ``channel_count`` is then the product.
    ``quality`` holds free-form facts about timing quality (e.g. ``{"timestamp_source": "userspace"}``).
    """

    name: str
    type: str
    nominal_srate: float
    channel_count: int
    channel_format: str = "float32"
    channel_labels: tuple[str, ...] = ()
    channel_units: tuple[str, ...] = ()
    source_id: str = ""
    shape: tuple[int, ...] = ()
    quality: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError("stream name must be a non-empty string")
        if self.type not in MODALITIES:
            raise ValueError(f"stream {self.name!r}: unknown type {self.type!r}; allowed: {', '.join(MODALITIES)}")
        if self.channel_format not in CHANNEL_FORMATS:
            raise ValueError(
                f"stream {self.name!r}: unknown channel_format {self.channel_format!r}; "
                f"allowed: {', '.join(CHANNEL_FORMATS)}"
            )
        if self.nominal_srate < 0:
            raise ValueError(f"stream {self.name!r}: nominal_srate must be >= 0 (0 = irregular)")
        if self.channel_count < 1:
            raise ValueError(f"stream {self.name!r}: channel_count must be >= 1")
        if self.shape and int(np.prod(self.shape)) != self.channel_count:
            raise ValueError(f"stream {self.name!r}: shape {self.shape} does not match channel_count")
        for what, seq in (("channel_labels", self.channel_labels), ("channel_units", self.channel_units)):
            if seq and len(seq) != self.channel_count:
                raise ValueError(f"stream {self.name!r}: {what} has {len(seq)} entries, expected {self.channel_count}")

    @property
    def dtype(self) -> np.dtype | None:
        return CHANNEL_FORMATS[self.channel_format]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.shape if self.shape else (self.channel_count,)

    @property
    def irregular(self) -> bool:
        return self.nominal_srate == 0.0

    def quality_dict(self) -> dict[str, str]:
        return dict(self.quality)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channel_labels"] = list(self.channel_labels)
        d["channel_units"] = list(self.channel_units)
        d["shape"] = list(self.shape)
        d["quality"] = dict(self.quality)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown stream metadata keys: {sorted(unknown)}")
        kw = dict(d)
        for key in ("channel_labels", "channel_units", "shape"):
            if key in kw:
                kw[key] = tuple(kw[key])
        if "quality" in kw:
            q = kw["quality"]
            kw["quality"] = tuple(sorted((str(k), str(v)) for k, v in (q.items() if isinstance(q, dict) else q)))
        kw["nominal_srate"] = float(kw.get("nominal_srate", 0.0))
        kw["channel_count"] = int(kw.get("channel_count", 1))
        return cls(**kw)

    def with_quality(self, **facts: str) -> StreamInfo:
        q = dict(self.quality)
        q.update({k: str(v) for k, v in facts.items()})
        return dataclasses.replace(self, quality=tuple(sorted(q.items())))


@dataclass
class Chunk:
    """A run of consecutive samples of one stream.

    ``seq`` is the per-stream sequence number of the first sample; sample ``i`` has ``seq + i``.  Sequence numbers
    are assigned by the agent, are contiguous across chunks and never reused, so a reader can prove that every
    sample arrived exactly once.

    Times are int64 ns arrays of length ``n``:
    ``device_ns`` raw device time (wraps/resets already unwrapped by the driver, segment in ``segment``),
    ``host_ns`` host CLOCK_MONOTONIC at receipt, ``ref_ns`` corrected reference time and ``unc_ns`` its 1-sigma
    uncertainty (both ``None`` until a clock model has been applied).
    """

    stream: str
    seq: int
    data: Any  # np.ndarray of shape (n, *sample_shape), or list[str] for string streams
    device_ns: np.ndarray
    host_ns: np.ndarray
    ref_ns: np.ndarray | None = None
    unc_ns: np.ndarray | None = None
    segment: np.ndarray | None = None  # int32 clock segment per sample (bumps on a detected device clock reset)
    method: str = "none"

    def __post_init__(self) -> None:
        self.device_ns = as_ns_array(self.device_ns)
        self.host_ns = as_ns_array(self.host_ns)
        n = len(self.device_ns)
        if len(self.host_ns) != n:
            raise ValueError(f"chunk of {self.stream!r}: host_ns has {len(self.host_ns)} entries, device_ns {n}")
        if len(self.data) != n:
            raise ValueError(f"chunk of {self.stream!r}: data has {len(self.data)} samples, device_ns {n}")
        if self.ref_ns is not None:
            self.ref_ns = as_ns_array(self.ref_ns)
            if len(self.ref_ns) != n:
                raise ValueError(f"chunk of {self.stream!r}: ref_ns length mismatch")
        if self.unc_ns is not None:
            self.unc_ns = as_ns_array(self.unc_ns)
            if len(self.unc_ns) != n:
                raise ValueError(f"chunk of {self.stream!r}: unc_ns length mismatch")
        if self.segment is not None:
            self.segment = np.ascontiguousarray(self.segment, dtype=np.int32)
            if len(self.segment) != n:
                raise ValueError(f"chunk of {self.stream!r}: segment length mismatch")
        if self.method not in METHODS:
            raise ValueError(f"chunk of {self.stream!r}: unknown method {self.method!r}")

    def __len__(self) -> int:
        return len(self.device_ns)

    @property
    def n(self) -> int:
        return len(self.device_ns)

    @property
    def seq_end(self) -> int:
        """One past the last sample's sequence number."""
        return self.seq + self.n

    @property
    def is_corrected(self) -> bool:
        return self.ref_ns is not None

    def corrected(self, ref_ns, unc_ns, method: str, segment=None) -> Chunk:
        """A new chunk with the correction layer set; raw times and data are shared, never modified."""
        return dataclasses.replace(
            self,
            ref_ns=as_ns_array(ref_ns),
            unc_ns=as_ns_array(unc_ns),
            segment=self.segment if segment is None else segment,
            method=method,
        )

    def slice(self, start: int, stop: int) -> Chunk:
        def cut(a):
            return None if a is None else a[start:stop]

        return Chunk(
            stream=self.stream,
            seq=self.seq + start,
            data=self.data[start:stop],
            device_ns=self.device_ns[start:stop],
            host_ns=self.host_ns[start:stop],
            ref_ns=cut(self.ref_ns),
            unc_ns=cut(self.unc_ns),
            segment=cut(self.segment),
            method=self.method,
        )


@dataclass(frozen=True)
class Gap:
    """Samples that were lost, and why.  Written into the recording as a record of its own.

    ``count`` samples between ``seq`` (the sequence number the next real sample got) and the previous one were
    lost; ``device_ns_from``/``device_ns_to`` bracket the hole in device time when known (0 when not).
    ``cause`` is one of ``GAP_CAUSES``.
    """

    stream: str
    seq: int
    count: int
    cause: str
    device_ns_from: int = 0
    device_ns_to: int = 0
    detail: str = ""

    def __post_init__(self) -> None:
        if self.cause not in GAP_CAUSES:
            raise ValueError(f"unknown gap cause {self.cause!r}; allowed: {', '.join(GAP_CAUSES)}")
        if self.count < 0:
            raise ValueError("gap count must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


GAP_CAUSES = (
    "device_drop",  # the device's own counter skipped (sample never reached the host)
    "malformed",  # bytes arrived but could not be parsed
    "queue_full",  # the agent's bounded queue overflowed (only with a lossy drop policy)
    "spool_full",  # the on-disk spool overflowed and its policy dropped data
    "device_reset",  # samples around a device clock reset could not be attributed (the reset: a ClockReset)
    "disconnect",  # the device went away
    "agent_crash",  # the agent process died holding samples it had read (queue, correction hold); found on restart
)


@dataclass
class StreamStats:
    """Per-stream counters reported by drivers and the pipeline (never silent loss)."""

    samples: int = 0
    chunks: int = 0
    malformed: int = 0
    dropped: int = 0
    gaps: int = 0
    resets: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str, n: int = 1) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + n


def safe_name(name: str) -> str:
    """An agent name as a file name part (the collector's file names, the agent's default spool directory)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64] or "agent"
