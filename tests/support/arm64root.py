"""An arm64 Debian 12 root run under qemu-user, for the arm64 test (tests/test_arm64.py).

``ensure_root()`` builds the root once with ``mmdebstrap --architectures=arm64`` (Debian's qemu-user-static and
binfmt_misc run its arm64 binaries; about 2 minutes of CPU) and caches it under ``~/.cache/synchub/arm64-root/<key>``,
where the key hashes everything that goes in (suite, mirror, variant, packages); a changed list builds a new root and
the old one is removed.  ``run_in_root(root, cmd)`` runs a shell command inside it in a private mount namespace
(``unshare -m``, so nothing stays mounted on the host): /proc, /sys (read-only), /dev and a fresh /tmp, the host's DNS and CA bundle
(PyPI is reached through this machine's network), the checkout read-only at /src, and a Raspberry Pi 4's
/proc/cpuinfo bind-mounted over the host's x86 one (onnxruntime reads it at import and crashes under qemu 7.2 on an x86
cpuinfo).

``python tests/support/arm64root.py build`` builds (or finds) the root and prints its path; ``... shell`` opens a shell in it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
VARIANT = "essential"
PACKAGES = ("python3", "python3-venv", "libstdc++6")  # onnxruntime links libstdc++
CPUINFO = Path(__file__).resolve().parents[1] / "data" / "pi4-cpuinfo.txt"
SRC = Path(__file__).resolve().parents[2]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def pip_cache() -> Path:
    """Where the root's pip keeps downloaded aarch64 wheels between runs (outside the root: rebuilding keeps it)."""
    return cache_base().parent / "arm64-pip"


def cache_base() -> Path:
    return Path(os.environ.get("SYNCHUB_ARM64_CACHE", Path.home() / ".cache" / "synchub" / "arm64-root"))


def root_key() -> str:
    spec = {"suite": SUITE, "mirror": MIRROR, "variant": VARIANT, "packages": sorted(PACKAGES), "layout": 1}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def binfmt_enabled() -> bool:
    try:
        return Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


def missing_reason(build: bool = True) -> str | None:
    """Why the arm64 root cannot be used here, or None."""
    if os.geteuid() != 0:
        return "needs root (chroot, mounts)"
    for tool in ("unshare", "chroot", "mount") + (("mmdebstrap",) if build else ()):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {'mmdebstrap' if tool == 'mmdebstrap' else 'util-linux'})"
    if not Path("/proc/sys/fs/binfmt_misc/status").exists():
        return "binfmt_misc is not mounted (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)"
    if not binfmt_enabled():
        return ("no qemu-aarch64 binfmt handler (apt-get install qemu-user-static binfmt-support; "
                "update-binfmts --enable qemu-aarch64)")
    return None


def cached_root() -> Path | None:
    d = cache_base() / root_key()
    return d if (d / ".complete").exists() else None


def ensure_root(log=print) -> Path:
    """The cached root, built first when missing (one builder at a time: a lock file)."""
    base = cache_base()
    base.mkdir(parents=True, exist_ok=True)
    key = root_key()
    with open(base / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        root = base / key
        if (root / ".complete").exists():
            return root
        for old in base.iterdir():  # roots of older package lists, half-built roots
            if old.is_dir() and old.name != key:
                shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.monotonic()
        cmd = ["mmdebstrap", "--quiet", "--architectures=arm64", f"--variant={VARIANT}",
               f"--include={','.join(PACKAGES)}", "--mode=root", SUITE, str(root), MIRROR]
        log(f"building the arm64 root: {shlex.join(cmd)}")
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"mmdebstrap failed ({r.returncode}): {(r.stderr or r.stdout)[-500:]}")
        (root / ".complete").write_text(json.dumps({"key": key, "build_s": round(time.monotonic() - t0, 1)}))
        return root


def run_in_root(root: Path, cmd: str, *, timeout: float = 600, env: dict | None = None,
                cache: Path | None = None, share: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` (sh) inside ``root`` as root, in a private mount namespace.  ``cache``: a host directory mounted
    at /cache (pip's cache, so repeated runs do not download again); ``share``: one mounted at /share (files in and
    out)."""
    root = Path(root)
    for d in ("proc", "sys", "dev", "tmp", "src", "cache", "share", "etc/ssl/certs"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for f in ("etc/resolv.conf", "etc/ssl/certs/ca-certificates.crt"):
        p = root / f
        if p.is_symlink() or not p.exists():
            p.unlink(missing_ok=True)
            p.touch()
    mounts = [
        f"mount -t proc proc {root}/proc",
        f"mount --bind {CPUINFO} {root}/proc/cpuinfo",
        f"mount --rbind /dev {root}/dev",
        f"mount --bind -o ro /sys {root}/sys",  # onnxruntime's cpuinfo reads /sys/devices/system/cpu/possible
        f"mount -t tmpfs tmpfs {root}/tmp",
        f"mount --bind -o ro {SRC} {root}/src",
        f"mount --bind /etc/resolv.conf {root}/etc/resolv.conf",
    ]
    if CA_BUNDLE.exists():
        mounts.append(f"mount --bind {CA_BUNDLE} {root}/etc/ssl/certs/ca-certificates.crt")
    if cache is not None:
        Path(cache).mkdir(parents=True, exist_ok=True)
        mounts.append(f"mount --bind {cache} {root}/cache")
    if share is not None:
        mounts.append(f"mount --bind {share} {root}/share")
    inner_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                 "LANG": "C.UTF-8", "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
                 "PIP_DISABLE_PIP_VERSION_CHECK": "1", **(env or {})}
    env_args = " ".join(shlex.quote(f"{k}={v}") for k, v in inner_env.items())
    script = " && ".join(mounts) + f" && exec chroot {root} /usr/bin/env -i {env_args} /bin/sh -c {shlex.quote(cmd)}"
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def main(argv: list[str]) -> int:
    why = missing_reason()
    if why:
        print(f"arm64 root unavailable: {why}", file=sys.stderr)
        return 2
    root = ensure_root(log=lambda m: print(m, file=sys.stderr))
    if argv[:1] == ["shell"]:
        return subprocess.call(["unshare", "--mount", "--propagation", "private", "chroot", str(root), "/bin/sh"])
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
