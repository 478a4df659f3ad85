"""One worker process of ``synchub bench fleet``: several simulated agents, each a real ``NatsSender`` (its own
disk spool, TLS connection and user/password credentials) with four streams: one 200 Hz 8-channel stream and three
slower ones (10 Hz x 3, 1 Hz x 2, 0.2 Hz x 1).  Every ``tick_s`` each agent sends, per stream, the samples that fell
due since its last chunk, stamped with their nominal times on this machine's ``CLOCK_MONOTONIC`` (which the collector's
``recv_ns`` shares, so the recording says each sample's latency).

    python -m synchub.bench.fleet.agents SPEC.json RESULT.json

The spec names the cluster (``urls``, ``ca``, ``site``), the agents (``name``, ``user``, ``password``), ``seconds``,
``tick_s`` and the ``go`` file whose content is the common start time (monotonic ns).  The worker writes
``SPEC.json.ready`` once its agents are connected, then waits for ``go``.  The result has, per agent, its session, the
samples it sent per stream, whether everything was acked at the end, and the sender's counters.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.core.units import now_ns
from synchub.agent.transport.nats import bus
from synchub.agent.transport.nats.auth import client_tls
from synchub.agent.transport.nats.sender import NatsSender

STREAMS = (StreamInfo("emg", "imu", 200.0, 8), StreamInfo("tlm", "telemetry", 10.0, 3),
           StreamInfo("env", "telemetry", 1.0, 2), StreamInfo("bat", "telemetry", 0.2, 1))


def _wait_go(go: Path, timeout: float = 300.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(go.read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise SystemExit("fleet worker: no go within the timeout")


def main(spec_path: str, result_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    tls = client_tls(spec["ca"]) if spec.get("ca") else None
    senders: dict[str, NatsSender] = {}
    for a in spec["agents"]:
        senders[a["name"]] = NatsSender(spec["urls"], bus.Route(spec["site"], a["name"]), list(STREAMS),
                                        Path(spec["spool_root"]) / a["name"], tls=tls, ack_timeout_s=2.0,
                                        connect_options={"user": a["user"], "password": a["password"]})
    for s in senders.values():
        s.connect(120)
    Path(spec_path + ".ready").write_text("ready")
    t0 = _wait_go(Path(spec["go"]))
    rng = np.random.default_rng(len(senders))
    sent = {name: dict.fromkeys((st.name for st in STREAMS), 0) for name in senders}
    t_end = t0 + int(spec["seconds"] * 1e9)
    tick = int(spec.get("tick_s", 0.1) * 1e9)
    late = 0
    lateness: list[int] = []
    t_next = t0 + tick
    while True:
        now = now_ns()
        if now < t_next:
            time.sleep((t_next - now) / 1e9)
        elif now - t_next > tick:
            late += 1
        t = min(now_ns(), t_end)
        lateness.append(now_ns() - t_next)  # how late this tick's samples reach the senders (CPU starvation)
        for name, s in senders.items():
            for st in STREAMS:
                due = int((t - t0) * st.nominal_srate // 1e9) + 1  # sample k is due at t0 + k / rate
                n = due - sent[name][st.name]
                if n <= 0:
                    continue
                seq = sent[name][st.name]
                host = t0 + ((seq + np.arange(n)) * (1e9 / st.nominal_srate)).astype(np.int64)
                data = rng.standard_normal((n, st.channel_count)).astype(np.float32)
                s.send_chunk(Chunk(st.name, seq, data, host, host))
                sent[name][st.name] = due
        if t >= t_end:
            break
        t_next += tick
    closed: dict[str, bool] = {}

    def close(name: str, s: NatsSender) -> None:
        closed[name] = s.close(180)

    threads = [threading.Thread(target=close, args=item) for item in senders.items()]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out = {"agents": {name: {"session": s.session, "sent": sent[name], "all_acked": closed[name],
                             "stats": {k: v for k, v in s.stats().items() if k != "spool"}}
                      for name, s in senders.items()},
           "late_ticks": late, "tick_lateness_ms": [round(float(np.percentile(lateness, p)) / 1e6, 1) for p in (50, 99)],
           "cpu_s": ru.ru_utime + ru.ru_stime}
    Path(result_path).write_text(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
