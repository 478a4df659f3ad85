"""A session recorded by the real collector on loopback (``record_session``), with known truth: 2 s of 8-channel
EEG at 250 Hz (corrected, 10 samples lost as a gap record), 3 markers, a stream never heard from, and UTC samples
every 0.5 s (the reference clock 20 ppm slow against UTC)."""

import threading
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from synchub.agent.collector.server import Collector
from synchub.agent.core.evidence import UtcSample, evidence_to_dict
from synchub.agent.core.stream import Chunk, Gap, StreamInfo
from synchub.agent.transport.sender import Sender

NS = 1_000_000_000
T0 = time.monotonic_ns() + 123_456  # the agent's CLOCK_MONOTONIC at the first sample (near the session's start)
UTC0 = time.time_ns()  # UTC at T0
DRIFT = 20e-6  # the reference clock runs 20 ppm slow against UTC
RATE = 250.0
LABELS = tuple(f"EEG{i}" for i in range(8))


def utc_of(mono_ns):
    """UTC (int ns) of reference times: exact integers, no float64 rounding at 1.8e18."""
    d = np.asarray(mono_ns, dtype=np.int64) - T0
    return UTC0 + d + np.rint(d * DRIFT).astype(np.int64)


class Session(NamedTuple):
    path: Path
    data: np.ndarray  # the EEG samples recorded
    ref: np.ndarray  # their corrected times
    mref: np.ndarray  # the markers' times


def record_session(out: Path, meta: tuple[tuple[str, dict], ...] = ()) -> Session:
    """``meta``: (stream, record) pairs the agent sends too (e.g. its ``_latency`` calibration)."""
    col = Collector("tcp://127.0.0.1:0", out, flush_s=0.01)
    stop = threading.Event()
    t = threading.Thread(target=col.run, args=(stop,), daemon=True)
    t.start()
    infos = [StreamInfo("eeg", "other", RATE, 8, "float32", LABELS, ("uV",) * 8, "amp"),
             StreamInfo("markers", "marker", 0.0, 1, "string", ("event",)),
             StreamInfo("silent", "imu", 100.0, 3)]
    s = Sender(col.endpoint, "pi1", infos)
    rng = np.random.default_rng(4)
    eeg = rng.normal(0, 10, (500, 8)).astype(np.float32)
    ref = T0 + np.rint(np.arange(500) * NS / RATE).astype(np.int64) + 17
    kept = np.r_[0:200, 210:500]  # samples 200..209 lost
    seq = 0
    for a in range(0, len(kept), 10):
        idx = kept[a:a + 10]
        if idx[0] == 210:
            s.send_gap(Gap("eeg", seq, 10, "device_drop", int(ref[199]), int(ref[210]), "counter jumped"))
        c = Chunk("eeg", seq, eeg[idx], ref[idx] - 3_000_000, ref[idx] + 8_000_000, ref[idx], np.full(10, 900),
                  np.zeros(10, np.int32), "probes")
        s.send_chunk(c)
        seq += 10
        if a % 100 == 90:  # acked and flushed: the file gets several MCAP chunks (a torn copy keeps a prefix)
            assert s.flush(5)
    mref = T0 + np.array([250_000_000, 1_000_000_000, 1_750_000_000])
    s.send_chunk(Chunk("markers", 0, ["start", "stim", "stop"], mref, mref, mref, np.zeros(3, np.int64)))
    for k in range(6):
        mono = T0 - NS + k * NS // 2
        item = UtcSample(mono, int(utc_of(mono)), 200_000, "ntp")
        s.send_meta("_evidence", {"kind": "evidence", **evidence_to_dict(item)})
    for stream, rec in meta:
        s.send_meta(stream, rec)
    assert s.flush(10)
    s.close(1)
    stop.set()
    t.join(5)
    col.close()
    path = next(out.glob("*.mcap"))
    return Session(path, eeg[kept], ref[kept], mref)
