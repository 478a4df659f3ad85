"""``synchub bench fleet --agents N --collectors M``: a site on NATS JetStream, all on this machine.

A 3-node JetStream cluster (``bench/nats_local.py``: TLS, R3 file storage, one user per agent allowed only its own
subjects, the site's partition mapping when M > 1), M real ``synchub collector --nats --partition K`` processes, and N
simulated agents (``bench/fleet/agents.py``: real ``NatsSender``s with disk spools, four streams each) spread over
``--workers`` processes.  During the run one NATS node and one collector are killed with SIGKILL and restarted.
When the agents have closed (everything acked by JetStream) and the stream is drained (every message acked by a
collector after its fsync), the collectors stop and the recordings are counted (``bench/fleet/count.py``): samples
lost and duplicated per stream, and each sample's latency from the agent to the collector's write, overall and
outside the fault windows.  CPU seconds per process kind say where the ceiling is.  JSON to ``--json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from synchub.agent.core.units import now_ns
from synchub.agent.transport.nats import bus
from synchub.agent.transport.nats.auth import client_tls
from synchub.argtypes import positive
from synchub.bench.nats_local import LocalCluster
from synchub.bench.throughput import machine
from synchub.errors import UserError

from .agents import STREAMS
from .count import count

SITE = "bench"
ADMIN = ("admin", "bench-admin-pw")


def add_arguments(p) -> None:
    p.add_argument("--agents", type=int, default=50, help="simulated agents (default %(default)s)")
    p.add_argument("--collectors", type=int, default=2, help="collector processes = partitions (default %(default)s)")
    p.add_argument("--seconds", type=positive, default=60.0, help="length of the data phase (default %(default)s)")
    p.add_argument("--workers", type=int, default=4, help="processes the agents are spread over (default %(default)s)")
    p.add_argument("--no-kill", action="store_true", help="no node kill and no collector kill")
    p.add_argument("--json", metavar="OUT", help="write the results here (default: print only)")
    p.add_argument("--keep", metavar="DIR", help="run in DIR and keep it (logs, recordings, spools)")


def _cpu_s(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Site:
    """The cluster, the collectors and the users of one benchmark run, in ``root``."""

    def __init__(self, root: Path, agents: int, collectors: int, ack_wait_s: float = 3.0):
        self.root, self.m, self.ack_wait_s = root, collectors, ack_wait_s
        self.agents = [{"name": f"ag{i:03d}", "user": f"ag{i:03d}", "password": secrets.token_hex(8)}
                       for i in range(agents)]
        users = [{"user": a["user"], "password": a["password"],
                  "permissions": bus.agent_permissions(bus.Route(SITE, a["name"]))} for a in self.agents]
        self.col_pw = secrets.token_hex(8)
        users.append({"user": "collector", "password": self.col_pw,
                      "permissions": bus.collector_permissions(inbox_prefix="_INBOX.collector")})
        users.append({"user": ADMIN[0], "password": ADMIN[1]})
        self.cluster = LocalCluster(root / "cluster", users=users, partitions=collectors if collectors > 1 else 0)
        self.col_key = root / "collector.toml"
        self.col_key.write_text(f'user = "collector"\npassword = "{self.col_pw}"\n')
        self.outs = [root / f"out{k}" for k in range(collectors)]
        self.cols: list[subprocess.Popen] = []
        self.col_cpu = [0.0] * collectors

    def start(self) -> None:
        self.cluster.start()
        subjects = (f"{bus.DEFAULT_PREFIX}{bus.PARTITION_SUFFIX}.>",) if self.m > 1 else (f"{bus.DEFAULT_PREFIX}.>",)
        asyncio.run(self._admin(lambda js, api: js.add_stream(api.StreamConfig.from_response(
            bus.StreamPlan(subjects=subjects, max_bytes=4 << 30).api_config()))))
        self.cols = [self._collector(k) for k in range(self.m)]

    async def _admin(self, action):
        import nats
        import nats.js.api

        async def quiet(exc):  # a killed node refuses connections: expected here, no traceback in the log
            pass

        nc = await nats.connect(self.cluster.urls, tls=client_tls(self.cluster.tls.ca), user=ADMIN[0],
                                password=ADMIN[1], error_cb=quiet)
        try:
            return await action(nc.jetstream(timeout=10), nats.js.api)
        finally:
            await nc.close()

    def backlog(self) -> int:
        """Messages in the stream not yet acked by a collector (workqueue retention)."""
        async def info(js, api):
            return (await js.stream_info(bus.DEFAULT_STREAM)).state.messages

        return asyncio.run(self._admin(info))

    def leader(self) -> str | None:
        """The stream's leader node, or None while there is none (an election) or the cluster does not answer."""
        async def info(js, api):
            return (await js.stream_info(bus.DEFAULT_STREAM)).cluster.leader

        try:
            return asyncio.run(asyncio.wait_for(self._admin(info), 3.0))
        except Exception:  # noqa: BLE001 - during an election every kind of timeout and "no responders" comes
            return None

    def _collector(self, k: int) -> subprocess.Popen:
        log = open(self.root / f"collector{k}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "synchub.cli", "collector", "--nats", ",".join(self.cluster.urls),
                 "--nats-credentials", str(self.col_key), "--nats-ca", self.cluster.tls.ca, "--out", str(self.outs[k]),
                 "--partition", str(k if self.m > 1 else -1), "--ack-wait-s", str(self.ack_wait_s)],
                stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()

    def kill_collector(self, k: int) -> None:
        self.col_cpu[k] += _cpu_s(self.cols[k].pid)
        self.cols[k].send_signal(signal.SIGKILL)
        self.cols[k].wait(10)

    def restart_collector(self, k: int) -> None:
        self.cols[k] = self._collector(k)

    def stop(self) -> list[int]:
        codes = []
        for k, c in enumerate(self.cols):
            self.col_cpu[k] += _cpu_s(c.pid)
            c.send_signal(signal.SIGTERM)
        for c in self.cols:
            try:
                codes.append(c.wait(60))
            except subprocess.TimeoutExpired:
                c.kill()
                codes.append(-9)
        self.cluster.stop()
        return codes


