"""The agent's local control socket: a unix stream socket that answers ``synchub status``.

Where: ``<dir>/agent-<name>.sock``, the first usable of ``$RUNTIME_DIRECTORY`` (systemd's ``RuntimeDirectory=``,
``/run/synchub`` under the unit), ``/run/synchub``, ``$XDG_RUNTIME_DIR/synchub``, ``/tmp/synchub-<uid>``.  The
socket is mode 0660 when its group is ``synchub`` (members of the group may ask), else 0600 (its owner only).

Protocol: one request line (``status``), one JSON line back, then the server closes.  Requests are served on the
server's own thread; each takes well under a millisecond of the agent's time.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("synchub.control")

MAX_REQUEST = 1024
GROUP = "synchub"


def socket_dirs(env: dict | None = None) -> list[Path]:
    """Where control sockets may live, in the agent's order of preference."""
    env = os.environ if env is None else env
    out = []
    if env.get("RUNTIME_DIRECTORY"):
        out.append(Path(env["RUNTIME_DIRECTORY"].split(":")[0]))
    out.append(Path("/run/synchub"))
    if env.get("XDG_RUNTIME_DIR"):
        out.append(Path(env["XDG_RUNTIME_DIR"]) / "synchub")
    out.append(Path(f"/tmp/synchub-{os.getuid()}"))
    return list(dict.fromkeys(out))


def socket_name(agent: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in agent)
    return f"agent-{safe}.sock"


def choose_path(agent: str, env: dict | None = None) -> Path:
    """The agent's socket path: the first directory it can create or write."""
    for d in socket_dirs(env):
        try:
            d.mkdir(mode=0o750, parents=False, exist_ok=True)
        except OSError:
            continue
        if not os.access(d, os.W_OK | os.X_OK):
            continue
        st = d.lstat()  # under /tmp anyone may have made it first: only ours, and writable by us alone
        if not str(d).startswith("/tmp/") or (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
                                             and not st.st_mode & 0o022):
            return d / socket_name(agent)
    raise OSError(f"no writable directory for the control socket among {', '.join(map(str, socket_dirs(env)))}")


def find_sockets(env: dict | None = None) -> list[Path]:
    """Every agent control socket in the usual places (``synchub status`` without ``--socket``)."""
    out = []
    for d in socket_dirs(env):
        try:
            out += sorted(p for p in d.glob("agent-*.sock") if p.is_socket())
        except OSError:
            continue
    return out


def request(path: str | os.PathLike, command: str = "status", timeout: float = 2.0) -> dict:
    """Ask the agent at ``path``; raises OSError (no agent there, permission) or ValueError (a bad answer)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(command.encode() + b"\n")
        buf = bytearray()
        while chunk := s.recv(65536):
            buf += chunk
    answer = json.loads(buf)
    if not isinstance(answer, dict):
        raise ValueError("answer is not a JSON object")
    return answer


class ControlServer:
    """Serves ``handlers`` (command -> callable returning a JSON-able object) on ``path`` until ``stop()``."""

    def __init__(self, path: str | os.PathLike, handlers: dict[str, Callable[[], object]]):
        self.path = Path(path)
        self.handlers = dict(handlers)
        self.heartbeat_ns = 0
        self.served = 0
        self._stop = threading.Event()
        self._claim()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.bind(str(self.path))
        self._restrict()
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self._thread = threading.Thread(target=self._run, name="synchub-control", daemon=True)

    def _claim(self) -> None:
        """A socket left by an agent that died is removed; one that answers belongs to a running agent: refused."""
        if not (self.path.is_socket() or self.path.exists()):
            return
        if not self.path.is_socket():  # a typo in --control must not delete a config or a recording
            raise OSError(f"{self.path} exists and is not a socket")
        try:
            request(self.path, "ping", timeout=0.5)
        except (OSError, ValueError):
            self.path.unlink(missing_ok=True)
            return
        raise OSError(f"another agent is running with control socket {self.path} (same [agent] name?)")

    def _restrict(self) -> None:
        gid = self.path.stat().st_gid
        try:
            shared = grp.getgrgid(gid).gr_name == GROUP
        except KeyError:
            shared = False
        os.chmod(self.path, 0o660 if shared else 0o600)

    def start(self) -> ControlServer:
        self.heartbeat_ns = time.monotonic_ns()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.heartbeat_ns = time.monotonic_ns()
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            with conn:
                self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        deadline = time.monotonic() + 1.0  # for the whole request: a client trickling bytes cannot hold the loop
        try:
            buf = bytearray()
            while b"\n" not in buf and len(buf) < MAX_REQUEST:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("request not complete within 1 s")
                conn.settimeout(left)
                chunk = conn.recv(MAX_REQUEST)
                if not chunk:
                    break
                buf += chunk
            command = buf.split(b"\n", 1)[0].decode(errors="replace").strip()
            if command == "ping":
                answer: object = {"pong": True}
            elif command in self.handlers:
                try:
                    answer = self.handlers[command]()
                except Exception as exc:  # a handler bug must not take the agent down; the client hears of it
                    log.exception("control: %s failed", command)
                    answer = {"error": f"{command} failed: {exc!r}"}
            else:
                answer = {"error": f"unknown command {command[:40]!r}; known: ping, {', '.join(self.handlers)}"}
            conn.sendall(json.dumps(answer).encode() + b"\n")
            self.served += 1
        except OSError as exc:  # the client went away: its problem, in the debug log only
            log.debug("control: client error: %s", exc)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(2.0)
        self.sock.close()
        if self.path.is_socket():
            self.path.unlink(missing_ok=True)
