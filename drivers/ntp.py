"""NTP health with ntplib: host clock offset, delay, stratum and leap against the configured servers.

``NtpMonitor`` queries each server (``host`` or ``host:port``) every ``interval_s`` on its own thread and keeps the
latest result per server.  ``health()`` is what the agent publishes as metadata (per server and the best one: the
reachable server with the smallest delay); ``utc_mapping()`` turns the best answer into a reference-clock -> UTC
sample (``evidence()``: a ``UtcSample`` for the pipeline's queue, which the clock layer's ``StreamClocks`` maps with):
the host's CLOCK_MONOTONIC at the reply, the UTC time then (CLOCK_REALTIME + the measured offset) and a 1-sigma bound (half the round trip plus the server's own root delay/2 and
dispersion).  Failures (timeouts, unresolvable names, kiss-o'-death) are counted per server and never raise.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import asdict, dataclass

import ntplib

from synchub.agent.core.evidence import UtcSample
from synchub.agent.core.units import NS

log = logging.getLogger("synchub.ntp")


@dataclass
class NtpSample:
    server: str
    ok: bool
    mono_ns: int = 0  # host CLOCK_MONOTONIC when the reply arrived
    realtime_ns: int = 0  # host CLOCK_REALTIME then
    offset_ns: int = 0  # UTC - host realtime
    delay_ns: int = 0  # round trip minus the server's processing time
    stratum: int = 0
    leap: int = 0  # 0 none, 1 +1 s, 2 -1 s, 3 unsynchronized
    ref_id: str = ""
    root_delay_ns: int = 0
    root_dispersion_ns: int = 0
    error: str = ""

    @property
    def utc_ns(self) -> int:
        return self.realtime_ns + self.offset_ns

    @property
    def sigma_ns(self) -> int:
        return self.delay_ns // 2 + self.root_delay_ns // 2 + self.root_dispersion_ns


def _split(server: str, default_port: int) -> tuple[str, int]:
    if server.count(":") == 1:
        host, port = server.rsplit(":", 1)
        return host, int(port)
    return server, default_port


class NtpMonitor:
    def __init__(self, servers, interval_s: float = 64.0, timeout_s: float = 1.0, port: int = 123, client=None):
        self.ntplib = ntplib
        self.servers = list(servers)
        self.interval_s = float(interval_s)
        self.timeout_s = float(timeout_s)
        self.port = int(port)
        self.client = client or ntplib.NTPClient()
        self.latest: dict[str, NtpSample] = {}
        self.failures: dict[str, int] = {s: 0 for s in self.servers}
        self.queries = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()

    def query(self, server: str) -> NtpSample:
        self.queries += 1
        try:
            host, port = _split(server, self.port)
            r = self.client.request(host, version=4, port=port, timeout=self.timeout_s)
            mono, real = time.monotonic_ns(), time.time_ns()
        except (self.ntplib.NTPException, OSError, ValueError) as exc:
            with self._lock:
                self.failures[server] = self.failures.get(server, 0) + 1
            n = self.failures[server]
            if n <= 3 or n % 100 == 0:
                log.warning("NTP %s: %s (%d failures)", server, exc, n)
            s = NtpSample(server, False, error=f"{type(exc).__name__}: {exc}")
        else:
            ref = r.ref_id
            ref_text = self.ntplib.ref_id_to_text(ref, r.stratum) if hasattr(self.ntplib, "ref_id_to_text") else ref
            s = NtpSample(
                server, True, mono_ns=mono, realtime_ns=real, offset_ns=round(r.offset * NS),
                delay_ns=round(r.delay * NS), stratum=int(r.stratum), leap=int(r.leap), ref_id=str(ref_text),
                root_delay_ns=round(r.root_delay * NS), root_dispersion_ns=round(r.root_dispersion * NS),
            )
            if s.stratum == 0 or s.stratum >= 16 or s.leap == 3:
                s.ok = False
                s.error = "server unsynchronized (stratum 0/16 or leap=3)"
                with self._lock:
                    self.failures[server] = self.failures.get(server, 0) + 1
        with self._lock:
            self.latest[server] = s
        return s

    def poll_once(self) -> list[NtpSample]:
        return [self.query(s) for s in self.servers]

    def best(self) -> NtpSample | None:
        with self._lock:
            ok = [s for s in self.latest.values() if s.ok]
        return min(ok, key=lambda s: s.delay_ns) if ok else None

    def health(self) -> dict:
        """Metadata: the best server's offset/delay/stratum/leap and every server's latest answer."""
        b = self.best()
        with self._lock:
            per = {k: {**asdict(v), "failures": self.failures.get(k, 0)} for k, v in self.latest.items()}
        out = {"servers": per, "queries": self.queries, "synchronized": b is not None}
        if b is not None:
            out.update(server=b.server, offset_ms=b.offset_ns / 1e6, delay_ms=b.delay_ns / 1e6, stratum=b.stratum,
                       leap=b.leap, sigma_ms=b.sigma_ns / 1e6)
        return out

    def evidence(self) -> UtcSample | None:
        """The best answer as clock evidence for the pipeline (``StreamClocks`` routes it to its UTC mapping)."""
        m = self.utc_mapping()
        if m is None:
            return None
        mono, utc, sigma = m
        return UtcSample(mono, utc, sigma, source="ntp")

    def utc_mapping(self) -> tuple[int, int, int] | None:
        """(monotonic ns, UTC ns, 1-sigma ns) from the best answer, or None."""
        b = self.best()
        if b is None:
            return None
        return b.mono_ns, b.utc_ns, max(b.sigma_ns, 1)

    # ---- background polling
    def start(self, callback=None) -> None:
        """Poll every ``interval_s`` on a thread; ``callback(monitor)`` after each round."""
        self._halt.clear()

        def loop():
            while not self._halt.is_set():
                self.poll_once()
                if callback is not None:
                    try:
                        callback(self)
                    except Exception:  # a consumer's bug must not stop the health checks
                        log.exception("NTP callback failed")
                self._halt.wait(self.interval_s)

        self._thread = threading.Thread(target=loop, name="synchub-ntp", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s * len(self.servers) + 2)
            self._thread = None


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
