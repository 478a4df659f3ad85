"""Test helper: a real 3-node NATS JetStream cluster (Debian's nats-server, TLS with a CA made by the test) with a
site's identities, one of each credential kind synchub reads:

* ``admin``: user/password (provisions streams; the site operator's role),
* ``collector``: an nkey seed file (``nats_auth.write_nkey``) with ``collector_permissions``,
* ``a1``: an nkey seed file, ``a2``: derived from a CURVE ``NAME.key_secret`` (``synchub keys new``),
  ``a3``: a user/password TOML file; each agent with ``agent_permissions`` of its own route.

Test modules load it with ``pytest_plugins = ("support.nats_cluster",)`` and use the fixtures ``fleet`` (one cluster per
test module; each test makes its stream with ``fleet.stream(...)``, deleted after it), ``own_fleet`` (a cluster of
its own, for tests that kill nodes) or ``make_fleet(**site)`` (other site settings).  All skip with the reason where
nats-server, openssl or nats-py is missing or the cluster cannot start.  ``Fleet.run(coro)`` runs async test code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest

from synchub.agent.transport.nats import bus as nb
from synchub.agent.transport.nats.auth import Credentials, client_tls, load_credentials, write_nkey
from synchub.agent.transport.security import new_pair
from synchub.bench.nats_local import ClusterUnavailable, LocalCluster

SITE = "lab"
AGENTS = ("a1", "a2", "a3")
ADMIN = Credentials("password", "(test)", user="admin", password="admin-test-pw")

try:
    import nats
    import nats.js.api
except ImportError:  # pragma: no cover - the nats extra is part of `make test`
    nats = None

# asyncio's SSL transport warns on every closed TLS connection; it says nothing about the code under test
logging.getLogger("asyncio").setLevel(logging.ERROR)


def run(coro, timeout: float = 60.0):
    """Run a coroutine to completion in a fresh event loop (the tests are plain pytest functions)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Fleet:
    agents = AGENTS
    run = staticmethod(run)

    def __init__(self, root: Path, size: int = 3, **site):
        if nats is None:
            raise ClusterUnavailable("nats-py is not installed (pip install 'synchub[nats]')")
        keys = root / "keys"
        keys.mkdir(parents=True)
        collector = write_nkey(keys / "collector.nk")
        write_nkey(keys / "a1.nk")
        new_pair("a2", keys)
        (keys / "a3.toml").write_text('user = "a3"\npassword = "a3-test-pw"\n')
        self.key_files = {"a1": keys / "a1.nk", "a2": keys / "a2.key_secret", "a3": keys / "a3.toml",
                          "collector": keys / "collector.nk"}
        self.creds: dict[str, Credentials] = {n: load_credentials(p) for n, p in self.key_files.items()}
        self.creds["admin"] = ADMIN
        self.routes = {a: nb.Route(SITE, a) for a in AGENTS}
        users = [self.creds[a].server_user(nb.agent_permissions(self.routes[a])) for a in AGENTS]
        users.append(collector.server_user(nb.collector_permissions(inbox_prefix="_INBOX.collector")))
        users.append({"user": ADMIN.user, "password": ADMIN.password})
        self.cluster = LocalCluster(root / "cluster", size=size, users=users, **site)

    def start(self) -> Fleet:
        self.cluster.start()
        return self

    def tls(self):
        return client_tls(self.cluster.tls.ca)

    def connect_kwargs(self, who: str) -> dict:
        kw = {"servers": self.cluster.urls, "tls": self.tls(), "name": who, "reconnect_time_wait": 0.2,
              "max_reconnect_attempts": -1, **self.creds[who].connect_options()}
        if who in self.routes:
            kw["inbox_prefix"] = self.routes[who].inbox_prefix
        elif who == "collector":
            kw["inbox_prefix"] = "_INBOX.collector"
        return kw

    async def connect(self, who: str, **kw):
        errors: list[str] = []

        async def error_cb(exc):
            errors.append(str(exc))

        nc = await nats.connect(**{**self.connect_kwargs(who), "error_cb": error_cb, **kw})
        nc.errors_seen = errors
        return nc

    def publisher_options(self, who: str) -> dict:
        """Keyword arguments of ``AsyncPublisher``/``ThreadedPublisher`` for this identity (servers included)."""
        opts = self.connect_kwargs(who)
        return {"servers": opts.pop("servers"), "tls": opts.pop("tls"), "inbox_prefix": opts.pop("inbox_prefix", None),
                "name": opts.pop("name"), "connect_options": self.creds[who].connect_options()}

    def publisher(self, who: str, **kw):
        from synchub.agent.transport.nats.publish import AsyncPublisher

        return AsyncPublisher(**{**self.publisher_options(who), **kw})

    async def add_stream(self, plan: nb.StreamPlan):
        nc = await self.connect("admin")
        try:
            js = nc.jetstream(timeout=10)
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(plan.name)
            return await js.add_stream(nats.js.api.StreamConfig.from_response(plan.api_config()))
        finally:
            await nc.close()

    async def delete_stream(self, name: str) -> None:
        nc = await self.connect("admin")
        try:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream(timeout=10).delete_stream(name)
        finally:
            await nc.close()

    @contextlib.contextmanager
    def stream(self, plan: nb.StreamPlan | None = None):
        plan = plan or nb.StreamPlan()
        run(self.add_stream(plan))
        try:
            yield plan
        finally:
            run(self.delete_stream(plan.name))

    def stop(self) -> None:
        self.cluster.stop()


def _start(root: Path, **site) -> Fleet:
    try:
        return Fleet(root, **site).start()
    except ClusterUnavailable as exc:
        pytest.skip(f"no NATS cluster: {exc}")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = _start(tmp_path_factory.mktemp("nats"))
    yield f
    f.stop()


@pytest.fixture
def own_fleet(tmp_path):
    f = _start(tmp_path / "nats")
    yield f
    f.stop()


@pytest.fixture
def make_fleet(tmp_path):
    """``make_fleet(size=1, partitions=2, ...)``: a cluster with other site settings, stopped after the test."""
    made = []

    def make(**site) -> Fleet:
        made.append(_start(tmp_path / f"nats{len(made)}", **site))
        return made[-1]

    yield make
    for f in made:
        f.stop()
