"""The sender's I/O edges: the ZeroMQ DEALER it opens per link (watching its handshakes, so that a collector that
rejects this agent's CURVE key reads as "refused: key not allowed", not as a collector that is down), and the line
it ends a run with."""

from __future__ import annotations

from pathlib import Path

import zmq
from zmq.utils.monitor import recv_monitor_message

KEY_REFUSED = ("refused: key not allowed (the collector rejected this agent's CURVE key in the handshake; add the "
               "agent's public key to the collector's --allow-dir, or check collector_public_key)")


class Dealer(zmq.Socket):
    """A DEALER with a monitor on its handshakes (ZMTP reports an authentication failure to the client)."""

    monitor_sock = None

    def watch_handshakes(self) -> None:
        self.monitor_sock = self.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED)

    def refusal(self) -> str:
        """Drain the monitor: ``KEY_REFUSED`` when a handshake was rejected for authentication since the last call."""
        out = ""
        while self.monitor_sock is not None:
            try:
                ev = recv_monitor_message(self.monitor_sock, zmq.NOBLOCK)
            except zmq.Again:
                break
            out = KEY_REFUSED if ev["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH else ""
        return out

    def close(self, linger=None) -> None:
        if self.monitor_sock is not None:
            try:
                self.disable_monitor()
            except zmq.ZMQError:
                pass
            self.monitor_sock.close(0)
            self.monitor_sock = None
        super().close(linger)


def new_dealer(ctx: zmq.Context, endpoint: str, heartbeat_s: float, liveness_s: float, backoff_max_s: float,
               curve=None) -> Dealer:
    """A fresh DEALER connected to ``endpoint`` (ZMTP heartbeats, reconnect backoff, CURVE when given)."""
    s = ctx.socket(zmq.DEALER, socket_class=Dealer)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 4000)
    s.setsockopt(zmq.RCVHWM, 4000)
    s.setsockopt(zmq.HEARTBEAT_IVL, int(heartbeat_s * 1000))
    s.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(liveness_s * 1000))
    s.setsockopt(zmq.HEARTBEAT_TTL, int(liveness_s * 1000))
    s.setsockopt(zmq.RECONNECT_IVL, 100)
    s.setsockopt(zmq.RECONNECT_IVL_MAX, int(backoff_max_s * 1000))
    try:
        if curve is not None:
            curve.apply_client(s)
            s.watch_handshakes()
        s.connect(endpoint)
    except zmq.ZMQError:  # the sender retries with backoff: no socket (and monitor) left behind per try
        s.close(0)
        raise
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
