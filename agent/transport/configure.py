"""The agent's ``Sender`` from its ``[agent]`` config table: where the spool lives, which CURVE keys to use."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from synchub.agent.core.stream import StreamInfo

from .security import ClientKeys, SecurityError
from .sender import Sender
from .session import TransportError

log = logging.getLogger(__name__)


def sender_from_settings(agent, streams: list[StreamInfo], *, insecure: bool = False, session: str | None = None,
                         env: dict | None = None) -> Sender:
    """A ``Sender`` from the ``[agent]`` config table (``synchub.agent.config.AgentSettings``).

    Spool: ``agent.spool_dir``, else ``$STATE_DIRECTORY/spool`` (systemd's ``StateDirectory=``), else in memory.
    CURVE: ``agent.curve_secret_key`` + ``agent.collector_public_key``; without them ``insecure`` must be set
    (plain text, logged loudly), otherwise ``TransportError`` says what to configure.
    """
    env = os.environ if env is None else env
    spool_dir = spool_dir_of(agent, env)
    curve = None
    if agent.curve_secret_key or agent.collector_public_key:
        if not (agent.curve_secret_key and agent.collector_public_key):
            raise TransportError("CURVE needs both agent.curve_secret_key and agent.collector_public_key")
        try:
            curve = ClientKeys.load(agent.curve_secret_key, agent.collector_public_key)
        except SecurityError as exc:
            raise TransportError(str(exc)) from None
    elif not insecure:
        raise TransportError("no CURVE keys configured (agent.curve_secret_key, agent.collector_public_key); "
                             "make them with `synchub keys new`, or pass --insecure for plain text")
    else:
        log.warning("transport: INSECURE: plain-text ZeroMQ to %s (--insecure)", ", ".join(agent.collector))
    if spool_dir is None:
        log.info("transport: no spool_dir and no $STATE_DIRECTORY: unacked data is kept in memory only")
    return Sender(list(agent.collector), agent.name, streams, spool_dir=spool_dir, curve=curve, session=session,
                  spool_max_bytes=int(agent.spool_max_mb * (1 << 20)))


def spool_dir_of(agent, env) -> str | None:
    return agent.spool_dir or (str(Path(env["STATE_DIRECTORY"].split(":")[0]) / "spool")
                               if env.get("STATE_DIRECTORY") else None)
