"""CURVE security, Ironhouse style (pyzmq ``ThreadAuthenticator``): the collector has a server key pair, agents
have their own key pairs, and the collector only lets in agents whose public key file is in an allow-list
directory.  Key files are the ZeroMQ certificate files made by ``new_pair`` (``synchub keys``,
``zmq.auth.create_certificates``):
``NAME.key`` (public) and ``NAME.key_secret`` (public + secret).

``ServerKeys.start`` starts the authenticator on the collector's context; ``self_test`` then proves that a client
with a fresh, unknown key is refused (the collector refuses to run otherwise).  Plain text needs ``--insecure``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)


class SecurityError(Exception):
    """Keys missing or unusable, or the self-test found that a stranger would be let in."""


def new_pair(name: str, directory) -> tuple[Path, Path]:
    """A new key pair ``DIR/NAME.key`` (public, 0644) and ``DIR/NAME.key_secret`` (0600); ``SecurityError`` for a
    name that is not letters, digits, ``_ . -``."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise SecurityError(f"bad key name {name!r}: use letters, digits, _ . - (at most 64)")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    old_umask = os.umask(0o077)
    try:
        public, secret = zmq.auth.create_certificates(str(d), name)
    finally:
        os.umask(old_umask)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    return Path(public), Path(secret)


def load_secret(path: str | os.PathLike) -> tuple[bytes, bytes]:
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError, LookupError, TypeError, zmq.ZMQError) as exc:  # a missing file, or not a key file
        raise SecurityError(f"cannot load CURVE key pair from {path}: {exc or type(exc).__name__}") from None
    if not secret:
        raise SecurityError(f"{path} holds no secret key (use the NAME.key_secret file)")
    return public, secret


def load_public(path: str | os.PathLike) -> bytes:
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError, LookupError, TypeError, zmq.ZMQError) as exc:
        raise SecurityError(f"cannot load CURVE public key from {path}: {exc or type(exc).__name__}") from None
    if not public or len(public) != 40:
        raise SecurityError(f"{path} holds no CURVE public key")
    return public


@dataclass
class ClientKeys:
    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def load(cls, secret_file, server_public_file) -> ClientKeys:
        public, secret = load_secret(secret_file)
        return cls(public, secret, load_public(server_public_file))

    def apply_client(self, sock: zmq.Socket) -> None:
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret
        sock.curve_serverkey = self.server_public


class ZapLog:
    """The authenticator's logger: its CURVE denials (logged by pyzmq at debug level only) become a warning,
    rate-limited, with a count, so a wrong key is visible on the collector."""

    def __init__(self, inner: logging.Logger, every_s: float = 10.0):
        self.inner = inner
        self.every_s = every_s
        self.denied = 0
        self.quiet = False  # during the self-test, whose stranger is meant to be refused
        self._last = -1e9
        self.debug, self.info, self.warning, self.error, self.exception = (inner.debug, inner.info, inner.warning,
                                                                           inner.error, inner.exception)
        self.debug = self._debug

    def _debug(self, msg, *args, **kw) -> None:
        if isinstance(msg, str) and msg.startswith("%s (CURVE") and args and args[0] == "DENIED" and not self.quiet:
            self.denied += 1
            now = time.monotonic()
            if now - self._last >= self.every_s:
                self._last = now
                key = args[-1].decode(errors="replace") if isinstance(args[-1], bytes) else str(args[-1])
                log.warning("security: refused a client whose CURVE key %s... is not in the allow-list (%d refusals "
                            "so far)", key[:12], self.denied)
        self.inner.debug(msg, *args, **kw)


@dataclass
class ServerKeys:
    public: bytes
    secret: bytes
    allow_dir: Path
    auth: ThreadAuthenticator | None = None

    @classmethod
    def load(cls, secret_file, allow_dir) -> ServerKeys:
        public, secret = load_secret(secret_file)
        allow = Path(allow_dir)
        if not allow.is_dir():
            raise SecurityError(f"allow-list directory {allow} does not exist")
        return cls(public, secret, allow)

    def allowed_keys(self) -> list[str]:
        return sorted(p.name for p in self.allow_dir.glob("*.key"))

    def start(self, ctx: zmq.Context) -> None:
        """Start the ZAP authenticator on ``ctx`` with the allow-list (needed before any CURVE server binds)."""
        if not self.allowed_keys():
            log.warning("security: allow-list %s holds no *.key files: no agent can connect", self.allow_dir)
        self.auth = ThreadAuthenticator(ctx, log=ZapLog(logging.getLogger("synchub.zap")))
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(self.allow_dir))

    def apply_server(self, sock: zmq.Socket) -> None:
        if self.auth is None:
            raise SecurityError("CURVE server socket without a running authenticator would accept any key")
        sock.curve_server = True
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret

    def stop(self) -> None:
        if self.auth is not None:
            self.auth.stop()
            self.auth = None


def self_test(server_sock: zmq.Socket, endpoint: str, server_public: bytes, timeout_s: float = 1.0) -> None:
    """Connect to ``endpoint`` with a fresh, unknown key pair and send a message; raise ``SecurityError`` if the
    server socket receives it.  (Messages that arrive meanwhile from real agents are dropped; agents resend.)"""
    ctx = zmq.Context()
    c = ctx.socket(zmq.DEALER)
    try:
        public, secret = zmq.curve_keypair()
        c.setsockopt(zmq.LINGER, 0)
        c.curve_publickey, c.curve_secretkey, c.curve_serverkey = public, secret, server_public
        c.connect(_local(endpoint))
        try:
            c.send(b"synchub-self-test", zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if server_sock.poll(50):
                frames = server_sock.recv_multipart()
                if frames and frames[-1] == b"synchub-self-test":
                    raise SecurityError("self-test: a client with an unknown CURVE key was accepted; refusing to run")
    finally:
        c.close(0)
        ctx.term()


def _local(endpoint: str) -> str:
    if endpoint.startswith("tcp://0.0.0.0:"):
        return "tcp://127.0.0.1:" + endpoint.rsplit(":", 1)[1]
    if endpoint.startswith("tcp://[::]:"):
        return "tcp://[::1]:" + endpoint.rsplit(":", 1)[1]
    return endpoint
