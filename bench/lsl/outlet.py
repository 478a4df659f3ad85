"""``synchub bench lsl-outlet``: how many corrected samples per second the agent's LSL outlet
(``synchub.agent.pipeline.lsl_outlet.LslPublisher``, ``[lsl] outlet = true``) re-publishes on one core.

The publisher runs in this process pinned to one CPU and pushes corrected 8-channel float32 chunks (``--chunk``
samples each, per-sample corrected stamps: the shipper's output) at the stream's real rate (``--rate``, default
100 kHz in 20 ms chunks, as the shipper releases them) for ``--seconds``, through the same ``push`` the shipper
calls; ``--unpaced`` pushes as fast as it can instead (an LSL outlet keeps ``max_buffered`` seconds at the nominal
rate, so an inlet can fall behind and lose the oldest samples there, as with any LSL outlet).  A LabRecorder-style
inlet in a second process (pinned to the other CPU when there is one) pulls everything and checks every value and
stamp.  Reported: samples/s of wall time and per CPU-second of
the publishing process (its thread and liblsl's: what "on one core" means on a shared machine), samples received,
stamp errors.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from synchub.agent.collector.ledger import Ledger
from synchub.agent.collector.lsl_tap import LslTap
from synchub.agent.config.schema import LslOutletSettings
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.pipeline.lsl_outlet import LslPublisher
from synchub.argtypes import positive
from synchub.bench.throughput import _pin, machine
from synchub.drivers.lsl.inlet import import_pylsl
from synchub.errors import UserError

NS = 1_000_000_000
CHANNELS = 8
GOAL = 100_000.0


def add_arguments(p) -> None:
    p.add_argument("--seconds", type=positive, default=10.0, help="how long to push (default 10)")
    p.add_argument("--chunk", type=int, default=2000, help="samples per corrected chunk (default 2000: 20 ms)")
    p.add_argument("--rate", type=positive, default=100_000.0, help="the stream's nominal rate and push rate, Hz")
    p.add_argument("--unpaced", action="store_true", help="push as fast as possible (samples may be lost)")
    p.add_argument("--collector", action="store_true",
                   help="the collector's --lsl-outlet tap (stamps mapped through UTC) instead of the agent's outlet")
    p.add_argument("--cpu", type=int, default=None, help="CPU for the publisher (default: the first allowed)")
    p.add_argument("--json", default="bench/results/lsl-outlet.json", help="where to write the results")


def expected_value(k: np.ndarray) -> np.ndarray:
    """Channel 0 of sample ``k`` (the inlet checks every sample against it)."""
    return (k % 1_000_000).astype(np.float32)


def _inlet_proc(cpu, name, n_expected, rate, t0_ns, q) -> None:
    _pin(cpu)
    pylsl = import_pylsl()
    found = pylsl.resolve_byprop("name", name, 1, 10.0)
    if not found:
        q.put({"error": "the inlet could not resolve the outlet"})
        return
    inlet = pylsl.StreamInlet(found[0], max_buflen=360, recover=False)
    inlet.open_stream(timeout=10.0)
    q.put("ready")
    got, bad_values, max_err = 0, 0, 0.0
    idle_since = None
    while got < n_expected:
        data, stamps = inlet.pull_chunk(timeout=0.05, max_samples=100_000)
        if not stamps:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 3.0:
                break
            continue
        idle_since = None
        k = np.arange(got, got + len(stamps))
        values = np.asarray(data, dtype=np.float32)
        bad_values += int(np.count_nonzero(values[:, 0] != expected_value(k)))
        truth = (t0_ns + np.rint(k * NS / rate).astype(np.int64) + 37) / NS
        max_err = max(max_err, float(np.abs(np.asarray(stamps) - truth).max()))
        got += len(stamps)
    q.put({"received": got, "bad_values": bad_values, "max_stamp_error_ns": round(max_err * NS, 1)})


def _chunks(n_chunks: int, per: int, rate: float, t0_ns: int) -> list[Chunk]:
    """Corrected chunks as the shipper releases them (a stamp per sample, off the ns grid by 37 ns)."""
    out = []
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1, (per, CHANNELS)).astype(np.float32)
    for c in range(n_chunks):
        k = np.arange(c * per, (c + 1) * per)
        ref = t0_ns + np.rint(k * NS / rate).astype(np.int64) + 37
        data = noise.copy()
        data[:, 0] = expected_value(k)
        out.append(Chunk("eeg", c * per, data, ref, ref, ref, np.full(per, 20_000, np.int64), method="triggers"))
    return out


class CollectorPush:
    """The collector's path: the ledger has recorded each chunk, ``LslTap.took`` publishes it (stamps through UTC:
    this host's own mapping both ways, so they differ from the truth by the two readings' jitter only)."""

    def __init__(self, info: StreamInfo):
        self.s = Ledger("bench", info.name, "")
        self.s.hello_env = {"utc_ns": time.time_ns(), "mono_ns": time.monotonic_ns()}
        self.s.streams = {"eeg": StreamInfo("eeg", info.type, info.nominal_srate, info.channel_count, "float32",
                                            info.channel_labels)}
        self.tap = LslTap()
        self.lsl_name = f"{info.name}/eeg"

    def open(self) -> None:
        self.tap.open()
        self.tap.took(self.s, SimpleNamespace(kind="meta", env={"meta": {}}))  # the session's outlets open

    def push(self, stream: str, chunk: Chunk) -> None:
        c = Chunk("eeg", chunk.seq, chunk.data, chunk.device_ns, chunk.host_ns, chunk.ref_ns, chunk.unc_ns,
                  method=chunk.method)
        self.s.recorded(c)
        self.tap.took(self.s, SimpleNamespace(kind="chunk", chunk=c, env={}))

    def close(self) -> None:
        self.tap.close()


def run(args) -> int:
    import_pylsl()  # one line when pylsl or liblsl is missing
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpu = args.cpu if args.cpu is not None else (allowed[0] if allowed else None)
    other = next((c for c in allowed if c != cpu), cpu)
    pin = _pin(cpu)
    name = "synchub-bench-outlet-" + uuid.uuid4().hex[:6]
    info = StreamInfo(name, "other", args.rate, CHANNELS, "float32", tuple(f"ch{i}" for i in range(CHANNELS)))
    pub = (CollectorPush(info) if args.collector else
           LslPublisher({name: info}, LslOutletSettings(outlet=True), "bench"))
    t0_ns = time.monotonic_ns()
    pool = _chunks(int(args.rate * 2 / args.chunk) or 1, args.chunk, args.rate, 0)  # 2 s of data, re-stamped
    pub.open()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    # the inlet must know how many samples are coming: push for --seconds, then tell it (a second message)
    n_max = int(args.seconds * 2_000_000)
    proc = ctx.Process(target=_inlet_proc, args=(other, getattr(pub, "lsl_name", name), n_max, args.rate, t0_ns, q), daemon=True)
    proc.start()
    first = q.get(timeout=60)
    if isinstance(first, dict):
        raise UserError(f"bench lsl-outlet: {first['error']}")
    time.sleep(0.3)
    sent, i = 0, 0
    per_pool = len(pool) * args.chunk
    w0, c0 = time.perf_counter(), time.process_time()
    end = w0 + args.seconds
    period = args.chunk / args.rate
    while time.perf_counter() < end:
        if not args.unpaced:
            wait = w0 + i * period - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        base = pool[i % len(pool)]
        shift = (i // len(pool)) * per_pool
        ref = base.ref_ns + t0_ns + int(round(shift * NS / args.rate))
        data = base.data
        if shift:
            data = data.copy()
            data[:, 0] = expected_value(np.arange(sent, sent + args.chunk))
        pub.push(name, Chunk(name, sent, data, ref, ref, ref, base.unc_ns, method=base.method))
        sent += args.chunk
        i += 1
    wall, cpu_s = time.perf_counter() - w0, time.process_time() - c0
    res = q.get(timeout=120)
    proc.join(10)
    pub.close()
    rate_wall, rate_cpu = sent / wall, sent / max(cpu_s, 1e-9)
    out = {"bench": "lsl-outlet", "publisher": "collector --lsl-outlet" if args.collector else "agent [lsl] outlet",
           "machine": machine(), "pinning": pin + f" (inlet process on CPU {other})",
           "channels": CHANNELS, "dtype": "float32", "chunk": args.chunk, "seconds": args.seconds,
           "rate_hz": args.rate, "paced": not args.unpaced, "publisher_core_fraction": round(cpu_s / wall, 4),
           "samples_pushed": sent, "samples_per_s_wall": round(rate_wall), "samples_per_cpu_s": round(rate_cpu),
           "publisher_cpu_s": round(cpu_s, 3), **res,
           "goal": {"samples_per_cpu_s>=100k": rate_cpu >= GOAL, "all_received": res.get("received") == sent,
                    "values_exact": res.get("bad_values") == 0},
           "note": "LslPublisher.push (the shipper's tap) with per-sample corrected stamps; a pylsl inlet in a second "
                   "process pulls and checks every sample; shared 2-core machine with other jobs running"}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"lsl-outlet: {sent} samples in {wall:.2f} s: {rate_wall:,.0f}/s wall, {rate_cpu:,.0f}/CPU-s of the "
          f"publisher; received {res.get('received')}, bad values {res.get('bad_values')}, max stamp error "
          f"{res.get('max_stamp_error_ns')} ns -> {args.json}")
    return 0
