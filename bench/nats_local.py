"""A real NATS JetStream cluster on loopback for tests and benchmarks: Debian's ``nats-server`` started as N nodes in a
directory, with TLS from a CA made on the spot (``openssl``) and the users it is given; nodes can be killed with
SIGKILL and restarted on the same ports and store.

    with LocalCluster(tmp_path, users=[...]) as c:   # raises ClusterUnavailable (with the reason) if it cannot run
        c.urls, c.tls.ca, c.kill(1), c.restart(1), c.cpu_s()

Configuration comes from ``synchub.agent.transport.nats.conf`` (the same as docs/FLEET.md shows).
"""

from __future__ import annotations

import ctypes
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from synchub.agent.transport.nats.conf import Node, Site, Tls, render, server_config
from synchub.bench.debs import find_program, missing_hint

START_TIMEOUT_S = 15.0


class ClusterUnavailable(RuntimeError):
    """nats-server (or openssl) is missing or the cluster did not come up; the text says why."""


def nats_server_binary() -> str:
    path = find_program("nats-server", "nats-server")
    if not path:
        raise ClusterUnavailable(missing_hint("nats-server", "nats-server"))
    return path


def make_tls(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Tls:
    """A throw-away CA and one certificate (server and client use) for ``hosts``, EC P-256, made with openssl."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise ClusterUnavailable("openssl is not installed (Debian package openssl) to make the test CA")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    san = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts)
    ext = d / "server.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n"
                   "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj",
         "/CN=synchub test CA"],
        [openssl, "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=synchub nats"],
        [openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.pem", "-days", "2", "-extfile", "server.ext"],
    ]
    for cmd in steps:
        r = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=30)
        if r.returncode:
            raise ClusterUnavailable(f"openssl failed ({' '.join(cmd[1:3])}): {r.stderr.strip()[-300:]}")
    return Tls(cert=str(d / "server.pem"), key=str(d / "server.key"), ca=str(d / "ca.pem"))


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it dies (a killed test run leaves no
    nats-server behind).  Linux ties this to the *thread* that started it: start and restart nodes from a thread
    that lives as long as the cluster (the main thread).  Elsewhere nothing."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _http_get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class LocalCluster:
    def __init__(self, root: str | os.PathLike, size: int = 3, users: list[dict[str, Any]] | tuple = (),
                 tls: bool = True, **site: Any):
        self.root = Path(root)
        self.size = size
        self.binary = nats_server_binary()
        self.root.mkdir(parents=True, exist_ok=True)
        self.tls = make_tls(self.root / "tls") if tls else None
        self.site = Site(users=tuple(users), system_users=({"user": "sys", "password": "sys-test"},), tls=self.tls,
                         **site)
        self.nodes: list[Node] = []
        self.procs: list[subprocess.Popen | None] = []

    # -- lifecycle
    def start(self, attempts: int = 3) -> LocalCluster:
        why = ""
        for _ in range(attempts):
            ports = free_ports(3 * self.size)
            self.nodes = [Node(f"n{i + 1}", client_port=ports[3 * i], cluster_port=ports[3 * i + 1],
                               http_port=ports[3 * i + 2]) for i in range(self.size)]
            self.procs = [None] * self.size
            for node in self.nodes:
                conf = self.root / f"{node.name}.conf"
                conf.write_text(render(server_config(node, self.nodes, self.site, str(self.root / node.name))))
            for i in range(self.size):
                self._spawn(i)
            try:
                self.wait_ready()
                return self
            except ClusterUnavailable as exc:
                why = str(exc)
                self.stop()
                if "address already in use" not in why:
                    break
        raise ClusterUnavailable(why)

    def _spawn(self, i: int) -> None:
        node = self.nodes[i]
        log = open(self.root / f"{node.name}.log", "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.procs[i] = subprocess.Popen([self.binary, "-c", str(self.root / f"{node.name}.conf")],
                                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             preexec_fn=_die_with_parent)
        finally:
            log.close()

    def log_tail(self, i: int, n: int = 600) -> str:
        try:
            return (self.root / f"{self.nodes[i].name}.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def wait_ready(self, timeout: float = START_TIMEOUT_S, nodes: list[int] | None = None) -> float:
        """Wait until every (given) node answers /healthz with JetStream current; returns the seconds it took."""
        t0 = time.monotonic()
        todo = set(range(self.size) if nodes is None else nodes)
        last = {}
        while todo:
            for i in sorted(todo):
                p = self.procs[i]
                if p is None or p.poll() is not None:
                    raise ClusterUnavailable(f"nats-server {self.nodes[i].name} exited: {self.log_tail(i)}")
                try:
                    status, body = _http_get(self.nodes[i].http_port, "/healthz")
                    last[i] = body.decode(errors="replace")[:200]
                    if status == 200:
                        todo.discard(i)
                except OSError as exc:
                    last[i] = str(exc)
            if todo and time.monotonic() - t0 > timeout:
                raise ClusterUnavailable(f"nats-server nodes {sorted(todo)} not ready after {timeout:.0f} s: "
                                         f"{[last.get(i) for i in sorted(todo)]}")
            if todo:
                time.sleep(0.05)
        return time.monotonic() - t0

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (no shutdown, no flush)."""
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)

    def restart(self, i: int, wait: bool = True) -> float:
        """Start node ``i`` again on the same ports and store; returns seconds until it is healthy."""
        self.kill(i)
        self._spawn(i)
        return self.wait_ready(nodes=[i]) if wait else 0.0

    def stop(self) -> None:
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            if p is not None:
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- facts
    @property
    def urls(self) -> list[str]:
        scheme = "tls" if self.tls else "nats"
        return [f"{scheme}://127.0.0.1:{n.client_port}" for n in self.nodes]

    def pids(self) -> list[int]:
        return [p.pid if p is not None and p.poll() is None else 0 for p in self.procs]

    def cpu_s(self) -> float:
        """CPU seconds (user + system) used so far by the running nodes."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids():
            if not pid:
                continue
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                pass
        return total
