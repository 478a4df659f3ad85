"""NTP health against a real chronyd on loopback (started here; skipped with the reason when it cannot run).

The test never installs or touches the machine's time service: it uses a ``chronyd`` binary that is already there
(``$SYNCHUB_CHRONYD``, ``PATH``, ``/usr/sbin``) or the one ``make test`` unpacks from Debian's chrony package
into ``~/.cache/synchub/debs/chrony`` (``synchub.bench.debs``: ``apt-get download`` + ``dpkg-deb -x``, no install, so
systemd-timesyncd stays).
The test chronyd runs unprivileged-style: ``-x`` (never adjusts the clock), no command sockets (``cmdport 0``,
``bindcmdaddress /``: the machine's own chronyd keeps /run/chrony), its files in a temp dir, its own UDP port.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from synchub.agent.clock.layer import StreamClocks
from synchub.bench.debs import find_program, missing_hint
from synchub.drivers.ntp import NtpMonitor, free_udp_port


def find_chronyd() -> str | None:
    own = os.environ.get("SYNCHUB_CHRONYD")
    return own if own and os.access(own, os.X_OK) else find_program("chronyd", "chrony")


def chronyd_command(exe: str, conf: Path) -> list[str]:
    user = pwd.getpwuid(os.getuid()).pw_name
    # -u: stay this user (Debian's chronyd would switch to _chrony, which exists only where the package is
    # installed); -U: allow a non-root start
    return [exe, "-d", "-x", "-f", str(conf), "-u", user] + (["-U"] if os.getuid() != 0 else [])


@pytest.fixture(scope="module")
def chrony(tmp_path_factory):
    exe = find_chronyd()
    if exe is None:
        pytest.skip(missing_hint("chronyd", "chrony") + " or set SYNCHUB_CHRONYD")
    d = tmp_path_factory.mktemp("chrony")
    port = free_udp_port()
    conf = d / "chrony.conf"
    conf.write_text(f"port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\n"
                    f"pidfile {d}/chronyd.pid\ndriftfile {d}/drift\ncmdport 0\nbindcmdaddress /\n")
    proc = subprocess.Popen(chronyd_command(exe, conf), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    mon = NtpMonitor([f"127.0.0.1:{port}"], timeout_s=0.5)
    ok = False
    for _ in range(40):
        if proc.poll() is not None:
            break
        time.sleep(0.1)
        if mon.query(f"127.0.0.1:{port}").ok:
            ok = True
            break
    if not ok:
        proc.kill()
        out = proc.communicate(timeout=5)[0].decode(errors="replace")[-300:]
        pytest.skip(f"chronyd ({exe}) could not start or answer on 127.0.0.1:{port}: {out.strip() or 'no output'}")
    yield port
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_health_from_real_chrony(chrony):
    mon = NtpMonitor([f"127.0.0.1:{chrony}"], timeout_s=1.0)
    samples = mon.poll_once()
    s = samples[0]
    assert s.ok, s.error
    assert s.stratum == 8  # chrony serves `local stratum 8`
    assert abs(s.offset_ns) < 50_000_000 and 0 <= s.delay_ns < 50_000_000 and s.leap == 0
    h = mon.health()
    assert h["synchronized"] and h["stratum"] == s.stratum and h["server"] == f"127.0.0.1:{chrony}"
    mono, utc, sigma = mon.utc_mapping()
    assert abs(utc - time.time_ns()) < 1_000_000_000 and sigma > 0
    clocks = StreamClocks({})
    clocks.feed_utc(mono, utc, sigma, "ntp")
    u, unc = clocks.to_utc([mono + 1_000_000_000])
    assert abs(int(u[0]) - (utc + 1_000_000_000)) < 1_000 and clocks.utc_state()["source"] == "ntp"
    via_queue = StreamClocks({})
    via_queue.feed(mon.evidence())  # the same sample as pipeline evidence
    assert via_queue.to_utc([mono])[0][0] == clocks.to_utc([mono])[0][0]


def test_unreachable_and_bad_servers_counted(chrony):
    dead = free_udp_port()
    mon = NtpMonitor([f"127.0.0.1:{dead}", "no-such-host.invalid", f"127.0.0.1:{chrony}"], timeout_s=0.3)
    res = mon.poll_once()
    assert [r.ok for r in res] == [False, False, True]
    assert mon.failures[f"127.0.0.1:{dead}"] == 1 and mon.failures["no-such-host.invalid"] == 1
    assert mon.best().server == f"127.0.0.1:{chrony}"


def test_background_polling(chrony):
    seen = []
    mon = NtpMonitor([f"127.0.0.1:{chrony}"], interval_s=0.05, timeout_s=0.5)
    mon.start(lambda m: seen.append(m.health()["synchronized"]))
    t0 = time.monotonic()
    while len(seen) < 3 and time.monotonic() - t0 < 5:
        time.sleep(0.02)
    mon.stop()
    assert len(seen) >= 3 and all(seen)
