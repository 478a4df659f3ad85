"""The collector's sockets: the ROUTER (options, CURVE with the self-test proving a stranger is refused, bind) and
the lossy live-view PUB."""

from __future__ import annotations

import logging

import zmq

from synchub.agent.transport import wire
from synchub.agent.transport.security import ZapLog, self_test

log = logging.getLogger("synchub.agent.collector")


def bind_router(ctx: zmq.Context, bind: str, curve=None) -> tuple[zmq.Socket, str]:
    """The bound ROUTER and its endpoint; with ``curve`` (``ServerKeys``, authenticator started) the self-test runs
    (its refused stranger is not reported as an auth failure) and ``SecurityError`` stops the start."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 20000)
    sock.setsockopt(zmq.SNDHWM, 20000)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, 4 * wire.MAX_FRAME)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
    sock.setsockopt(zmq.HEARTBEAT_TTL, 5000)
    if curve is not None:
        curve.apply_server(sock)
    else:
        log.warning("collector: INSECURE: plain-text ZeroMQ, any client may send data (--insecure)")
    try:
        sock.bind(bind)
    except zmq.ZMQError:
        sock.close(0)
        raise
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    if curve is None:
        return sock, endpoint
    zap = getattr(curve.auth, "log", None)
    quiet = zap if isinstance(zap, ZapLog) else None
    try:
        if quiet is not None:
            quiet.quiet = True
        self_test(sock, endpoint, curve.public)
    except Exception:
        sock.close(0)
        curve.stop()
        raise
    finally:
        if quiet is not None:
            quiet.quiet = False
    log.info("collector: CURVE on; self-test passed (an unknown key is refused); %d allowed keys in %s",
             len(curve.allowed_keys()), curve.allow_dir)
    return sock, endpoint


def curve_user(frame, curve) -> str:
    """The CURVE key (ZAP user id) a message came with; "" in plain text."""
    if curve is None:
        return ""
    try:
        return frame.get("User-Id") or ""
    except zmq.ZMQError:
        return ""


def bind_live(ctx: zmq.Context, live: str, curve=None) -> tuple[zmq.Socket, str]:
    """The live-view PUB socket (lossy: a slow viewer misses updates, never slows recording) and its endpoint;
    CURVE like the data path: only keys in the allow-list may watch."""
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 200)
    if curve is not None:
        curve.apply_server(sock)
    sock.bind(live)
    return sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)
