"""``synchub bench nats-publish``: one agent's acked JetStream publishes through a local 3-node cluster (R3 file
storage, TLS, nkey credentials: ``bench/nats_local.py``), next to the ZeroMQ path on the same chunks.

Chunks are 8-channel float32 wire chunks (``wire.encode_chunk``, framed by ``natsbus.pack_frames``) of
``--samples`` samples each (default 1, 20 and 135: a telemetry-sized message, a 200 Hz stream chunked at 100 ms,
and ~6.5 KB).  Per size:

1. **NATS max rate**: ``AsyncPublisher`` with a ``--window`` of unacked messages, for ``--seconds``: acked
   messages/s, MB/s, CPU seconds per message of the three nats-server processes together and of the publisher,
   ack latency p50/p99 under that load.
2. **NATS paced**: ``--rate`` messages/s: ack latency p50/p99 (publish -> stored on a quorum of 2 of 3 nodes).
3. **ZeroMQ**: ``bench.throughput.run_synchub`` on the same chunks (Sender -> Collector -> MCAP, acked after
   fsync; not pinned), samples/s converted to messages/s.

All processes share this machine's cores; numbers are measurements, not test assertions.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from synchub.agent.core.stream import Chunk
from synchub.agent.transport import wire
from synchub.agent.transport.nats import bus as nb
from synchub.agent.transport.nats.auth import Credentials, client_tls, nkey_from_seed
from synchub.agent.transport.nats.publish import AsyncPublisher
from synchub.argtypes import positive
from synchub.bench.nats_local import LocalCluster
from synchub.bench.throughput import machine, run_synchub

CHANNELS = 8


def add_arguments(p) -> None:
    p.add_argument("--json", metavar="OUT", help="write the results here (default: print only)")
    p.add_argument("--seconds", type=positive, default=4.0, help="duration of each phase (default %(default)s)")
    p.add_argument("--samples", type=int, nargs="+", default=[1, 20, 135], help="samples per chunk")
    p.add_argument("--window", type=int, default=256, help="unacked messages in flight (default %(default)s)")
    p.add_argument("--rate", type=positive, default=200.0, help="messages/s in the paced phase (default %(default)s)")
    p.add_argument("--no-zmq", action="store_true", help="skip the ZeroMQ comparison")
    p.add_argument("--no-tls", action="store_true", help="plain-text NATS (like the ZeroMQ path's default)")


def _chunks(samples: int, count: int = 64) -> list:
    rng = np.random.default_rng(1)
    dev = np.arange(samples, dtype=np.int64) * 5_000_000
    return [Chunk("emg", 0, rng.standard_normal((samples, CHANNELS)).astype(np.float32), dev, dev)
            for _ in range(count)]


def _encode(session: str, i: int, chunk) -> bytes:
    """The agent's per-message work, as the ZeroMQ Sender does it: wire-encode the chunk (then frame it)."""
    chunk.seq = i * chunk.n
    return nb.pack_frames(wire.encode_chunk(session, i + 1, chunk))


def _tls(cluster):
    return client_tls(cluster.tls.ca) if cluster.tls else client_tls(None, insecure=True)


def _pct(values_ns, p) -> float | None:
    return round(float(np.percentile(np.asarray(values_ns), p)) / 1e6, 3) if len(values_ns) else None


async def _phase(cluster, creds, route, chunks, seconds: float, window: int, rate: float | None) -> dict:
    pub = AsyncPublisher(cluster.urls, tls=_tls(cluster), inbox_prefix=route.inbox_prefix,
                         connect_options=creds.connect_options(), window=window, ack_timeout_s=10.0,
                         name="bench")
    await pub.connect()
    subject = route.stream_subject("emg")
    session = f"b{time.monotonic_ns()}"
    cpu0, cpu_pub0 = cluster.cpu_s(), time.process_time()
    t0 = time.perf_counter()
    t_end = t0 + seconds
    i = 0
    while time.perf_counter() < t_end:
        if rate:
            wait = t0 + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
        chunk = chunks[i % len(chunks)]
        await pub.publish(subject, _encode(session, i, chunk), nb.msg_id(session, "emg", i * chunk.n), i)
        i += 1
    ok = await pub.flush(60)
    dt = time.perf_counter() - t0
    cpu, cpu_pub = cluster.cpu_s() - cpu0, time.process_time() - cpu_pub0
    st = pub.stats()
    lat = list(pub.latencies_ns)
    await pub.close()
    acked = st["acked"]
    return {"messages": i, "acked": acked, "failed": st["failed"], "all_acked": ok and acked == i,
            "msgs_per_s": round(acked / dt, 1), "mb_per_s": round(acked * len(_encode("x", 0, chunks[0])) / dt / 1e6, 2),
            "ack_latency_ms": {"p50": _pct(lat, 50), "p99": _pct(lat, 99), "max": _pct(lat, 100)},
            "nats_server_cpu_us_per_msg": round(cpu / max(acked, 1) * 1e6, 1),
            "publisher_cpu_us_per_msg": round(cpu_pub / max(acked, 1) * 1e6, 1),
            "nats_server_cpu_share": round(cpu / dt, 2)}


