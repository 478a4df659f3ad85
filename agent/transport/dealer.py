"""The sender's I/O edges: the ZeroMQ DEALER it opens per link, and the line it ends a run with."""

from __future__ import annotations

from pathlib import Path

import zmq


def new_dealer(ctx: zmq.Context, endpoint: str, heartbeat_s: float, liveness_s: float, backoff_max_s: float,
               curve=None) -> zmq.Socket:
    """A fresh DEALER connected to ``endpoint`` (ZMTP heartbeats, reconnect backoff, CURVE when given)."""
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 4000)
    s.setsockopt(zmq.RCVHWM, 4000)
    s.setsockopt(zmq.HEARTBEAT_IVL, int(heartbeat_s * 1000))
    s.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(liveness_s * 1000))
    s.setsockopt(zmq.HEARTBEAT_TTL, int(liveness_s * 1000))
    s.setsockopt(zmq.RECONNECT_IVL, 100)
    s.setsockopt(zmq.RECONNECT_IVL_MAX, int(backoff_max_s * 1000))
    if curve is not None:
        curve.apply_client(s)
    s.connect(endpoint)
    return s


def summary_line(session: str, spooled: int, spool_stats: dict, pending: int, spool_dir: Path | None,
                 last_error: str) -> str:
    """This session's samples spooled and delivered (acked: durable at the collector), those of earlier sessions
    delivered from the spool, what the full spool dropped (recorded as gaps), and what is left (kept in a disk spool
    for the next start, lost with a memory spool)."""
    where = f"kept in {spool_dir} for the next start" if spool_dir is not None else "LOST (memory spool)"
    delivered = spool_stats["delivered"]
    earlier = sum(n for sid, n in delivered.items() if sid != session)
    return (f"{spooled} samples spooled, {delivered.get(session, 0)} delivered"
            + (f" (+{earlier} of earlier sessions from the spool)" if earlier else "")
            + f", {spool_stats['dropped_samples']} dropped as spool_full gaps; "
            + (f"{pending} messages not delivered: {where}" if pending else "nothing left undelivered")
            + (f" ({last_error})" if pending and last_error else ""))
