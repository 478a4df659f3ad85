"""The truth record of a simulated run: what really happened, kept apart from what the agent measured.

For each stream, entry ``k`` is the ``k``-th sample *delivered to the host* (written to its pty, or read from
its capture source), in delivery order, so the agent's per-stream sequence number ``k`` matches it as long as
the agent read the stream from its start.  Saved as ``.npz`` of plain arrays (no Python objects); ``Truth.load`` reads it back.

``Recorder`` collects one stream's truth while the rig runs.  Its memory is bounded (``Spill``): past ``spill_samples``
(64k samples, 2 MB) or 512 packets, the per-sample arrays are appended to one raw file per array in a private temporary
directory (removed with the recorder), edges and pings after 512 events each, and ``build`` reads them back only when
the truth is asked for (a soak of hours stays flat: what stays in memory per spill is nothing, not a list of file
names).  The rig keeps its trigger lines' truth in a ``Spill`` too.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_I64 = np.int64


def _z(dtype=_I64) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


@dataclass
class StreamTruth:
    name: str
    modality: str
    wire: str
    true_ns: np.ndarray = field(default_factory=_z)  # reference time of each delivered sample
    device_ns: np.ndarray = field(default_factory=_z)  # the device's own clock at that sample
    segment: np.ndarray = field(default_factory=lambda: _z(np.int32))  # device clock segment (resets)
    host_ns: np.ndarray = field(default_factory=_z)  # when the bytes/period reached the host
    conn: np.ndarray = field(default_factory=lambda: _z(np.int32))  # host connection index (serial reopen)
    dropped: int = 0  # samples the device dropped before they reached the host
    undelivered: int = 0  # samples produced while no host was reading (not in the arrays)
    corrupted: int = 0  # samples whose bytes were deliberately corrupted (test hook; not in the arrays)
    resets_ns: np.ndarray = field(default_factory=_z)  # reference times of device clock resets
    edge_true_ns: np.ndarray = field(default_factory=_z)  # trigger edges the device reported: true time
    edge_level: np.ndarray = field(default_factory=lambda: _z(np.int8))
    edge_device_ns: np.ndarray = field(default_factory=_z)
    ping_token: np.ndarray = field(default_factory=_z)  # pings answered: token, true time of receipt,
    ping_true_ns: np.ndarray = field(default_factory=_z)  # device time stamped in the pong
    ping_device_ns: np.ndarray = field(default_factory=_z)
    clock: dict = field(default_factory=dict)  # the ClockSpec, as a dict

    ARRAYS = ("true_ns", "device_ns", "segment", "host_ns", "conn", "resets_ns", "edge_true_ns", "edge_level",
              "edge_device_ns", "ping_token", "ping_true_ns", "ping_device_ns")

    def __len__(self) -> int:
        return len(self.true_ns)

    def errors(self, seq, ref_ns) -> tuple[np.ndarray, np.ndarray]:
        """Corrected time ``ref_ns`` minus true time (ns) of the samples numbered ``seq`` that have a truth entry,
        and their true times."""
        seq = np.asarray(seq)
        ok = seq < len(self.true_ns)
        return np.asarray(ref_ns)[ok] - self.true_ns[seq[ok]], self.true_ns[seq[ok]]


@dataclass
class TriggerTruth:
    name: str
    t_ns: np.ndarray = field(default_factory=_z)  # true edge times
    polarity: np.ndarray = field(default_factory=lambda: _z(np.int8))  # +1 rising, -1 falling
    seqno: np.ndarray = field(default_factory=_z)  # line seqno the GPIO back end reported (1-based)

    @property
    def rises_ns(self) -> np.ndarray:
        return self.t_ns[self.polarity > 0]


@dataclass
class Truth:
    origin_ns: int
    seed: int
    start_ns: int = 0
    stop_ns: int = 0
    streams: dict[str, StreamTruth] = field(default_factory=dict)
    triggers: dict[str, TriggerTruth] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        arrays: dict[str, np.ndarray] = {}
        meta = {"origin_ns": self.origin_ns, "seed": self.seed, "start_ns": self.start_ns, "stop_ns": self.stop_ns,
                "streams": [], "triggers": []}
        for i, s in enumerate(self.streams.values()):
            meta["streams"].append({"name": s.name, "modality": s.modality, "wire": s.wire, "dropped": s.dropped,
                                    "undelivered": s.undelivered, "corrupted": s.corrupted, "clock": s.clock})
            for a in StreamTruth.ARRAYS:
                arrays[f"s{i}_{a}"] = np.asarray(getattr(s, a))
        for i, t in enumerate(self.triggers.values()):
            meta["triggers"].append({"name": t.name})
            arrays[f"t{i}_t_ns"], arrays[f"t{i}_polarity"], arrays[f"t{i}_seqno"] = t.t_ns, t.polarity, t.seqno
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        path = Path(path)
        with open(path, "wb") as f:  # np.savez would append .npz to a name without it
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Truth:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            truth = cls(origin_ns=meta["origin_ns"], seed=meta["seed"], start_ns=meta["start_ns"],
                        stop_ns=meta["stop_ns"])
            for i, m in enumerate(meta["streams"]):
                s = StreamTruth(m["name"], m["modality"], m["wire"], dropped=m["dropped"],
                                undelivered=m["undelivered"], corrupted=m.get("corrupted", 0),
                                clock=m.get("clock", {}))
                for a in StreamTruth.ARRAYS:
                    setattr(s, a, z[f"s{i}_{a}"])
                truth.streams[s.name] = s
            for i, m in enumerate(meta["triggers"]):
                truth.triggers[m["name"]] = TriggerTruth(m["name"], z[f"t{i}_t_ns"], z[f"t{i}_polarity"],
                                                         z[f"t{i}_seqno"])
        return truth


class Spill:
    """Named arrays appended piece by piece, bounded in memory: a key's pieces go to one raw file ``<key>.bin`` in a
    private temporary directory (removed with the object) once they hold ``spill_items`` items or ``max_pieces``
    pieces; ``array`` reads a key back (file, then what is still in memory) only when asked.  What stays in memory
    per spill is nothing (not a list of file names), so a soak of hours stays flat."""

    def __init__(self, prefix: str, spill_items: int = 1 << 16, max_pieces: int = 512):
        self.prefix = prefix
        self.spill_items = spill_items
        self.max_pieces = max_pieces
        self.parts: dict[str, list[np.ndarray]] = collections.defaultdict(list)
        self.counts: collections.Counter = collections.Counter()  # items appended per key, spilled or not
        self._held: collections.Counter = collections.Counter()  # items in memory per key
        self._spilled: dict[str, np.dtype] = {}  # key -> dtype of its spill file
        self.spills = 0
        self._dir: Path | None = None

    def append(self, key: str, a: np.ndarray) -> None:
        self.parts[key].append(a)
        self.counts[key] += len(a)
        self._held[key] += len(a)
        if self._held[key] >= self.spill_items or len(self.parts[key]) >= self.max_pieces:
            self.spill(key)

    def spill(self, key: str) -> None:
        pieces = self.parts.pop(key, None)
        if not pieces:
            return
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=f"synchub-truth-{self.prefix}-"))
            weakref.finalize(self, shutil.rmtree, str(self._dir), True)
        a = np.concatenate(pieces)
        dtype = self._spilled.setdefault(key, a.dtype)
        with open(self._dir / f"{key}.bin", "ab") as f:
            np.ascontiguousarray(a, dtype=dtype).tofile(f)
        self._held[key] = 0
        self.spills += 1

    def keys(self) -> set[str]:
        return set(self.parts) | set(self._spilled)

    def array(self, key: str, dtype) -> np.ndarray:
        parts = [np.fromfile(self._dir / f"{key}.bin", self._spilled[key])] if key in self._spilled else []
        parts += self.parts.get(key, [])
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


class Recorder:
    """Per-stream truth, appended as samples are delivered; bounded in memory (a ``Spill``).  The per-sample arrays
    spill together (after ``spill_samples`` samples or ``SPILL_APPENDS`` packets: a slow stream's truth does not ramp
    up in memory for minutes (imu0, 200 Hz) or hours (10 Hz telemetry) before the first spill); edges and pings,
    one item per event, spill per key after ``SPILL_APPENDS`` events."""

    PER_SAMPLE = ("true_ns", "device_ns", "segment", "host_ns", "conn")
    SPILL_APPENDS = 512

    def __init__(self, spec, clock, spill_samples: int = 1 << 16):
        self.truth = StreamTruth(spec.name, spec.modality, spec.wire_format, clock=dataclasses.asdict(spec.clock))
        self.store = Spill(spec.name, spill_items=1 << 62, max_pieces=self.SPILL_APPENDS)
        self.lock = threading.Lock()
        self.spill_samples = spill_samples
        self._pending = 0  # samples in memory
        self._packets = 0  # sample packets in memory
        self.spills = 0  # spills of the per-sample arrays

    @property
    def delivered(self) -> int:
        return self.store.counts["true_ns"]

    def samples(self, true, dev, seg, host_ns: int | np.ndarray, conn: int) -> None:
        with self.lock:
            st = self.store
            st.parts["true_ns"].append(true)
            st.counts["true_ns"] += len(true)
            for key, a in (("device_ns", dev), ("segment", seg),
                           ("host_ns", np.broadcast_to(np.asarray(host_ns, np.int64), true.shape).copy()),
                           ("conn", np.full(len(true), conn, np.int32))):
                st.parts[key].append(a)
            self._pending += len(true)
            self._packets += 1
            if self._pending >= self.spill_samples or self._packets >= self.SPILL_APPENDS:
                for key in self.PER_SAMPLE:
                    st.spill(key)
                self.spills += 1
                self._pending = self._packets = 0

    def add(self, key: str, value) -> None:
        with self.lock:
            self.store.append(key, np.atleast_1d(value))

    def build(self, dropped: int, undelivered: int, resets_ns: np.ndarray) -> StreamTruth:
        with self.lock:
            t = dataclasses.replace(self.truth)
            for key in self.store.keys():
                setattr(t, key, self.store.array(key, getattr(t, key).dtype))
            t.dropped, t.undelivered, t.resets_ns = dropped, undelivered, resets_ns
            return t
