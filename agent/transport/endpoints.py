"""ZeroMQ endpoints as synchub accepts them, checked before any socket sees them (libzmq would bind a random port
for ``tcp://host:99999``, or fail later with an unclear error).  Pure."""

from __future__ import annotations

import re

_TCP = re.compile(r"^tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.*-]+|\*):(?P<port>[0-9]{1,5})$")


def check_endpoint(endpoint: object, *, bind: bool = False) -> str:
    """``endpoint`` if it is a usable ZeroMQ endpoint, else ``ValueError`` saying why.  ``tcp://HOST:PORT`` with a
    port 1-65535 (``bind``: 0 picks a free one, and ``*`` binds every interface), ``ipc://PATH``, ``inproc://NAME``."""
    if not isinstance(endpoint, str) or not endpoint:
        raise ValueError(f"expected an endpoint string like tcp://HOST:PORT, got {endpoint!r}")
    if len(endpoint) > 512:
        raise ValueError(f"endpoint longer than 512 characters ({len(endpoint)})")
    if endpoint.startswith(("ipc://", "inproc://")):
        if endpoint.split("://", 1)[1] and "\0" not in endpoint:
            return endpoint
        raise ValueError(f"{endpoint!r}: empty or invalid path")
    m = _TCP.match(endpoint)
    if m is None:
        raise ValueError(f"{endpoint!r} is not tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    port = int(m["port"])
    lo = 0 if bind else 1
    if not lo <= port <= 65535:
        raise ValueError(f"{endpoint!r}: port {port} out of range {lo}-65535")
    if m["host"] == "*" and not bind:
        raise ValueError(f"{endpoint!r}: '*' can only be bound, not connected to")
    return endpoint
