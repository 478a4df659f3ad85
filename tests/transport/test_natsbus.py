"""The pure pieces of synchub on NATS: subject tokens and addresses, message ids, payload framing, stream/consumer
plans, permissions, the ack watermark, and nats-server config text (checked by ``nats-server -t`` where installed)."""

import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.paths import ROOT

from synchub.agent.core.stream import Chunk
from synchub.agent.transport import wire
from synchub.agent.transport.nats import bus as nb
from synchub.agent.transport.nats.conf import Node, Site, Tls, leaf_config, render, server_config
from synchub.bench.debs import find_program, missing_hint


@given(st.text(min_size=1, max_size=40))
def test_any_name_escapes_to_one_token_and_back(name):
    tok = nb.token(name)
    assert nb.untoken(tok) == name
    assert all(c not in tok for c in ". *>\t\r\n") and tok.isascii()
    assert not tok.startswith("_")


def test_tokens_keep_plain_names_readable_and_escape_the_rest():
    assert nb.token("pi-01_lab") == "pi-01_lab"
    assert nb.token("pi.01 lab") == "pi%2E01%20lab"
    assert nb.token("_s") == "%5Fs", "no stream can collide with the session token"
    assert nb.token("µV") == "%C2%B5V"
    for bad in ("", None):
        with pytest.raises(nb.BusError):
            nb.token(bad)
    for bad in ("a.b", "a b", "%zz", "%e2", "", "%C2"):  # dots, spaces, bad or lower-case escapes, broken UTF-8
        with pytest.raises(nb.BusError):
            nb.untoken(bad)


def test_routes_give_each_agent_four_token_subjects_that_parse_back():
    r = nb.Route("site A", "pi.01")
    assert r.stream_subject("emg") == "synchub.site%20A.pi%2E01.emg"
    assert r.session_subject == "synchub.site%20A.pi%2E01._s"
    assert r.wildcard == "synchub.site%20A.pi%2E01.*"
    assert r.inbox_prefix == "_INBOX.site%20A.pi%2E01"
    a = nb.parse_subject(r.stream_subject("a.b c"))
    assert (a.site, a.agent, a.stream, a.is_session, a.partition) == ("site A", "pi.01", "a.b c", False, -1)
    assert nb.parse_subject(r.session_subject).is_session
    with pytest.raises(nb.BusError, match="reserved"):
        r.stream_subject("_hidden")
    for bad in ("synchub.a.b", "synchub.a.b.c.d", "other.a.b.c", "synchub_p.x.a.b.c"):
        with pytest.raises(nb.BusError):
            nb.parse_subject(bad)
    with pytest.raises(nb.BusError):
        nb.Route("lab", "a", prefix="bad prefix")
    assert nb.site_filter("lab") == "synchub.lab.>"


def test_partitioned_subjects_parse_and_map_back_to_what_the_agent_published():
    src, dest = nb.partition_mapping(4)
    assert src == "synchub.*.*.*"
    assert dest == "synchub_p.{{partition(4,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}"
    a = nb.parse_subject("synchub_p.3.lab.a1.emg")
    assert (a.partition, a.site, a.agent, a.stream) == (3, "lab", "a1", "emg")
    assert nb.unpartitioned("synchub_p.3.lab.a1.emg") == "synchub.lab.a1.emg"
    assert nb.unpartitioned("synchub.lab.a1.emg") == "synchub.lab.a1.emg"
    assert nb.partition_filter(2) == "synchub_p.2.>"
    with pytest.raises(nb.BusError):
        nb.partition_mapping(0)


def test_message_ids_name_session_stream_and_sequence():
    assert nb.msg_id("s1", "emg", 40) == "s1.emg.40"
    assert nb.msg_id("s1", "", 7) == nb.msg_id("s1", nb.SESSION_TOKEN, 7) == "s1._s.7"
    assert nb.msg_id("s1", "a.b", 0) != nb.msg_id("s1", "a_b", 0)
    for bad in (("", "emg", 1), ("s 1", "emg", 1), ("s1", "emg", -1), ("s1", "emg", True), ("s1", "emg", 1.0)):
        with pytest.raises(nb.BusError):
            nb.msg_id(*bad)


