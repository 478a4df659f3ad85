"""Debian programs that tests and benchmarks run (chronyd, nats-server): installed, or unpacked by ``make`` into a
cache without installing them.

``make test`` never installs a package that would replace or start a service of the machine (Makefile: the apt
policy).  chrony (installing it removes systemd-timesyncd) and nats-server (its postinst enables and starts
nats-server.service) are therefore only unpacked: ``apt-get download PKG`` + ``dpkg-deb -x`` into
``~/.cache/synchub/debs/PKG`` (``$SYNCHUB_DEB_CACHE``).  ``find_program`` looks on ``PATH``, in /usr/sbin and
/usr/bin, then in that cache.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def deb_cache() -> Path:
    return Path(os.environ.get("SYNCHUB_DEB_CACHE", Path.home() / ".cache" / "synchub" / "debs"))


def find_program(name: str, package: str) -> str | None:
    """The path of program ``name`` (from Debian package ``package``), installed or unpacked; None if neither."""
    found = shutil.which(name)
    if found:
        return found
    unpacked = deb_cache() / package
    for d in (Path("/usr/sbin"), Path("/usr/bin"), unpacked / "usr" / "sbin", unpacked / "usr" / "bin"):
        p = d / name
        if os.access(p, os.X_OK):
            return str(p)
    return None


def missing_hint(name: str, package: str) -> str:
    return (f"{name} not found (Debian package {package}; `make test` unpacks it into {deb_cache() / package} "
            f"without installing it)")
