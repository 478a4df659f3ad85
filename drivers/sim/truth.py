"""The truth record of a simulated run: what really happened, kept apart from what the agent measured.

For each stream, entry ``k`` is the ``k``-th sample *delivered to the host* (written to its pty, or read from
its capture source), in delivery order, so the agent's per-stream sequence number ``k`` matches it as long as
the agent read the stream from its start.  Saved as ``.npz`` of plain arrays (no Python objects); ``Truth.load`` reads it back.

``Recorder`` collects one stream's truth while the rig runs.  Its memory is bounded: past ``spill_samples`` (64k
samples, 2 MB) or 512 packets, the per-sample arrays are appended to one raw file per array in a private temporary directory (removed
with the recorder), and ``build`` reads them back only when the truth is asked for (a soak of hours stays flat: what
stays in memory per spill is nothing, not a list of file names).
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


class Recorder:
    """Per-stream truth, appended as samples are delivered; bounded in memory (see the module docstring)."""

    PER_SAMPLE = ("true_ns", "device_ns", "segment", "host_ns", "conn")
    SPILL_APPENDS = 512

    def __init__(self, spec, clock, spill_samples: int = 1 << 16):
        self.truth = StreamTruth(spec.name, spec.modality, spec.wire_format, clock=dataclasses.asdict(spec.clock))
        self.parts: dict[str, list] = collections.defaultdict(list)
        self.lock = threading.Lock()
        self.spill_samples = spill_samples
        self._pending = 0  # samples in memory
        self._spilled: dict[str, np.dtype] = {}  # per-sample array -> dtype of its spill file ``<key>.bin``
        self.spills = 0
        self._dir: Path | None = None

    def samples(self, true, dev, seg, host_ns: int | np.ndarray, conn: int) -> None:
        with self.lock:
            p = self.parts
            p["true_ns"].append(true)
            p["device_ns"].append(dev)
            p["segment"].append(seg)
            p["host_ns"].append(np.broadcast_to(np.asarray(host_ns, np.int64), true.shape).copy())
            p["conn"].append(np.full(len(true), conn, np.int32))
            self._pending += len(true)
            # a slow stream (a sample per packet) spills after SPILL_APPENDS packets: its truth does not ramp up in
            # memory for minutes (imu0, 200 Hz) or hours (10 Hz telemetry) before the first spill
            if self._pending >= self.spill_samples or len(p["true_ns"]) >= self.SPILL_APPENDS:
                self._spill()

    def _spill(self) -> None:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=f"synchub-truth-{self.truth.name}-"))
            weakref.finalize(self, shutil.rmtree, str(self._dir), True)
        for key in self.PER_SAMPLE:
            a = np.concatenate(self.parts.pop(key))
            dtype = self._spilled.setdefault(key, a.dtype)
            with open(self._dir / f"{key}.bin", "ab") as f:
                np.ascontiguousarray(a, dtype=dtype).tofile(f)
        self.spills += 1
        self._pending = 0

    def add(self, key: str, value) -> None:
        with self.lock:
            self.parts[key].append(np.atleast_1d(value))

    def build(self, dropped: int, undelivered: int, resets_ns: np.ndarray) -> StreamTruth:
        with self.lock:
            t = dataclasses.replace(self.truth)
            for key in set(self.parts) | (set(self.PER_SAMPLE) if self._spilled else set()):
                parts = [np.fromfile(self._dir / f"{key}.bin", self._spilled[key])] if key in self._spilled else []
                parts += self.parts.get(key, [])
                if parts:
                    setattr(t, key, np.concatenate(parts).astype(getattr(t, key).dtype))
            t.dropped, t.undelivered, t.resets_ns = dropped, undelivered, resets_ns
            return t
