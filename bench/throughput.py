"""``synchub bench throughput``: agent -> collector -> MCAP over real loopback ZeroMQ, with pylsl as the anchor.

8-channel float32 streams.  The sender (agent side) and the collector run in two processes pinned to the same CPU
core (``os.sched_setaffinity``) so the figure is "end to end on one core".  Phases:

1. **max rate**: the sender pushes chunks as fast as the credit window and its bounded memory spool allow for
   ``--seconds``; samples/s = samples durably in the MCAP (acked after flush+fsync) / time until the last ack.
2. **latency**: chunks paced at ``--latency-rate`` samples/s; per chunk, latency = collector receive time (written
   to the MCAP writer, ``recv_ns``) minus the time the chunk was made (``host_ns``), both the host's
   CLOCK_MONOTONIC; p50/p99 over all chunks, read back from the MCAP file.  Ack latency (durable) is reported too.
3. **pylsl**: the same chunks through a pylsl outlet/inlet pair (inlet in a second process on the same core), max
   rate and the same paced latency (LSL ``local_clock`` timestamps).

Everything goes to JSON (``--json``) with the machine description.  Numbers are measurements, not test assertions.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

from synchub.agent.collector.server import Collector
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.formats.mcap_read import read_session
from synchub.agent.transport.security import ServerKeys
from synchub.agent.transport.sender import Sender
from synchub.argtypes import positive

CHANNELS = 8


def add_arguments(p) -> None:
    p.add_argument("--json", metavar="OUT", help="write the results here (default: print only)")
    p.add_argument("--seconds", type=positive, default=5.0, help="duration of each phase (default %(default)s)")
    p.add_argument("--chunk", type=int, default=250, help="samples per chunk in the max-rate phase")
    p.add_argument("--streams", type=int, default=2, help="number of 8-channel float32 streams")
    p.add_argument("--latency-rate", type=positive, default=50_000.0, help="samples/s (all streams) in the latency phase")
    p.add_argument("--latency-chunk", type=int, default=50, help="samples per chunk in the latency phase")
    p.add_argument("--cpu", type=int, default=None, help="CPU core to pin to (default: the last allowed one)")
    p.add_argument("--no-lsl", action="store_true", help="skip the pylsl anchor")
    p.add_argument("--compression", default="zstd", choices=("zstd", "lz4", "none"))


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    info["libzmq"] = zmq.zmq_version()
    info["pyzmq"] = zmq.__version__
    return info


def _pin(cpu: int | None) -> str:
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return "not pinned (sched_setaffinity unavailable)"
    try:
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except OSError as exc:
        return f"not pinned ({exc})"


def _collector_proc(cpu, out_dir, compression, q, stop, curve_dir=None):
    _pin(cpu)
    curve = None
    if curve_dir:
        curve = ServerKeys.load(Path(curve_dir) / "collector.key_secret", Path(curve_dir) / "allowed")
    col = Collector("tcp://127.0.0.1:0", out_dir, insecure=curve is None, curve=curve, compression=compression,
                    name="bench")
    q.put(col.endpoint)
    ev = threading.Event()
    t = threading.Thread(target=lambda: (stop.wait(), ev.set()), daemon=True)
    t.start()
    col.run(ev)
    col.close()
    q.put(col.stats())


def _chunks(n_streams: int, chunk: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((chunk, CHANNELS)).astype(np.float32) for _ in range(n_streams)]


def run_synchub(seconds: float, chunk: int, n_streams: int, rate: float | None, cpu: int | None,
                compression: str = "zstd", curve=None, out_dir: str | None = None, curve_dir: str | None = None
                ) -> dict:
    """One phase through Sender -> Collector (separate process) -> MCAP; returns figures."""
    tmp = out_dir or tempfile.mkdtemp(prefix="synchub-bench-")
    ctx = mp.get_context("spawn")
    q, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_collector_proc, args=(cpu, tmp, compression, q, stop, curve_dir),
                       daemon=True)
    proc.start()
    endpoint = q.get(timeout=30)
    infos = [StreamInfo(f"s{i}", "imu", 1000.0, CHANNELS) for i in range(n_streams)]
    sender = Sender(endpoint, "bench", infos, curve=curve, spool_max_bytes=16 << 20, block_s=600.0)
    sender.connect(10)
    data = _chunks(n_streams, chunk)
    seq = [0] * n_streams
    dev = np.arange(chunk, dtype=np.int64) * 1000
    sent = 0
    t0 = time.perf_counter()
    t_end = t0 + seconds
    period = chunk * n_streams / rate if rate else 0.0
    next_t = t0
    while True:
        now = time.perf_counter()
        if now >= t_end:
            break
        if period:
            if now < next_t:
                time.sleep(next_t - now)
            next_t += period
        for i in range(n_streams):
            h = np.full(chunk, time.monotonic_ns(), dtype=np.int64)
            sender.send_chunk(Chunk(f"s{i}", seq[i], data[i], dev + seq[i] * 1000, h))
            seq[i] += chunk
            sent += chunk
    t_sent = time.perf_counter()
    ok = sender.flush(120)
    t_acked = time.perf_counter()
    st = sender.stats()
    sender.close(10)
    stop.set()
    col_stats = q.get(timeout=60)
    proc.join(30)
    files = sorted(Path(tmp).glob("*.mcap"))
    sess = read_session(files)
    recorded = sum(len(s["seq"]) for s in sess["streams"].values())
    lat = []
    for s in sess["streams"].values():
        # per chunk: receive time minus creation time of its samples (all samples of a chunk share host_ns)
        if len(s["seq"]):
            idx = np.arange(0, len(s["seq"]), chunk)
            lat.append(s["recv_ns"][idx] - s["host_ns"][idx])
    lat = np.concatenate(lat) if lat else np.zeros(0)
    exact_once = all(np.array_equal(s["seq"], np.arange(len(s["seq"]))) for s in sess["streams"].values())
    out = {
        "samples_sent": sent, "samples_recorded": int(recorded), "all_acked": ok, "exactly_once": bool(exact_once),
        "send_s": round(t_sent - t0, 3), "end_to_end_s": round(t_acked - t0, 3),
        "samples_per_s": round(recorded / (t_acked - t0), 1),
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)) / 1e6, 3),
                       "p99": round(float(np.percentile(lat, 99)) / 1e6, 3),
                       "max": round(float(lat.max()) / 1e6, 3)} if len(lat) else None,
        "ack_latency_ms": st.get("ack_latency_ms"),
        "mcap_bytes": sum(f.stat().st_size for f in files),
        "collector_bad": col_stats.get("bad", {}),
    }
    if out_dir is None:
        for f in files:
            f.unlink()
    return out


def _lsl_inlet_proc(cpu, name, seconds, q):
    _pin(cpu)
    import pylsl

    streams = pylsl.resolve_byprop("name", name, timeout=10)
    if not streams:
        q.put({"error": "pylsl could not resolve the outlet"})
        return
    inlet = pylsl.StreamInlet(streams[0], max_buflen=360, max_chunklen=0, recover=False)
    inlet.open_stream(timeout=10)
    q.put("ready")
    got = 0
    lat = []
    idle_since = None
    t_first = t_last = None
    give_up = time.perf_counter() + seconds + 30
    while True:
        # poll without blocking (pull_chunk with a timeout waits to fill max_samples, inflating latency)
        samples, stamps = inlet.pull_chunk(timeout=0.0, max_samples=50000)
        now = pylsl.local_clock()
        if samples:
            got += len(stamps)
            if t_first is None:
                t_first = time.perf_counter()
            t_last = time.perf_counter()
            lat.append(now - stamps[-1])
            idle_since = None
            continue
        time.sleep(0.0002)
        if got and idle_since is None:
            idle_since = time.perf_counter()
        if idle_since is not None and time.perf_counter() - idle_since > 1.0:
            break
        if not got and time.perf_counter() > give_up:
            break
    q.put({"received": got, "lat_s": lat, "t_first": t_first, "t_last": t_last})


def run_lsl(seconds: float, chunk: int, n_streams: int, rate: float | None, cpu: int | None) -> dict:
    import pylsl

    name = f"synchub-bench-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    info = pylsl.StreamInfo(name, "EEG", CHANNELS, 1000.0, pylsl.cf_float32, name)
    outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=360)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_lsl_inlet_proc, args=(cpu, name, seconds, q), daemon=True)
    proc.start()
    first = q.get(timeout=30)
    if isinstance(first, dict):
        proc.join(5)
        return first
    time.sleep(0.2)
    data = _chunks(n_streams, chunk)
    sent = 0
    t0 = time.perf_counter()
    t_end = t0 + seconds
    period = chunk * n_streams / rate if rate else 0.0
    next_t = t0
    while time.perf_counter() < t_end:
        if period:
            now = time.perf_counter()
            if now < next_t:
                time.sleep(next_t - now)
            next_t += period
        for i in range(n_streams):
            outlet.push_chunk(data[i], pylsl.local_clock())
            sent += chunk
    res = q.get(timeout=seconds + 60)
    proc.join(10)
    del outlet
    lat = np.array(res["lat_s"]) * 1e3
    span = (res["t_last"] - t0) if res["t_last"] else float("nan")
    return {"samples_sent": sent, "samples_received": res["received"],
            "samples_per_s": round(res["received"] / span, 1) if span == span and span > 0 else None,
            "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 3), "p99": round(float(np.percentile(lat, 99)), 3),
                           "max": round(float(lat.max()), 3)} if len(lat) else None,
            "note": "pylsl push_chunk/pull_chunk(timeout=0) polled every 0.2 ms, one outlet, inlet in a second process "
                    "on the same core; latency = local_clock at pull minus the chunk's push timestamp; LSL keeps "
                    "samples in memory only (no file, no acks)"}


def run(args) -> int:
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpu = args.cpu if args.cpu is not None else (allowed[-1] if allowed else None)
    pin = _pin(cpu)
    result = {"bench": "throughput", "machine": machine(), "pinning": pin + " (sender, collector and the pylsl inlet "
              "are separate processes sharing that core)", "channels": CHANNELS, "dtype": "float32",
              "streams": args.streams, "seconds": args.seconds, "chunk": args.chunk,
              "compression": args.compression}
    print(f"synchub throughput: {args.streams} x 8-ch float32, {args.seconds:g} s per phase, {pin}")
    r = run_synchub(args.seconds, args.chunk, args.streams, None, cpu, args.compression)
    result["synchub_max"] = r
    print(f"  synchub max rate: {r['samples_per_s']:,.0f} samples/s end to end (durable in MCAP), "
          f"{r['samples_recorded']}/{r['samples_sent']} recorded, exactly once: {r['exactly_once']}")
    r = run_synchub(args.seconds, args.latency_chunk, args.streams, args.latency_rate, cpu, args.compression)
    result["synchub_latency"] = {**r, "rate": args.latency_rate, "chunk": args.latency_chunk}
    print(f"  synchub latency at {args.latency_rate:,.0f} samples/s, chunks of {args.latency_chunk}: "
          f"p50 {r['latency_ms']['p50']} ms, p99 {r['latency_ms']['p99']} ms (ack p99 "
          f"{(r['ack_latency_ms'] or {}).get('p99')} ms)")
    if not args.no_lsl:
        try:
            lm = run_lsl(args.seconds, args.chunk, args.streams, None, cpu)
            ll = run_lsl(args.seconds, args.latency_chunk, args.streams, args.latency_rate, cpu)
            result["pylsl_max"], result["pylsl_latency"] = lm, ll
            print(f"  pylsl max rate: {lm.get('samples_per_s')} samples/s; latency p50/p99 "
                  f"{(ll.get('latency_ms') or {}).get('p50')}/{(ll.get('latency_ms') or {}).get('p99')} ms")
            if lm.get("samples_per_s"):
                result["ratio_vs_pylsl"] = round(result["synchub_max"]["samples_per_s"] / lm["samples_per_s"], 3)
        except Exception as exc:  # noqa: BLE001 - the anchor failing must not hide our own numbers
            result["pylsl_error"] = f"{type(exc).__name__}: {exc}"
            print(f"  pylsl anchor failed: {result['pylsl_error']}")
    result["goals"] = {"samples_per_s>=500k": result["synchub_max"]["samples_per_s"] >= 500_000,
                       "p99_ms<=5": (result["synchub_latency"]["latency_ms"] or {}).get("p99", 1e9) <= 5.0,
                       ">=1x_pylsl": result.get("ratio_vs_pylsl", 0) >= 1.0}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"  written to {args.json}")
    return 0