def test_wire_frames_survive_one_payload_aligned_and_zero_copy():
    n = 7
    data = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    dev = np.arange(n, dtype=np.int64) * 1000
    frames = wire.encode_chunk("sess", 5, Chunk("emg", 100, data, dev, dev + 3))
    payload = nb.pack_frames(frames)
    views = nb.unpack_frames(payload)
    assert [bytes(v) for v in views] == [bytes(memoryview(f).cast("B")) for f in frames]
    base = np.frombuffer(payload, np.uint8).ctypes.data
    assert all((np.frombuffer(v, np.uint8).ctypes.data - base) % 8 == 0 for v in views if len(v))
    msg = wire.decode(views)
    np.testing.assert_array_equal(msg.chunk.data, data)
    assert msg.chunk.seq == 100 and msg.mid == 5
    assert nb.unpack_frames(nb.pack_frames([b""]))[0].tobytes() == b""


@pytest.mark.parametrize("bad, why", [
    (b"", "magic"), (b"XXXX\x01\x00\x00\x00", "magic"), (b"SHF1\x00\x00\x00\x00", "0 frames"),
    (b"SHF1\x02\x00\x00\x00\x01\x00\x00\x00", "truncated"),
    (b"SHF1\x01\x00\x00\x00\x10\x00\x00\x00" + bytes(4), "past the payload"),
    (nb.pack_frames([b"abc"]) + bytes(8), "after its last frame"),
])
def test_malformed_payloads_are_refused_with_the_reason(bad, why):
    with pytest.raises(nb.BusError, match=why):
        nb.unpack_frames(bad)


def test_stream_plan_refuses_settings_that_would_lose_data_silently():
    cfg = nb.StreamPlan().api_config()
    assert cfg["num_replicas"] == 3 and cfg["storage"] == "file" and cfg["discard"] == "new"
    assert cfg["duplicate_window"] == 120 * 10**9 and cfg["retention"] == "workqueue"
    for kw, why in [({"discard": "old"}, "silently"), ({"replicas": 2}, "replicas"), ({"name": "a.b"}, "name"),
                    ({"max_age_s": 10.0}, "duplicate window"), ({"subjects": ()}, "subject"),
                    ({"retention": "forever"}, "retention")]:
        with pytest.raises(nb.BusError, match=why):
            nb.StreamPlan(**kw)
    c = nb.ConsumerPlan(durable="col-1", filter_subject="synchub.lab.>", ack_wait_s=2.5).api_config()
    assert c["ack_policy"] == "explicit" and c["ack_wait"] == 2_500_000_000 and c["max_deliver"] == -1
    with pytest.raises(nb.BusError):
        nb.ConsumerPlan(durable="a b")


def test_agent_permissions_cover_only_its_own_subjects_and_inbox():
    r = nb.Route("lab", "a1")
    p = nb.agent_permissions(r)
    assert p["publish"]["allow"] == ["synchub.lab.a1.*", "synchub_p.*.lab.a1.*"]
    assert p["subscribe"]["allow"] == ["_INBOX.lab.a1.>", "synchub_rec.lab.a1"]
    assert r.recorded_subject == "synchub_rec.lab.a1"
    c = nb.collector_permissions("SYNCHUB")
    assert not any("DELETE" in s or "PURGE" in s or s.startswith("synchub.") for s in c["publish"]["allow"])
    assert "synchub_rec.>" in c["publish"]["allow"]


def test_ack_watermark_turns_out_of_order_acks_into_a_cumulative_ack():
    w = nb.AckWatermark()
    assert w.ack(2) == 0 and w.ack(3) == 0 and w.holes == 2
    assert w.ack(1) == 3 and w.holes == 0
    assert w.ack(3) == 3, "a duplicate ack changes nothing"
    assert w.ack(5, last=8) == 3 and w.ack(4) == 8, "a gap span acks a range"


