"""nats-server configuration for a synchub site, as data: a JetStream cluster node with TLS and accounts, and a leaf
node for a site behind a poor link.  Pure: ``server_config``/``leaf_config`` build a dict, ``render`` writes the
nats-server config syntax (the tests, the fleet benchmark and docs/FLEET.md use the same functions).

Accounts: ``SYNCHUB`` (JetStream enabled) holds the agents, collectors and the admin, each with its own
permissions (``natsbus.agent_permissions``...); ``SYS`` is the system account (cluster monitoring).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .bus import BusError, partition_mapping

ACCOUNT = "SYNCHUB"
SYSTEM_ACCOUNT = "SYS"
_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Node:
    """One nats-server of a cluster."""

    name: str
    host: str = "127.0.0.1"
    client_port: int = 4222
    cluster_port: int = 6222
    http_port: int = 8222  # monitoring (/healthz, /varz); 0: off
    leaf_port: int = 0  # accept leaf nodes here; 0: off

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"

    @property
    def route(self) -> str:
        return f"nats-route://{self.host}:{self.cluster_port}"


@dataclass(frozen=True)
class Tls:
    cert: str
    key: str
    ca: str


@dataclass(frozen=True)
class Site:
    """What every node of a site's cluster shares: its name, users, TLS and JetStream limits."""

    cluster: str = "synchub"
    users: tuple[dict[str, Any], ...] = ()  # Credentials.server_user(...) entries of the SYNCHUB account
    system_users: tuple[dict[str, Any], ...] = ()
    tls: Tls | None = None
    store_dir: str = "/var/lib/nats/jetstream"
    max_file_store: int = 64 << 30
    max_mem_store: int = 256 << 20
    max_payload: int = 1 << 20
    domain: str = ""  # JetStream domain (needed when leaf nodes run their own JetStream)
    partitions: int = 0  # >0: map agents onto this many partitions (natsbus.partition_mapping)
    leaf_users: tuple[dict[str, Any], ...] = ()  # {"user", "password"} of leaf nodes (bound to the SYNCHUB account)
    extra_accounts: dict[str, Any] = field(default_factory=dict)


def _tls_block(tls: Tls, verify: bool) -> dict[str, Any]:
    return {"cert_file": tls.cert, "key_file": tls.key, "ca_file": tls.ca, "verify": verify, "timeout": 2}


def _accounts(site: Site) -> dict[str, Any]:
    synchub: dict[str, Any] = {"jetstream": "enabled", "users": list(site.users)}
    if site.partitions:
        src, dest = partition_mapping(site.partitions)
        synchub["mappings"] = {src: dest}
    accounts = {ACCOUNT: synchub, **site.extra_accounts}
    if site.system_users:
        accounts[SYSTEM_ACCOUNT] = {"users": list(site.system_users)}
    return accounts


def server_config(node: Node, peers: list[Node] | tuple[Node, ...], site: Site, store_dir: str | None = None
                  ) -> dict[str, Any]:
    """One cluster node.  ``peers`` are all nodes of the cluster (this one included; nats-server skips itself).
    ``store_dir`` overrides ``site.store_dir`` (one directory per node when several share a machine)."""
    if not peers or node.name not in {p.name for p in peers}:
        raise BusError(f"node {node.name!r} must be one of the cluster's peers")
    js: dict[str, Any] = {"store_dir": store_dir or site.store_dir, "max_file_store": site.max_file_store,
                          "max_memory_store": site.max_mem_store}
    if site.domain:
        js["domain"] = site.domain
    conf: dict[str, Any] = {"server_name": node.name, "listen": f"{node.host}:{node.client_port}",
                            "max_payload": site.max_payload, "jetstream": js}
    if node.http_port:
        conf["http"] = f"{node.host}:{node.http_port}"
    if site.tls:
        conf["tls"] = _tls_block(site.tls, verify=False)
    if len(peers) > 1:
        cluster: dict[str, Any] = {"name": site.cluster, "listen": f"{node.host}:{node.cluster_port}",
                                   "routes": [p.route for p in peers]}
        if site.tls:
            cluster["tls"] = _tls_block(site.tls, verify=True)  # nodes prove themselves with the site's certificate
        conf["cluster"] = cluster
    if node.leaf_port:
        leaf: dict[str, Any] = {"listen": f"{node.host}:{node.leaf_port}"}
        if site.tls:
            leaf["tls"] = _tls_block(site.tls, verify=False)
        if site.leaf_users:
            leaf["authorization"] = {"users": [{**u, "account": ACCOUNT} for u in site.leaf_users]}
        conf["leafnodes"] = leaf
    conf["accounts"] = _accounts(site)
    if site.system_users:
        conf["system_account"] = SYSTEM_ACCOUNT
    return conf


def leaf_config(name: str, listen: str, hub_urls: list[str], site: Site, hub_credentials: str = "",
                http: str = "") -> dict[str, Any]:
    """A single-node site server that agents connect to, linked to the hub cluster as a leaf node.  It runs its own
    JetStream in domain ``site.domain`` (required), so agents' publishes are stored and acked on site even while the
    link is down; the hub's stream sources the leaf's stream over the link (see docs/FLEET.md).  The leaf logs in
    to the hub with user:password in ``hub_urls`` or a ``.creds`` file (operator/JWT set-ups).  Checked by
    ``nats-server -t`` only so far: no test runs a leaf against a hub yet."""
    if not site.domain:
        raise BusError("a leaf node with JetStream needs its own domain (Site.domain)")
    conf: dict[str, Any] = {"server_name": name, "listen": listen, "max_payload": site.max_payload,
                            "jetstream": {"store_dir": site.store_dir, "max_file_store": site.max_file_store,
                                          "max_memory_store": site.max_mem_store, "domain": site.domain}}
    if http:
        conf["http"] = http
    if site.tls:
        conf["tls"] = _tls_block(site.tls, verify=False)
    remote: dict[str, Any] = {"urls": list(hub_urls), "account": ACCOUNT}
    if hub_credentials:
        remote["credentials"] = hub_credentials
    if site.tls:
        remote["tls"] = {"ca_file": site.tls.ca}
    conf["leafnodes"] = {"remotes": [remote]}
    conf["accounts"] = _accounts(site)
    return conf


# ---------------------------------------------------------------------------------------------------- syntax
def _value(v: Any, indent: int) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # quoted: '$' and '{{...}}' stay literal
    if isinstance(v, dict):
        return "{\n" + _body(v, indent + 2) + " " * indent + "}"
    if isinstance(v, (list, tuple)):
        if all(not isinstance(x, (dict, list, tuple)) for x in v):
            return "[" + ", ".join(_value(x, indent) for x in v) + "]"
        pad = " " * (indent + 2)
        return "[\n" + "".join(f"{pad}{_value(x, indent + 2)}\n" for x in v) + " " * indent + "]"
    raise BusError(f"cannot write {type(v).__name__} into a nats-server config")


def _body(d: dict[str, Any], indent: int) -> str:
    out = []
    for k, v in d.items():
        key = k if _BARE_KEY.fullmatch(k) else json.dumps(k)
        out.append(f"{' ' * indent}{key}: {_value(v, indent)}\n")
    return "".join(out)


def render(conf: dict[str, Any]) -> str:
    """nats-server config text of ``conf`` (from ``server_config``/``leaf_config``)."""
    return "# written by synchub (agent/transport/nats/conf.py)\n" + _body(conf, 0)
