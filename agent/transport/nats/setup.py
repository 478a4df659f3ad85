"""The agent's ``NatsSender`` from its ``[agent]`` config table (``transport = "nats"``)."""

from __future__ import annotations

import logging
import os

from synchub.agent.core.stream import StreamInfo

from ..configure import spool_dir_of
from ..session import TransportError
from .auth import CredentialError, client_tls, load_credentials
from .bus import BusError, Route
from .sender import NatsSender

log = logging.getLogger(__name__)


def nats_sender_from_settings(agent, streams: list[StreamInfo], *, insecure: bool = False, session: str | None = None,
                              env: dict | None = None):
    """A ``NatsSender`` (``[agent] transport = "nats"``): servers ``agent.nats``, credentials from
    ``agent.nats_credentials``, TLS checked against ``agent.nats_ca``; plain text or no credentials only with
    ``insecure``.  Errors say what to configure (``TransportError``)."""
    env = os.environ if env is None else env
    try:
        route = Route(agent.site, agent.name)
        tls = client_tls(agent.nats_ca or None, insecure=insecure)
        if agent.nats_credentials:
            options = load_credentials(agent.nats_credentials).connect_options()
        elif insecure:
            options = {}
        else:
            raise TransportError("NATS transport without credentials: set agent.nats_credentials (a key file), "
                                 "or pass --insecure")
    except (CredentialError, BusError) as exc:
        raise TransportError(str(exc)) from None
    if tls is None:
        log.warning("transport: INSECURE: plain-text NATS to %s (--insecure)", ", ".join(agent.nats))
    return NatsSender(list(agent.nats), route, streams, spool_dir_of(agent, env), connect_options=options, tls=tls,
                      session=session, spool_max_bytes=int(agent.spool_max_mb * (1 << 20)))
