"""``synchub bench transport``: what reliability and security cost, and what faults lose.

* **CURVE on vs off**: max-rate throughput agent -> collector -> MCAP (same method as ``bench throughput``), plain
  text and with CURVE (Ironhouse, allow-listed agent key).  Goal: CURVE costs <= 30 %.
* **spool replay**: ``--outage-s`` seconds of ``--streams`` x ``--rate`` Hz 8-channel float32 data are spooled to
  disk while no collector runs (generated at once), then a collector starts and the spool drains; replay rate in
  samples/s and as a multiple of real time (goal >= 5x).
* **faults** (real processes on loopback): (1) the collector is killed with SIGKILL mid-recording and stays down for
  ``--outage-s`` seconds (default 60) while the agent keeps producing in real time, then restarts; (2) the agent is
  killed with SIGKILL while unacked data sits in its spool, and restarted.  Samples lost = samples the agent handed
  to its sender minus distinct samples in the MCAP files; duplicates = samples in the files more than once.
  Goal: 0 and 0.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import tempfile
import time
from pathlib import Path

import numpy as np

from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.formats.mcap_read import read_session
from synchub.agent.transport.security import ClientKeys
from synchub.agent.transport.sender import Sender
from synchub.argtypes import nonnegative, positive

from .harness import collector_process, free_port, make_keys
from .throughput import CHANNELS, machine, run_synchub


def add_arguments(p) -> None:
    p.add_argument("--json", metavar="OUT", help="write the results here")
    p.add_argument("--seconds", type=positive, default=5.0, help="duration of each throughput run")
    p.add_argument("--chunk", type=int, default=250, help="samples per chunk in the throughput runs")
    p.add_argument("--streams", type=int, default=2, help="8-channel float32 streams")
    p.add_argument("--rate", type=positive, default=1000.0, help="per-stream rate (Hz) for spool and fault runs")
    p.add_argument("--outage-s", type=nonnegative, default=60.0, help="collector outage in the spool and fault runs")
    p.add_argument("--skip", nargs="*", default=[], choices=("curve", "spool", "faults"), help="parts to skip")


def _agent_proc(endpoint, spool, rate, streams, chunk, seconds, counts, q, stop):
    """An agent stand-in: produces in real time; counts[i] = samples of stream i handed to (spooled by) the sender."""
    infos = [StreamInfo(f"s{i}", "imu", rate, CHANNELS) for i in range(streams)]
    sender = Sender(endpoint, "bench-agent", infos, spool_dir=spool, liveness_s=1.5, heartbeat_s=0.3,
                    hello_timeout_s=1.0, backoff_max_s=1.0, spool_max_bytes=1 << 30)
    q.put(sender.session)
    rng = np.random.default_rng(os.getpid())
    period, t0 = chunk / rate, time.monotonic()
    next_t = t0
    while not stop.is_set() and time.monotonic() - t0 < seconds:
        now = time.monotonic()
        if now < next_t:
            time.sleep(min(next_t - now, 0.05))
            continue
        next_t += period
        for i in range(streams):
            seq = counts[i]
            h = np.full(chunk, time.monotonic_ns(), np.int64)
            sender.send_chunk(Chunk(f"s{i}", seq, rng.standard_normal((chunk, CHANNELS)).astype(np.float32),
                                    (seq + np.arange(chunk)) * 1_000_000, h))
            counts[i] = seq + chunk
    q.put(("closed", sender.close(120), sender.stats()))


def _loss(out: Path, session: str, produced: list[int]) -> dict:
    files = sorted(out.glob(f"*-{session}-p*.mcap"))
    sess = read_session(files) if files else {"streams": {}}
    lost = dup = 0
    for i, n in enumerate(produced):
        seq = sess["streams"].get(f"s{i}", {"seq": np.zeros(0, np.int64)})["seq"]
        uniq = np.unique(seq)
        dup += len(seq) - len(uniq)
        lost += n - int(np.sum(uniq < n))
    return {"produced": int(sum(produced)), "lost": int(lost), "duplicates": int(dup), "files": len(files)}


def run_spool_replay(tmp: Path, rate: float, streams: int, outage_s: float) -> dict:
    port = free_port()
    infos = [StreamInfo(f"s{i}", "imu", rate, CHANNELS) for i in range(streams)]
    chunk = max(1, int(rate * 0.02))  # 20 ms chunks, as the agent makes them
    sender = Sender(f"tcp://127.0.0.1:{port}", "bench-agent", infos, spool_dir=tmp / "spool",
                    spool_max_bytes=2 << 30, hello_timeout_s=0.5, backoff_max_s=0.5)
    n_chunks = int(outage_s * rate / chunk)
    data = np.random.default_rng(0).standard_normal((chunk, CHANNELS)).astype(np.float32)
    for k in range(n_chunks):
        for i in range(streams):
            seq = k * chunk
            sender.send_chunk(Chunk(f"s{i}", seq, data, (seq + np.arange(chunk)) * 1_000_000, np.arange(chunk)))
    spooled = sender.stats()["spool"]
    col = collector_process(tmp / "out", port)
    t0 = time.perf_counter()
    ok = sender.flush(600)
    dt = time.perf_counter() - t0
    sender.close(30)
    col.send_signal(signal.SIGTERM)
    col.wait(60)
    samples = n_chunks * chunk * streams
    return {"outage_s": outage_s, "samples": samples, "spool_bytes": spooled["disk_bytes"], "drained": ok,
            "drain_s": round(dt, 3), "replay_samples_per_s": round(samples / dt, 1),
            "x_real_time": round(outage_s / dt, 2),
            "note": "drain time includes reconnect (backoff <= 0.5 s) and the collector's fsync-before-ack"}


def run_collector_fault(tmp: Path, rate: float, streams: int, outage_s: float) -> dict:
    ctx = mp.get_context("spawn")
    port = free_port()
    out = tmp / "out"
    col = collector_process(out, port)
    counts, q, stop = ctx.Array("q", streams), ctx.Queue(), ctx.Event()
    lead = 2.0
    proc = ctx.Process(target=_agent_proc, args=(f"tcp://127.0.0.1:{port}", str(tmp / "spool"), rate, streams, 20,
                                                 lead + outage_s + 3.0, counts, q, stop), daemon=True)
    proc.start()
    session = q.get(timeout=60)
    time.sleep(lead)
    col.send_signal(signal.SIGKILL)
    col.wait(10)
    time.sleep(outage_s)
    t_restart = time.perf_counter()
    col = collector_process(out, port)
    _, ok, stats = q.get(timeout=outage_s + 300)
    drain = time.perf_counter() - t_restart
    proc.join(30)
    col.send_signal(signal.SIGTERM)
    col.wait(60)
    return {"fault": "collector SIGKILL mid-recording, down for outage_s, restarted", "outage_s": outage_s,
            "closed_clean": ok, "reconnects": stats["reconnects"],
            "restart_to_all_acked_s": round(drain, 2), **_loss(out, session, list(counts))}


def run_agent_fault(tmp: Path, rate: float, streams: int) -> dict:
    ctx = mp.get_context("spawn")
    port = free_port()
    out, spool = tmp / "out", str(tmp / "spool")
    col = collector_process(out, port)
    counts, q, stop = ctx.Array("q", streams), ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_agent_proc, args=(f"tcp://127.0.0.1:{port}", spool, rate, streams, 20, 60.0, counts,
                                                 q, stop), daemon=True)
    proc.start()
    s1 = q.get(timeout=60)
    time.sleep(2.0)
    os.kill(col.pid, signal.SIGSTOP)  # nothing gets acked: the spool holds unacked data
    time.sleep(1.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    os.kill(col.pid, signal.SIGCONT)
    produced1 = list(counts)
    counts2, q2, stop2 = ctx.Array("q", streams), ctx.Queue(), ctx.Event()
    proc2 = ctx.Process(target=_agent_proc, args=(f"tcp://127.0.0.1:{port}", spool, rate, streams, 20, 1.0, counts2,
                                                  q2, stop2), daemon=True)
    proc2.start()
    s2 = q2.get(timeout=60)
    _, ok, _ = q2.get(timeout=300)
    proc2.join(30)
    col.send_signal(signal.SIGTERM)
    col.wait(60)
    first = _loss(out, s1, produced1)
    second = _loss(out, s2, list(counts2))
    return {"fault": "agent SIGKILL with unacked data in its spool, restarted on the same spool",
            "closed_clean": ok, "killed_session": first, "restarted_session": second,
            "lost": first["lost"] + second["lost"], "duplicates": first["duplicates"] + second["duplicates"]}


def run(args) -> int:
    result: dict = {"bench": "transport", "machine": machine(), "streams": args.streams, "rate_hz": args.rate}
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpu = allowed[-1] if allowed else None
    with tempfile.TemporaryDirectory(prefix="synchub-bench-transport-") as d:
        tmp = Path(d)
        if "curve" not in args.skip:
            keys = make_keys(tmp / "keys")
            off = run_synchub(args.seconds, args.chunk, args.streams, None, cpu)
            on = run_synchub(args.seconds, args.chunk, args.streams, None, cpu,
                             curve=ClientKeys.load(keys / "agent.key_secret", keys / "collector.key"),
                             curve_dir=str(keys))
            cost = 1.0 - on["samples_per_s"] / off["samples_per_s"]
            result["curve"] = {"off": off, "on": on, "cost_fraction": round(cost, 3), "goal_cost<=0.30": cost <= 0.3}
            print(f"CURVE off {off['samples_per_s']:,.0f} samples/s, on {on['samples_per_s']:,.0f} samples/s: "
                  f"cost {cost:.1%}")
        if "spool" not in args.skip:
            r = run_spool_replay(tmp / "spool-run", args.rate, args.streams, args.outage_s)
            result["spool_replay"] = r
            print(f"spool replay: {r['samples']:,} samples ({r['outage_s']:g} s of data) drained in {r['drain_s']} s"
                  f" = {r['replay_samples_per_s']:,.0f} samples/s = {r['x_real_time']}x real time")
        if "faults" not in args.skip:
            r = run_collector_fault(tmp / "fault-col", args.rate, args.streams, args.outage_s)
            result["fault_collector_killed"] = r
            print(f"collector killed, down {args.outage_s:g} s: lost {r['lost']}, duplicates {r['duplicates']} "
                  f"of {r['produced']:,} samples ({r['files']} files)")
            r = run_agent_fault(tmp / "fault-agent", args.rate, args.streams)
            result["fault_agent_killed"] = r
            print(f"agent killed and restarted: lost {r['lost']}, duplicates {r['duplicates']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"written to {args.json}")
    return 0
