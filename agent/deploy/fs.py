"""File-system steps of ``synchub install``/``uninstall`` under a root directory, printed as they run, recorded in a
manifest so that uninstall removes exactly what install made; with ``dry_run`` they are only printed.

Ownership is resolved in the root's own /etc/passwd and /etc/group (a throwaway root has its own users).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

MANIFEST = "/etc/synchub/install-manifest.json"  # kept with the config and keys until --purge


class InstallError(RuntimeError):
    """A step failed; the message names the step."""


def _ids(root: Path, name: str, file: str) -> int | None:
    try:
        for line in (root / "etc" / file).read_text().splitlines():
            parts = line.split(":")
            if len(parts) > 2 and parts[0] == name:
                return int(parts[2])
    except (OSError, ValueError):
        return None
    return None


class Fs:
    def __init__(self, root: str | Path = "/", dry_run: bool = False, say=print):
        self.root = Path(root).resolve()
        self.live = self.root == Path("/")
        self.dry_run = dry_run
        self.say = say
        self.manifest: dict = {"files": [], "dirs": [], "users": [], "groups": [], "units": []}

    # ---- paths and owners
    def p(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def exists(self, path: str) -> bool:
        return self.p(path).exists()

    def uid(self, user: str) -> int | None:
        return _ids(self.root, user, "passwd")

    def gid(self, group: str) -> int | None:
        return _ids(self.root, group, "group")

    def _own(self, path: Path, owner: str) -> None:
        user, _, group = owner.partition(":")
        uid, gid = self.uid(user) if user else -1, self.gid(group) if group else -1
        if uid is None or gid is None:
            raise InstallError(f"chown {owner} {path}: no such user or group in {self.root / 'etc'}")
        os.chown(path, uid, gid)

    def _note(self, what: str) -> None:
        self.say(("would: " if self.dry_run else "") + what)

    def _record(self, kind: str, path: str, created: bool, tag: str) -> None:
        if created and path not in (e["path"] for e in self.manifest[kind]):
            self.manifest[kind].append({"path": path, "tag": tag})

    # ---- steps
    def mkdir(self, path: str, mode: int, owner: str = "root:root", tag: str = "program") -> None:
        target = self.p(path)
        created = not target.exists()
        self._note(f"directory {path} ({owner} {mode:04o})")
        if self.dry_run:
            return
        target.mkdir(parents=True, exist_ok=True)
        os.chmod(target, mode)
        self._own(target, owner)
        self._record("dirs", path, created, tag)

    def write(self, path: str, data: str | bytes, mode: int = 0o644, owner: str = "root:root",
              tag: str = "program") -> None:
        target = self.p(path)
        created = not target.exists()
        self._note(f"{'write' if created else 'replace'} {path} ({owner} {mode:04o})")
        if self.dry_run:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".synchub-tmp")
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, mode)
        self._own(tmp, owner)
        os.replace(tmp, target)
        self._record("files", path, created, tag)

    def set_mode(self, path: str, mode: int, owner: str) -> None:
        self._note(f"chown {owner} {path}; chmod {mode:04o} {path}")
        if not self.dry_run:
            os.chmod(self.p(path), mode)
            self._own(self.p(path), owner)

    def run(self, argv: list[str], what: str, check: bool = True, timeout: float = 900) -> bool:
        self._note(f"{what}: {' '.join(argv)}")
        if self.dry_run:
            return True
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            if check:
                raise InstallError(f"{what}: {exc}") from None
            self.say(f"  failed: {exc}")
            return False
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            if check:
                raise InstallError(f"{what} failed (status {r.returncode}): {tail[0]}")
            self.say(f"  failed (status {r.returncode}): {tail[0]}")
            return False
        return True

    def remove(self, path: str) -> None:
        target = self.p(path)
        if not (target.exists() or target.is_symlink()):
            return
        self._note(f"remove {path}")
        if self.dry_run:
            return
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()

    def rmdir_if_empty(self, path: str) -> None:
        target = self.p(path)
        if target.is_dir() and not any(target.iterdir()):
            self._note(f"remove empty directory {path}")
            if not self.dry_run:
                target.rmdir()

    # ---- manifest
    def load_manifest(self) -> dict | None:
        try:
            return json.loads(self.p(MANIFEST).read_text())
        except (OSError, ValueError):
            return None

    def save_manifest(self, old: dict | None = None) -> None:
        merged = {k: list(v) for k, v in (old or {}).items() if isinstance(v, list)}
        for kind, entries in self.manifest.items():
            have = {e["path"] if isinstance(e, dict) else e for e in merged.get(kind, [])}
            merged.setdefault(kind, []).extend(e for e in entries
                                              if (e["path"] if isinstance(e, dict) else e) not in have)
        if self.dry_run:
            return
        target = self.p(MANIFEST)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(merged, indent=1) + "\n")