def _site(tmp_path, **kw):
    tls = Tls(str(tmp_path / "c.pem"), str(tmp_path / "c.key"), str(tmp_path / "ca.pem"))
    users = ({"nkey": "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4",
              "permissions": nb.agent_permissions(nb.Route("lab", "a1"))},
             {"user": "collector", "password": "pw", "permissions": nb.collector_permissions()})
    return Site(users=users, system_users=({"user": "sys", "password": "s"},), tls=tls, **kw)


def test_server_config_names_cluster_jetstream_tls_accounts_and_mapping(tmp_path):
    nodes = [Node(f"n{i}", client_port=4222 + i, cluster_port=6222 + i, http_port=0) for i in range(3)]
    text = render(server_config(nodes[0], nodes, _site(tmp_path, partitions=2), "/var/lib/nats/n0"))
    assert 'server_name: "n0"' in text and 'store_dir: "/var/lib/nats/n0"' in text
    assert text.count("nats-route://") == 3 and "verify: true" in text and "http:" not in text
    assert '"synchub.*.*.*": "synchub_p.{{partition(2,1,2)}}' in text
    assert '"$JS.ACK.SYNCHUB.>"' in text and 'system_account: "SYS"' in text
    with pytest.raises(nb.BusError):
        server_config(Node("x"), nodes, _site(tmp_path))


def test_rendered_configs_are_accepted_by_nats_server(tmp_path):
    binary = find_program("nats-server", "nats-server")
    if not binary or not shutil.which("openssl"):
        pytest.skip(f"{missing_hint('nats-server', 'nats-server')}, or openssl missing")
    from synchub.bench.nats_local import make_tls

    real = make_tls(tmp_path / "tls")
    site = _site(tmp_path, partitions=2)
    site = Site(**{**site.__dict__, "tls": real, "leaf_users": ({"user": "leaf-a", "password": "pw"},)})
    nodes = [Node(f"n{i}", client_port=4222 + i, cluster_port=6222 + i, leaf_port=7422 if i == 0 else 0)
             for i in range(3)]
    leaf_site = Site(users=site.users, tls=real, domain="site-a", store_dir=str(tmp_path / "leaf"))
    for name, conf in [("node", server_config(nodes[0], nodes, site, str(tmp_path / "js"))),
                       ("leaf", leaf_config("leaf-a", "127.0.0.1:4333", ["tls://leaf-a:pw@hub:7422"], leaf_site))]:
        path = tmp_path / f"{name}.conf"
        path.write_text(render(conf))
        r = subprocess.run([binary, "-t", "-c", str(path)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"{name}: {r.stdout}{r.stderr}"
    with pytest.raises(nb.BusError, match="domain"):
        leaf_config("leaf", "127.0.0.1:4333", ["tls://hub:7422"], Site())


def test_the_cluster_config_in_docs_fleet_is_accepted_by_nats_server(tmp_path):

    binary = find_program("nats-server", "nats-server")
    if not binary or not shutil.which("openssl"):
        pytest.skip(f"{missing_hint('nats-server', 'nats-server')}, or openssl missing")
    from synchub.bench.nats_local import make_tls

    doc = (ROOT / "docs" / "FLEET.md").read_text()
    conf = doc.split("```conf\n", 1)[1].split("```", 1)[0]
    real = make_tls(tmp_path / "tls")
    for name, path in (("server.pem", real.cert), ("server.key", real.key), ("ca.pem", real.ca)):
        conf = conf.replace(f"/etc/nats/tls/{name}", path)
    conf = conf.replace("/var/lib/nats", str(tmp_path / "js"))
    (tmp_path / "fleet.conf").write_text(conf)
    r = subprocess.run([binary, "-t", "-c", str(tmp_path / "fleet.conf")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "synchub_p.{{partition(" in conf and "$JS.ACK.SYNCHUB.>" in conf
