"""NATS credentials from synchub key files: each kind is recognised by its content, becomes the right nats.connect
options and server-config entry, never shows its secret, and a file that is not credentials says what it is."""

import pytest

from synchub.agent.transport.nats.auth import (
    CredentialError,
    client_tls,
    load_credentials,
    public_nkey,
    write_nkey,
)
from synchub.agent.transport.security import new_pair

pytest.importorskip("nkeys", reason="nkeys is not installed (pip install 'synchub[nats]')")

PERMS = {"publish": {"allow": ["synchub.lab.a1.*"]}}


def test_an_nkey_seed_file_gives_challenge_auth_and_its_public_key(tmp_path):
    made = write_nkey(tmp_path / "a1.nk")
    assert (tmp_path / "a1.nk").stat().st_mode & 0o777 == 0o600
    c = load_credentials(tmp_path / "a1.nk")
    assert c.kind == "nkey" and c.public == made.public and c.public.startswith("U") and len(c.public) == 56
    assert c.connect_options() == {"nkeys_seed_str": made.seed}
    assert c.server_user(PERMS) == {"nkey": c.public, "permissions": PERMS}
    assert made.seed not in repr(c) and c.public in repr(c)
    assert public_nkey(tmp_path / "a1.nk") == c.public


def test_a_curve_secret_key_file_derives_a_stable_nkey_of_its_own(tmp_path):
    new_pair("a2", tmp_path)
    new_pair("a3", tmp_path)
    c2 = load_credentials(tmp_path / "a2.key_secret")
    assert c2.kind == "nkey" and c2 == load_credentials(tmp_path / "a2.key_secret")
    assert c2.public != load_credentials(tmp_path / "a3.key_secret").public
    with pytest.raises(CredentialError, match="public key file"):
        load_credentials(tmp_path / "a2.key")


def test_a_user_password_toml_and_a_creds_file(tmp_path):
    (tmp_path / "u.toml").write_text('user = "a3"\npassword = "pw"\n')
    c = load_credentials(tmp_path / "u.toml")
    assert c.connect_options() == {"user": "a3", "password": "pw"} and "pw" not in repr(c)
    assert c.server_user(PERMS) == {"user": "a3", "password": "pw", "permissions": PERMS}
    creds = tmp_path / "a.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n\n"
                     "-----BEGIN USER NKEY SEED-----\nSUAM\n------END USER NKEY SEED------\n")
    c = load_credentials(creds)
    assert c.kind == "creds" and c.connect_options() == {"user_credentials": str(creds)}
    with pytest.raises(CredentialError, match="operator"):
        c.server_user(PERMS)


@pytest.mark.parametrize("text, why", [
    ("hello\n", "not NATS credentials"),
    ('user = "a3"\npassword = ""\n', "non-empty"),
    ("-----BEGIN NATS USER JWT-----\neyJ0\n", "needs both"),
    ("SU" + "A" * 56 + "\n", "not a valid nkey"),
])
def test_files_that_are_not_credentials_say_why(tmp_path, text, why):
    p = tmp_path / "k"
    p.write_text(text)
    with pytest.raises(CredentialError, match=why):
        load_credentials(p)


def test_a_missing_file_or_a_non_nkey_is_named(tmp_path):
    with pytest.raises(CredentialError, match="cannot read"):
        load_credentials(tmp_path / "nope")
    (tmp_path / "u.toml").write_text('user = "a"\npassword = "b"\n')
    with pytest.raises(CredentialError, match="not an nkey"):
        public_nkey(tmp_path / "u.toml")


def test_tls_is_required_unless_insecure_and_bad_files_are_named(tmp_path):
    assert client_tls(None, insecure=True) is None
    with pytest.raises(CredentialError, match="--insecure"):
        client_tls("")
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(CredentialError, match="ca.pem"):
        client_tls(tmp_path / "ca.pem")


def test_a_mistyped_seed_is_caught_by_its_checksum(tmp_path):
    seed = write_nkey(tmp_path / "a.nk").seed
    typo = seed[:10] + ("A" if seed[10] != "A" else "B") + seed[11:]
    (tmp_path / "typo.nk").write_text(typo)
    with pytest.raises(CredentialError, match="checksum"):
        load_credentials(tmp_path / "typo.nk")
