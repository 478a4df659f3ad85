"""The agent's ``Sender`` from its ``[agent]`` config table: where the spool lives, which CURVE keys to use."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from synchub.agent.core.stream import StreamInfo, safe_name

from .security import ClientKeys, SecurityError
from .sender import Sender
from .session import TransportError

log = logging.getLogger(__name__)


def state_path(env, systemd_sub: str, xdg_sub: str) -> Path:
    """Where an agent keeps state that must survive a restart: ``$STATE_DIRECTORY/<systemd_sub>`` (systemd's
    ``StateDirectory=``, its first entry), else ``$XDG_STATE_HOME`` (default ``~/.local/state``)
    ``/synchub/<xdg_sub>``."""
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0]) / systemd_sub
    base = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "synchub" / xdg_sub


def default_spool_dir(agent_name: str, env) -> Path:
    """``$STATE_DIRECTORY/spool`` (systemd's ``StateDirectory=``), else ``$XDG_STATE_HOME`` (default
    ``~/.local/state``) ``/synchub/spool/<agent name>``: one spool per agent name, never in memory."""
    return state_path(env, "spool", f"spool/{safe_name(agent_name)}")


def sender_from_settings(agent, streams: list[StreamInfo], *, insecure: bool = False, session: str | None = None,
                         env: dict | None = None) -> Sender:
    """A ``Sender`` from the ``[agent]`` config table (``synchub.agent.config.AgentSettings``).

    Spool: ``agent.spool_dir``, else ``default_spool_dir`` (always on disk: it survives a restart).
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
    log.info("transport: spool in %s", spool_dir)
    return Sender(list(agent.collector), agent.name, streams, spool_dir=spool_dir, curve=curve, session=session,
                  spool_max_bytes=int(agent.spool_max_mb * (1 << 20)))


def spool_dir_of(agent, env) -> str:
    """``[agent] spool_dir``, else the durable default (``default_spool_dir``: systemd's state directory, the
    user's XDG state directory)."""
    return agent.spool_dir or str(default_spool_dir(agent.name, env))