def _workers(site: Site, n: int, seconds: float) -> tuple[list[subprocess.Popen], list[Path], Path]:
    go = site.root / "go"
    procs, results = [], []
    for w in range(n):
        spec = site.root / f"worker{w}.json"
        spec.write_text(json.dumps({"urls": site.cluster.urls, "ca": site.cluster.tls.ca, "site": SITE,
                                    "agents": site.agents[w::n], "seconds": seconds, "tick_s": 0.1, "go": str(go),
                                    "spool_root": str(site.root / "spools")}))
        results.append(site.root / f"worker{w}.result.json")
        log = open(site.root / f"worker{w}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            procs.append(subprocess.Popen([sys.executable, "-m", "synchub.bench.fleet.agents", str(spec),
                                           str(results[-1])], stdout=log, stderr=subprocess.STDOUT))
        finally:
            log.close()
    return procs, results, go


def _wait(cond, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"fleet bench: {what} not within {timeout:g} s")
        time.sleep(0.1)
    return time.monotonic() - t0


def run_fleet(agents: int, collectors: int, seconds: float, workers: int, kill: bool = True,
              root: Path | None = None) -> dict[str, Any]:
    workers = max(1, min(workers, agents))
    with tempfile.TemporaryDirectory(prefix="synchub-fleet-") as tmp:
        if root is not None:
            Path(root).mkdir(parents=True, exist_ok=True)
        site = Site(Path(root or tmp), agents, collectors)
        site.start()
        cpu0 = site.cluster.cpu_s()
        try:
            procs, results, go = _workers(site, workers, seconds)
            specs = [Path(str(r).replace(".result.json", ".json.ready")) for r in results]
            t_ready = _wait(lambda: all(p.exists() for p in specs) or any(p.poll() is not None for p in procs),
                            120 + agents, "agents connected")
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"fleet bench: a worker died at start: {(site.root / 'worker0.log').read_text()[-800:]}")
            t0 = now_ns() + 300_000_000
            go.write_text(str(t0))
            windows, events = [], []
            if kill:
                time.sleep(max(0.0, (t0 - now_ns()) / 1e9 + 0.25 * seconds))
                names = [nd.name for nd in site.cluster.nodes]
                victim = names.index(site.leader() or names[0])  # the stream's leader: the worst case
                k0 = now_ns()
                site.cluster.kill(victim)
                time.sleep(3.0)
                site.cluster.restart(victim, wait=False)
                up = _wait(lambda: site.leader() is not None, 60, "a stream leader after the node kill")
                site.cluster.wait_ready(nodes=[victim])
                windows.append((k0 - 500_000_000, now_ns() + 3_000_000_000))
                events.append({"what": f"SIGKILL nats node {names[victim]} (the stream leader)",
                               "at_s": round((k0 - t0) / 1e9, 2), "down_s": 3.0,
                               "stream_leader_back_after_kill_s": round(3.0 + up, 1),
                               "window_s": round((windows[-1][1] - windows[-1][0]) / 1e9, 1)})
                time.sleep(max(1.0, (t0 - now_ns()) / 1e9 + 0.6 * seconds))
                k1 = now_ns()
                site.kill_collector(0)
                time.sleep(2.0)
                site.restart_collector(0)
                windows.append((k1 - 500_000_000, now_ns() + int((site.ack_wait_s + 3.0) * 1e9)))
                events.append({"what": "SIGKILL collector 0", "at_s": round((k1 - t0) / 1e9, 2), "down_s": 2.0,
                               "window_s": round((windows[-1][1] - windows[-1][0]) / 1e9, 1)})
            for p in procs:
                p.wait(seconds + 600)
            t_closed = now_ns()
            try:
                drain = _wait(lambda: site.backlog() == 0, 60 + agents, "stream drained by the collectors")
                left = 0
            except RuntimeError:
                drain, left = -1.0, site.backlog()
            time.sleep(1.0)  # the collectors' last fsync and acks
        finally:
            nats_cpu = site.cluster.cpu_s() - cpu0
            codes = site.stop()
        worker_out = [json.loads(r.read_text()) for r in results]
        per_agent = {k: v for w in worker_out for k, v in w["agents"].items()}
        counted = count(per_agent, site.outs, windows)
    span = (t_closed - t0) / 1e9
    rate = counted["samples_recorded"] / seconds
    cpu = {"nats_servers_s": round(nats_cpu, 1), "collectors_s": round(sum(site.col_cpu), 1),
           "agent_workers_s": round(sum(w["cpu_s"] for w in worker_out), 1)}
    busiest = max(cpu, key=cpu.get)
    cpu_per_s = sum(cpu.values()) / max(span, 1e-9)
    return {"agents": agents, "collectors": collectors, "workers": workers, "seconds": seconds,
            "streams_per_agent": [f"{s.name} {s.nominal_srate:g} Hz x {s.channel_count}" for s in STREAMS],
            "connect_s": round(t_ready, 1), "events": events, "drain_after_close_s": round(drain, 1), "backlog_left": left,
            "collector_exit_codes": codes, "all_acked": all(a["all_acked"] for a in per_agent.values()),
            "samples_per_s": round(rate, 1), "messages_published": sum(a["stats"]["published"]
                                                                        for a in per_agent.values()),
            "publish_failed": sum(a["stats"]["publish_failed"] for a in per_agent.values()),
            "resent": sum(a["stats"]["resent"] for a in per_agent.values()),
            "late_ticks": sum(w["late_ticks"] for w in worker_out),
            "tick_lateness_ms_p50_p99_worst_worker": max((w["tick_lateness_ms"] for w in worker_out), key=lambda x: x[1]),
            **counted,
            "cpu": {**cpu, "cores_busy": round(cpu_per_s, 2), "cores": os.cpu_count(), "busiest": busiest,
                    "ceiling_samples_per_s_estimate": round(rate * (os.cpu_count() or 1) / max(cpu_per_s, 1e-9))}}


def run(args) -> int:
    if args.agents < 1 or args.collectors < 1 or args.seconds <= 0:
        raise UserError("--agents and --collectors must be >= 1, --seconds > 0")
    print(f"synchub bench fleet: {args.agents} agents x {len(STREAMS)} streams, {args.collectors} collectors, "
          f"3-node cluster, {args.seconds:g} s{'' if args.no_kill else ', one node and one collector SIGKILLed'}")
    res = {"bench": "fleet", "machine": machine(), "load_before": os.getloadavg(),
           **run_fleet(args.agents, args.collectors, args.seconds, args.workers, kill=not args.no_kill,
                     root=Path(args.keep) if args.keep else None)}
    lat = res["latency_ms"]
    print(f"  {res['samples_per_s']:,.0f} samples/s recorded; lost {res['lost']}, duplicated {res['duplicated']}; "
          f"latency p50/p99 {lat['outside_faults']['p50']}/{lat['outside_faults']['p99']} ms outside faults "
          f"({lat['all']['p99']} ms p99 overall); CPU {res['cpu']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
        print(f"  written to {args.json}")
    return 0