def run_nats(samples_list, seconds: float, window: int, rate: float, tls: bool = True) -> dict:
    import nats
    import nats.js.api


    seed, public = nkey_from_seed(os.urandom(32))
    creds = Credentials("nkey", "(bench)", seed=seed, public=public)
    route = nb.Route("bench", "agent-1")
    users = [creds.server_user(nb.agent_permissions(route)), {"user": "admin", "password": "bench-admin"}]
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="synchub-nats-") as tmp, LocalCluster(tmp, users=users, tls=tls) as cluster:
        async def make_stream():
            nc = await nats.connect(cluster.urls, tls=_tls(cluster), user="admin",
                                    password="bench-admin")
            js = nc.jetstream(timeout=10)
            await js.add_stream(nats.js.api.StreamConfig.from_response(
                nb.StreamPlan(retention="limits", max_bytes=4 << 30).api_config()))
            await nc.close()

        asyncio.run(make_stream())
        out["server"] = {"binary": cluster.binary, "nodes": cluster.size, "replicas": 3, "storage": "file",
                         "tls": tls}
        for samples in samples_list:
            chunks = _chunks(samples)
            res = {"payload_bytes": len(_encode(f"b{time.monotonic_ns()}", 0, chunks[0]))}
            res["max"] = asyncio.run(_phase(cluster, creds, route, chunks, seconds, window, None))
            res["paced"] = asyncio.run(_phase(cluster, creds, route, chunks, min(seconds, 3.0), window, rate))
            res["paced"]["rate"] = rate
            out[str(samples)] = res
    return out


def run(args) -> int:
    result = {"bench": "nats-publish", "machine": machine(), "window": args.window, "seconds": args.seconds,
              "channels": CHANNELS, "dtype": "float32"}
    print(f"synchub nats-publish: 8-ch float32 chunks of {args.samples} samples, window {args.window}, "
          f"{args.seconds:g} s per phase, 3-node R3 file-storage cluster {'without' if args.no_tls else 'with'} TLS on this machine")
    try:
        nats_res = run_nats(args.samples, args.seconds, args.window, args.rate, tls=not args.no_tls)
    except Exception as exc:  # noqa: BLE001 - report why the NATS side could not run, keep going
        nats_res = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"  NATS: {nats_res['error']}")
    result["nats"] = nats_res
    for samples in args.samples:
        r = nats_res.get(str(samples))
        if not r:
            continue
        m, pz = r["max"], r["paced"]
        print(f"  {samples:4d} samples ({r['payload_bytes']} B): NATS {m['msgs_per_s']:,.0f} msg/s "
              f"({m['mb_per_s']} MB/s), server CPU {m['nats_server_cpu_us_per_msg']} us/msg, publisher "
              f"{m['publisher_cpu_us_per_msg']} us/msg; ack p50/p99 {m['ack_latency_ms']['p50']}/"
              f"{m['ack_latency_ms']['p99']} ms loaded, {pz['ack_latency_ms']['p50']}/{pz['ack_latency_ms']['p99']} "
              f"ms at {args.rate:g} msg/s")
        if not args.no_zmq:
            z = run_synchub(args.seconds, samples, 1, None, None, "zstd")
            z["msgs_per_s"] = round(z["samples_per_s"] / samples, 1)
            r["zmq"] = z
            r["nats_over_zmq"] = round(m["msgs_per_s"] / z["msgs_per_s"], 3) if z["msgs_per_s"] else None
            print(f"        ZeroMQ -> collector -> MCAP: {z['msgs_per_s']:,.0f} msg/s; NATS/ZeroMQ "
                  f"{r['nats_over_zmq']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"  written to {args.json}")
    return 0
