"""Test-only agent stand-in for the fault tests: drives ``synchub.agent.transport.Sender`` directly.

    python tests/support/fault_sender.py --endpoint E [--endpoint E2] --spool DIR --status FILE [--rate HZ] [--seconds S]

Produces ``--streams`` 8-channel float32 streams at ``--rate`` samples/s each in chunks of ``--chunk``; every chunk
is handed to ``send_chunk`` (which spools it before returning).  Every 0.1 s it writes ``--status`` (JSON:
session, produced samples per stream, sender stats); at the end it closes the sender (waiting for acks) and writes
the final status with ``closed``.  SIGTERM ends production early and closes cleanly.
"""

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time

import numpy as np

from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.transport.security import ClientKeys
from synchub.agent.transport.sender import Sender


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", action="append", required=True)
    p.add_argument("--spool", default=None)
    p.add_argument("--status", required=True)
    p.add_argument("--name", default="fault-agent")
    p.add_argument("--streams", type=int, default=2)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--chunk", type=int, default=20)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--close-timeout", type=float, default=30.0)
    p.add_argument("--liveness", type=float, default=1.5)
    p.add_argument("--spool-max-mb", type=float, default=64.0)
    p.add_argument("--secret-key")
    p.add_argument("--server-key")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s agent %(levelname)s %(message)s", stream=sys.stderr)
    infos = [StreamInfo(f"s{i}", "imu", a.rate, 8) for i in range(a.streams)]
    curve = ClientKeys.load(a.secret_key, a.server_key) if a.secret_key else None
    sender = Sender(a.endpoint, a.name, infos, spool_dir=a.spool, curve=curve, liveness_s=a.liveness,
                    heartbeat_s=0.3, hello_timeout_s=1.0, backoff_max_s=1.0,
                    spool_max_bytes=int(a.spool_max_mb * (1 << 20)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    produced = dict.fromkeys((i.name for i in infos), 0)
    max_spool = [0]

    def status(**extra):
        st = sender.stats()
        max_spool[0] = max(max_spool[0], st["spool"]["disk_bytes"], st["spool"]["live_bytes"])
        tmp = a.status + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"session": sender.session, "produced": produced, "stats": st, "pid": os.getpid(),
                       "max_spool_bytes": max_spool[0], **extra}, f)
        os.replace(tmp, a.status)

    rng = np.random.default_rng(os.getpid())
    period = a.chunk / a.rate
    t0 = time.monotonic()
    next_t, last_status = t0, 0.0
    while not stop.is_set() and time.monotonic() - t0 < a.seconds:
        now = time.monotonic()
        if now < next_t:
            time.sleep(min(next_t - now, 0.05))
            continue
        next_t += period
        for name in produced:
            seq = produced[name]
            h = time.monotonic_ns() + np.arange(a.chunk, dtype=np.int64)
            data = rng.standard_normal((a.chunk, 8)).astype(np.float32)
            sender.send_chunk(Chunk(name, seq, data, (seq + np.arange(a.chunk)) * 1_000_000, h))
            produced[name] = seq + a.chunk
        if now - last_status > 0.1:
            status()
            last_status = now
    status(producing_done=True)
    ok = sender.close(a.close_timeout)
    status(closed=ok)
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
