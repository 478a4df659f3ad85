"""The agent's control socket on a real unix socket: status answers, errors as answers, stale sockets removed, a
second agent with the same socket refused, owner-only permissions, and where sockets are looked for."""

import json
import os
import socket
import stat
import threading

import pytest

from synchub.agent.pipeline.control import ControlServer, choose_path, find_sockets, request, socket_dirs


@pytest.fixture
def server(tmp_path):
    calls = []

    def status():
        calls.append(threading.current_thread().name)
        return {"status": {"agent": "a1", "n": len(calls)}}

    srv = ControlServer(tmp_path / "agent-a1.sock", {"status": status, "boom": lambda: 1 / 0}).start()
    yield srv, calls
    srv.stop()


def test_status_request_and_answer(server):
    srv, calls = server
    assert request(srv.path) == {"status": {"agent": "a1", "n": 1}}
    assert request(srv.path)["status"]["n"] == 2
    assert calls == ["synchub-control"] * 2 and srv.served == 2
    assert request(srv.path, "ping") == {"pong": True}


def test_unknown_commands_and_failing_handlers_answer_with_an_error(server):
    srv, _ = server
    assert "unknown command 'reboot'" in request(srv.path, "reboot")["error"]
    assert request(srv.path, "boom")["error"].startswith("boom failed: ZeroDivisionError")
    # a client that connects and says nothing, or goes away, does not stop the server
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(srv.path))
    assert request(srv.path)["status"]["agent"] == "a1"


def test_socket_is_private_unless_its_group_is_synchub(server):
    srv, _ = server
    mode = stat.S_IMODE(os.stat(srv.path).st_mode)
    assert mode == 0o600  # the test's group is not synchub


def test_stale_socket_is_replaced_and_a_live_one_refused(tmp_path, server):
    srv, _ = server
    with pytest.raises(OSError, match="another agent is running"):
        ControlServer(srv.path, {})
    stale = tmp_path / "agent-old.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # the agent died: the file stays, nobody listens
    with pytest.raises(ConnectionRefusedError):
        request(stale)
    srv2 = ControlServer(stale, {"status": lambda: {"status": {}}}).start()
    try:
        assert request(stale) == {"status": {}}
    finally:
        srv2.stop()
    assert not stale.exists()  # stop() removes it


def test_where_sockets_live(tmp_path):
    env = {"RUNTIME_DIRECTORY": str(tmp_path / "rt"), "XDG_RUNTIME_DIR": str(tmp_path / "xdg")}
    dirs = socket_dirs(env)
    assert dirs[0] == tmp_path / "rt" and dirs[1].as_posix() == "/run/synchub" and dirs[2] == tmp_path / "xdg/synchub"
    (tmp_path / "rt").mkdir()
    assert choose_path("field pi/7", env) == tmp_path / "rt" / "agent-field_pi_7.sock"
    srv = ControlServer(choose_path("b", env), {"status": lambda: {"status": json.loads("{}")}}).start()
    try:
        assert tmp_path / "rt" / "agent-b.sock" in find_sockets(env)
    finally:
        srv.stop()
    assert tmp_path / "rt" / "agent-b.sock" not in find_sockets(env)


def test_a_path_that_is_not_a_socket_is_never_deleted(tmp_path):
    """`--control a.toml` (a typo) must not delete the config: refused with a clear error, the file kept."""
    victim = tmp_path / "a.toml"
    victim.write_text("[agent]\n")
    with pytest.raises(OSError, match="exists and is not a socket"):
        ControlServer(victim, {})
    assert victim.read_text() == "[agent]\n"


def test_a_client_trickling_bytes_cannot_hold_the_server(server):
    """The 1 s limit is for the whole request, not per recv: a client sending a byte every 0.3 s is dropped within
    about a second, and the next client is served (the heartbeat the watchdog watches keeps turning)."""
    import time

    srv, _ = server
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(str(srv.path))
    t0 = time.monotonic()
    try:
        for _ in range(10):
            c.sendall(b"s")
            time.sleep(0.3)
    except OSError:
        pass  # the server closed on us
    finally:
        c.close()
    assert request(srv.path, "ping") == {"pong": True}
    assert time.monotonic() - t0 < 4.0
    assert time.monotonic_ns() - srv.heartbeat_ns < 2e9


def test_a_shared_tmp_directory_made_by_someone_else_is_not_used(tmp_path, monkeypatch):
    """Without a runtime directory the socket goes to /tmp/synchub-UID, but only if that directory is ours and
    writable by us alone (another user could otherwise replace the socket `synchub status` talks to)."""
    import shutil

    d = __import__("pathlib").Path(f"/tmp/synchub-{os.getuid()}")
    existed = d.exists()
    saved = stat.S_IMODE(d.stat().st_mode) if existed else None
    try:
        d.mkdir(exist_ok=True)
        os.chmod(d, 0o777)
        env = {"XDG_RUNTIME_DIR": str(tmp_path / "nope" / "x")}  # unusable: only /tmp is left
        monkeypatch.setattr("synchub.agent.pipeline.control.socket_dirs",
                            lambda env=None: [d])
        with pytest.raises(OSError, match="no writable directory"):
            choose_path("a1", env)
        os.chmod(d, 0o700)
        assert choose_path("a1", env) == d / "agent-a1.sock"
    finally:
        if existed:
            os.chmod(d, saved)
        else:
            shutil.rmtree(d, ignore_errors=True)
