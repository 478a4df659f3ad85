"""NATS credentials and TLS for synchub, from key files: what ``nats.connect`` gets and what the server's config
names (the public nkey, or user and password).

``load_credentials(path)`` reads one key file and tells its kind by content:

* an **nkey user seed** (one line ``SU...``, as written by ``write_nkey``): nkey challenge auth; the server's
  config lists the public key (``U...``, ``Credentials.public``).
* a **.creds** file (``-----BEGIN NATS USER JWT-----``, from an operator/JWT set-up): passed to nats-py as is.
* a **user/password TOML** (``user = "..."`` and ``password = "..."``).
* a synchub/ZeroMQ **CURVE secret key** (``NAME.key_secret``, ``synchub keys new``): an nkey seed is derived from
  the CURVE secret (keyed BLAKE2b, domain-separated), so one key file per agent serves both transports; its public
  nkey is printed by ``public_nkey(path)`` for the server's config.

Secrets stay in memory (nats-py gets the seed string, never a new file).  ``client_tls`` builds the client's TLS
context from a CA file (and an optional client certificate); plain text is refused unless ``insecure=True``.
The ``nkeys`` package (``pip install 'synchub[nats]'``) is imported only when an nkey is used.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

_CURVE_SECRET = re.compile(r'secret-key\s*=\s*"([^"]{40})"')
_NKEY_DOMAIN = b"synchub-nats-nkey-v1"
_Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


class CredentialError(Exception):
    """A key file that cannot serve as NATS credentials, or TLS material that cannot be used; says which and why."""


def _nkeys():
    try:
        import nkeys
    except ImportError:
        raise CredentialError("nkey credentials need the 'nkeys' package: pip install 'synchub[nats]'") from None
    return nkeys


@dataclass(frozen=True)
class Credentials:
    kind: str  # "nkey", "creds", "password"
    source: str  # the file it came from
    seed: str = ""  # nkey user seed (SU...)
    public: str = ""  # public nkey (U...)
    user: str = ""
    password: str = ""

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``."""
        if self.kind == "nkey":
            return {"nkeys_seed_str": self.seed}
        if self.kind == "creds":
            return {"user_credentials": self.source}
        return {"user": self.user, "password": self.password}

    def server_user(self, permissions: dict[str, Any]) -> dict[str, Any]:
        """This identity as an entry of the server config's ``users`` list (nkey or user/password)."""
        if self.kind == "nkey":
            return {"nkey": self.public, "permissions": permissions}
        if self.kind == "password":
            return {"user": self.user, "password": self.password, "permissions": permissions}
        raise CredentialError(f"{self.source}: a .creds (JWT) identity is configured by its operator, not listed")

    def __repr__(self) -> str:  # never print secrets
        who = self.public or self.user or self.source
        return f"Credentials({self.kind}, {who})"


def nkey_from_seed(raw32: bytes) -> tuple[str, str]:
    """(seed ``SU...``, public ``U...``) of the nkey user with this 32-byte Ed25519 seed."""
    nk = _nkeys()
    if len(raw32) != 32:
        raise CredentialError("an nkey seed is 32 bytes")
    seed = nk.encode_seed(bytes(raw32), nk.PREFIX_BYTE_USER)
    kp = nk.from_seed(bytearray(seed))
    try:
        return seed.decode(), kp.public_key.decode()
    finally:
        kp.wipe()


def _z85_decode(s: str) -> bytes:
    if len(s) % 5:
        raise CredentialError("z85 text length is not a multiple of 5")
    out = bytearray()
    for i in range(0, len(s), 5):
        v = 0
        for ch in s[i:i + 5]:
            d = _Z85.find(ch)
            if d < 0:
                raise CredentialError(f"{ch!r} is not a z85 character")
            v = v * 85 + d
        out += v.to_bytes(4, "big")
    return bytes(out)


def _derived_seed(curve_secret: bytes) -> bytes:
    return hashlib.blake2b(curve_secret, key=_NKEY_DOMAIN, digest_size=32).digest()


def write_nkey(path: str | os.PathLike, raw32: bytes | None = None) -> Credentials:
    """Write a new nkey user seed file (mode 0600) and return its credentials."""
    seed, public = nkey_from_seed(raw32 if raw32 is not None else os.urandom(32))
    p = Path(path)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(seed + "\n")
    return Credentials("nkey", str(p), seed=seed, public=public)


def load_credentials(path: str | os.PathLike) -> Credentials:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialError(f"cannot read NATS credentials from {p}: {exc}") from None
    stripped = text.strip()
    if "-----BEGIN NATS USER JWT-----" in text:
        if "-----BEGIN USER NKEY SEED-----" not in text:
            raise CredentialError(f"{p}: a .creds file needs both the user JWT and the user nkey seed")
        return Credentials("creds", str(p))
    if re.fullmatch(r"SU[A-Z2-7]{56}", stripped):
        nk = _nkeys()
        raw = base64.b32decode(stripped + "=" * (-len(stripped) % 8))
        if nk.crc16_checksum(raw[:-2]) != raw[-2:]:  # nkeys itself does not check it
            raise CredentialError(f"{p}: not a valid nkey user seed (checksum wrong: a typo?)")
        try:
            kp = nk.from_seed(bytearray(stripped.encode()))
        except Exception as exc:  # noqa: BLE001 - nkeys raises several unrelated types for a bad seed
            raise CredentialError(f"{p}: not a valid nkey user seed ({type(exc).__name__})") from None
        public = kp.public_key.decode()
        kp.wipe()
        return Credentials("nkey", str(p), seed=stripped, public=public)
    m = _CURVE_SECRET.search(text)
    if m:
        seed, public = nkey_from_seed(_derived_seed(_z85_decode(m.group(1))))
        return Credentials("nkey", str(p), seed=seed, public=public)
    if re.search(r'public-key\s*=\s*"', text):
        raise CredentialError(f"{p} is a CURVE public key file; NATS credentials need the secret (NAME.key_secret)")
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        table = None
    if isinstance(table, dict) and set(table) >= {"user", "password"}:
        user, password = table["user"], table["password"]
        if not (isinstance(user, str) and user and isinstance(password, str) and password):
            raise CredentialError(f"{p}: user and password must be non-empty strings")
        return Credentials("password", str(p), user=user, password=password)
    raise CredentialError(f"{p}: not NATS credentials (expected an nkey seed SU..., a .creds file, a TOML file with "
                          "user and password, or a CURVE NAME.key_secret)")


def public_nkey(path: str | os.PathLike) -> str:
    c = load_credentials(path)
    if c.kind != "nkey":
        raise CredentialError(f"{path} holds {c.kind} credentials, not an nkey")
    return c.public


def client_tls(ca_file: str | os.PathLike | None, cert_file: str | os.PathLike | None = None,
               key_file: str | os.PathLike | None = None, *, insecure: bool = False) -> ssl.SSLContext | None:
    """The client's TLS context (server verified against ``ca_file``), or None for plain text with ``insecure``."""
    if not ca_file:
        if insecure:
            return None
        raise CredentialError("NATS without TLS needs --insecure (give the site's CA file to verify the servers)")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert_file:
            ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise CredentialError(f"TLS files unusable (ca {ca_file}, cert {cert_file}): {exc}") from None
    return ctx

