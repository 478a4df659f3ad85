"""synchub messages on a real 3-node NATS JetStream cluster (TLS, per-agent credentials): chunks published with
message ids arrive intact, resends are stored once, a durable pull consumer resumes where it stopped, a node killed
with SIGKILL loses nothing, and an agent publishing outside its subjects is refused and told why."""

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("nats", reason="nats-py is not installed (pip install 'synchub[nats]')")
import nats.errors  # noqa: E402
import nats.js.api  # noqa: E402
import nats.js.errors  # noqa: E402

from synchub.agent.core.stream import Chunk  # noqa: E402
from synchub.agent.transport import wire  # noqa: E402
from synchub.agent.transport.nats import bus as nb  # noqa: E402
from synchub.agent.transport.nats.publish import PublishError  # noqa: E402

pytest_plugins = ("support.nats_cluster",)  # fixtures fleet, own_fleet, make_fleet
AGENTS = ("a1", "a2", "a3")


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _chunk(stream: str, seq: int, n: int = 20) -> Chunk:
    data = (np.arange(n * 8, dtype=np.float32).reshape(n, 8) + seq)
    dev = (seq + np.arange(n, dtype=np.int64)) * 5_000_000
    return Chunk(stream, seq, data, dev, dev + 1_000_000)


def _messages(agent: str, session: str, count: int, stream: str = "emg"):
    """(subject, payload, msg id, seq) of ``count`` chunks of 20 samples."""
    route = nb.Route("lab", agent)
    out = []
    for i in range(count):
        seq = i * 20
        frames = wire.encode_chunk(session, i + 1, _chunk(stream, seq))
        out.append((route.stream_subject(stream), nb.pack_frames(frames), nb.msg_id(session, stream, seq), seq))
    return out


async def _publish_all(pub, msgs, deadline_s: float = 30.0) -> dict:
    """Publish every message and resend (same message id) whatever fails with a retryable error, until all are
    acked: what the agent's spool does.  Returns the outcome per message index and the resend count."""
    results: dict[int, list] = {}
    pub.on_result = lambda r: results.setdefault(r.token, []).append(r)
    todo = list(range(len(msgs)))
    resends = 0
    t_end = time.monotonic() + deadline_s
    while todo and time.monotonic() < t_end:
        for i in todo:
            subject, payload, mid, _ = msgs[i]
            await pub.publish(subject, payload, mid, i)
        await pub.flush(deadline_s)
        todo = [i for i in todo if results[i][-1].error is not None]
        for i in todo:
            assert results[i][-1].error.retry, results[i][-1].error
        resends += len(todo)
        if todo:
            await asyncio.sleep(0.1)  # back off while the cluster elects a new stream leader
    assert not todo, f"{len(todo)} messages never acked: {results[todo[0]][-1].error}"
    return {"results": results, "resends": resends}


async def _drain(fl, durable: str, filter_subject: str = "synchub.>", max_msgs: int | None = None,
                 ack: bool = True, ack_wait_s: float = 30.0) -> list:
    """Pull (and ack) messages of a durable consumer as the collector; returns the decoded wire messages."""
    nc = await fl.connect("collector")
    try:
        js = nc.jetstream(timeout=10)
        plan = nb.ConsumerPlan(durable=durable, filter_subject=filter_subject, ack_wait_s=ack_wait_s)
        sub = await js.pull_subscribe(filter_subject, durable=durable, stream="SYNCHUB",
                                      config=nats.js.api.ConsumerConfig.from_response(plan.api_config()))
        got = []
        while max_msgs is None or len(got) < max_msgs:
            want = 50 if max_msgs is None else min(50, max_msgs - len(got))
            try:
                batch = await sub.fetch(want, timeout=1.0)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):  # nats-py raises either when nothing is left
                break
            for m in batch:
                got.append((m.subject, wire.decode(nb.unpack_frames(m.data))))
                if ack:
                    await m.ack_sync()
        return got
    finally:
        await nc.close()


def test_chunks_published_with_message_ids_arrive_intact_from_every_kind_of_credentials(fleet):
    with fleet.stream():
        async def go():
            for agent in AGENTS:
                pub = fleet.publisher(agent)
                await pub.connect()
                out = await _publish_all(pub, _messages(agent, f"s-{agent}", 5))
                await pub.close()
                assert out["resends"] == 0
                assert all(not rs[-1].duplicate and rs[-1].seq > 0 for rs in out["results"].values())
            return await _drain(fleet, "c1")

        got = run(go())
        assert len(got) == 15
        for subject, msg in got:
            addr = nb.parse_subject(subject)
            assert (addr.site, addr.stream) == ("lab", "emg") and addr.agent in AGENTS
            assert msg.kind == "chunk" and msg.session == f"s-{addr.agent}"
            expect = _chunk("emg", msg.chunk.seq)
            np.testing.assert_array_equal(msg.chunk.data, expect.data)
            np.testing.assert_array_equal(msg.chunk.device_ns, expect.device_ns)


def test_resends_within_the_duplicate_window_are_acked_as_duplicates_and_stored_once(fleet):
    with fleet.stream():
        async def go():
            pub = fleet.publisher("a1")
            await pub.connect()
            msgs = _messages("a1", "dup", 10)
            first = await _publish_all(pub, msgs)
            again = await _publish_all(pub, msgs[3:8])  # a spool replay after a lost ack
            await pub.close()
            nc = await fleet.connect("admin")
            info = await nc.jetstream().stream_info("SYNCHUB")
            await nc.close()
            return first, again, info

        first, again, info = run(go())
        assert info.state.messages == 10
        assert all(rs[-1].duplicate for rs in again["results"].values())
        for i, rs in again["results"].items():  # the duplicate's ack names the original's stream sequence
            assert rs[-1].seq == first["results"][i + 3][-1].seq


def test_a_durable_pull_consumer_resumes_after_the_collector_restarts(fleet):
    with fleet.stream():
        async def go():
            pub = fleet.publisher("a2")
            await pub.connect()
            await _publish_all(pub, _messages("a2", "resume", 30))
            await pub.close()
            part1 = await _drain(fleet, "c-resume", max_msgs=12, ack_wait_s=1.0)
            # the collector crashes holding 5 delivered but unacked messages (not yet durable in its file)
            crashed = await _drain(fleet, "c-resume", max_msgs=5, ack=False, ack_wait_s=1.0)
            await asyncio.sleep(1.2)  # their ack wait runs out
            part2 = await _drain(fleet, "c-resume", ack_wait_s=1.0)
            return part1, crashed, part2

        part1, crashed, part2 = run(go())
        seqs1 = [m.chunk.seq for _, m in part1]
        seqs2 = [m.chunk.seq for _, m in part2]
        assert seqs1 == [i * 20 for i in range(12)]
        assert [m.chunk.seq for _, m in crashed] == [i * 20 for i in range(12, 17)]
        assert sorted(seqs2) == [i * 20 for i in range(12, 30)], "unacked ones redelivered, acked ones not"


def test_an_agent_publishing_outside_its_subjects_is_refused_and_told_why(fleet):
    with fleet.stream():
        async def go():
            pub = fleet.publisher("a1", ack_timeout_s=10.0)
            await pub.connect()
            seen = []
            pub.on_result = seen.append
            t0 = time.monotonic()
            # other agents' subjects, a subject deeper than the scheme, and its own (accepted)
            for subject in ("synchub.lab.a2.emg", "synchub.lab.A2.emg", "synchub.lab.a1.emg.x", "synchub.lab.a1.emg"):
                await pub.publish(subject, b"payload", nb.msg_id("s", "emg", len(seen)), subject)
            await pub.flush(10)
            took = time.monotonic() - t0
            await pub.close()
            return {r.token: r for r in seen}, took, pub.stats()

        res, took, stats = run(go())
        for bad in ("synchub.lab.a2.emg", "synchub.lab.A2.emg", "synchub.lab.a1.emg.x"):
            err = res[bad].error
            assert isinstance(err, PublishError) and err.kind == "permission" and not err.retry
            assert bad.lower() in str(err) and "outside this agent's subjects" in str(err)
        assert res["synchub.lab.a1.emg"].error is None and res["synchub.lab.a1.emg"].seq > 0
        assert took < 5.0, "refusal reported from the server's error, not after the ack timeout"
        assert stats["failures"] == {"permission": 3}


def test_wrong_credentials_and_plain_text_are_refused_with_the_reason(fleet, tmp_path):
    from synchub.agent.transport.nats.auth import CredentialError, client_tls, write_nkey
    from synchub.agent.transport.nats.publish import AsyncPublisher

    stranger = write_nkey(tmp_path / "stranger.nk")

    async def go(**kw):
        p = AsyncPublisher(fleet.cluster.urls, connect_timeout_s=10.0, **kw)
        await p.connect()

    with pytest.raises(PublishError) as ei:
        run(go(tls=fleet.tls(), connect_options=stranger.connect_options()))
    assert ei.value.kind == "auth" and "authorization" in str(ei.value).lower()
    with pytest.raises(CredentialError, match="--insecure"):
        client_tls(None)
    plain = [u.replace("tls://", "nats://") for u in fleet.cluster.urls]
    with pytest.raises(PublishError) as ei:
        run(AsyncPublisher(plain, connect_timeout_s=10.0, connect_options=fleet.creds["a1"].connect_options()
                           ).connect())
    assert ei.value.kind == "tls" and "certificate verify failed" in str(ei.value)


def test_collector_credentials_read_and_ack_but_cannot_delete_the_stream_and_agents_cannot_provision(fleet):
    with fleet.stream():
        async def go():
            out = {}
            for who in ("collector", "a1"):
                nc = await fleet.connect(who)
                js = nc.jetstream(timeout=0.5)
                try:
                    await js.delete_stream("SYNCHUB")
                    out[who] = "deleted"
                except (nats.errors.TimeoutError, nats.js.errors.Error) as exc:
                    out[who] = type(exc).__name__
                await asyncio.sleep(0.1)
                out[who + "_errors"] = list(nc.errors_seen)
                await nc.close()
            nc = await fleet.connect("admin")
            out["exists"] = (await nc.jetstream().stream_info("SYNCHUB")).config.name
            await nc.close()
            return out

        out = run(go())
        assert out["exists"] == "SYNCHUB"
        for who in ("collector", "a1"):
            assert out[who] != "deleted"
            assert any("permissions violation for publish to \"$js.api.stream.delete" in e.lower() for e in out[who + "_errors"]), out


def test_collectors_announce_recorded_data_to_that_agent_only(fleet):
    async def go():
        col, a1, a2 = [await fleet.connect(w) for w in ("collector", "a1", "a2")]
        subject = fleet.routes["a1"].recorded_subject
        sub = await a1.subscribe(subject)
        await a2.subscribe(subject)  # another agent may not listen
        await a1.flush()
        await a2.flush()
        for _ in range(20):  # the subscription's interest reaches the collector's node over the cluster routes
            await col.publish(subject, b'{"session": "s1", "recorded": 40}')
            try:
                msg = await sub.next_msg(timeout=0.1)
                break
            except nats.errors.TimeoutError:
                continue
        await asyncio.sleep(0.1)
        errors = list(a2.errors_seen)
        for c in (col, a1, a2):
            await c.close()
        return msg.data, errors

    data, errors = run(go())
    assert data == b'{"session": "s1", "recorded": 40}'
    assert any("permissions violation for subscription" in e.lower() for e in errors), errors


def test_a_full_stream_refuses_new_messages_with_a_retryable_stream_error(fleet):
    plan = nb.StreamPlan(max_bytes=16 << 10, replicas=1)
    with fleet.stream(plan):
        async def go():
            pub = fleet.publisher("a3")
            await pub.connect()
            seen = []
            pub.on_result = seen.append
            for subject, payload, mid, seq in _messages("a3", "full", 40):
                await pub.publish(subject, payload, mid, seq)
            await pub.flush(10)
            await pub.close()
            return seen

        seen = run(go())
        bad = [r for r in seen if r.error is not None]
        assert bad and len(bad) < 40
        assert all(r.error.kind == "stream" and r.error.retry for r in bad), [str(r.error) for r in bad][:3]
        assert "maximum bytes" in str(bad[0].error).lower()


def test_partitions_send_each_agent_to_one_collector_and_still_refuse_foreign_subjects(make_fleet):
    fl = make_fleet(size=1, partitions=2)
    plan = nb.StreamPlan(replicas=1, subjects=(f"{nb.DEFAULT_PREFIX}{nb.PARTITION_SUFFIX}.>",))
    with fl.stream(plan):
        async def go():
            for agent in AGENTS:
                pub = fl.publisher(agent)
                await pub.connect()
                await _publish_all(pub, _messages(agent, f"p-{agent}", 4))
                await pub.close()
            pub = fl.publisher("a1")
            await pub.connect()
            refused = []
            pub.on_result = refused.append
            await pub.publish("synchub.lab.a2.emg", b"x", nb.msg_id("p", "emg", 0))
            await pub.flush(10)
            await pub.close()
            return [await _drain(fl, f"part{k}", nb.partition_filter(k)) for k in range(2)], refused

        parts, refused = run(go())
    agents = [{nb.parse_subject(s).agent for s, _ in got} for got in parts]
    assert sum(len(got) for got in parts) == 12
    assert agents[0].isdisjoint(agents[1]) and agents[0] | agents[1] == set(AGENTS)
    for k, got in enumerate(parts):
        assert all(nb.parse_subject(s).partition == k for s, _ in got)
    assert refused[0].error.kind == "permission", refused[0].error


def test_the_threaded_publisher_serves_a_plain_thread_and_its_acks_add_up_to_a_cumulative_ack(fleet):
    import threading

    from synchub.agent.transport.nats.publish import ThreadedPublisher

    with fleet.stream():
        lock = threading.Lock()
        mark = nb.AckWatermark()
        peak = []

        def on_result(r):
            assert r.error is None, r.error
            peak.append(tp.pub.in_flight)
            with lock:
                mark.ack(r.token)

        tp = ThreadedPublisher(**fleet.publisher_options("a2"), window=4, on_result=on_result)
        tp.connect()
        try:
            for i, (subject, payload, mid, _) in enumerate(_messages("a2", "threaded", 60)):
                tp.publish(subject, payload, mid, token=i + 1, block_s=10)
            assert tp.flush(10)
            stats = tp.stats()
        finally:
            tp.close()
        assert mark.acked == 60 and mark.holes == 0
        assert stats["acked"] == 60 and stats["in_flight"] == 0 and max(peak) <= 4


@pytest.mark.timeout(120)
def test_a_node_killed_and_restarted_loses_nothing_and_stores_nothing_twice(own_fleet):
    fl = own_fleet
    n = 400
    msgs = _messages("a1", "kill", n)
    with fl.stream():
        async def stream_info():
            nc = await fl.connect("admin")
            try:
                return await nc.jetstream(timeout=2).stream_info("SYNCHUB")
            finally:
                await nc.close()

        async def go():
            victim = [nd.name for nd in fl.cluster.nodes].index((await stream_info()).cluster.leader)
            pub = fl.publisher("a1", ack_timeout_s=2.0, window=32)
            await pub.connect()
            results: dict[int, list] = {}
            pub.on_result = lambda r: results.setdefault(r.token, []).append(r)
            for i, (subject, payload, mid, _) in enumerate(msgs):
                if i == n // 3:
                    fl.cluster.kill(victim)  # SIGKILL the stream's leader mid-stream
                if i == 2 * n // 3:
                    fl.cluster.restart(victim, wait=False)
                await pub.publish(subject, payload, mid, i)
                await asyncio.sleep(0.002)
            await pub.flush(20)
            failed = [i for i, rs in results.items() if rs[-1].error is not None]
            if failed:  # what the agent's spool does: resend with the same ids
                await _publish_all(pub, [msgs[i] for i in failed])
            stats = pub.stats()
            await pub.close()
            fl.cluster.wait_ready(nodes=[victim])
            lag = None
            for _ in range(100):  # the restarted node catches up from the others
                cl = (await stream_info()).cluster
                if cl.leader == fl.cluster.nodes[victim].name:
                    lag = (True, 0)  # it was elected leader again (replicas lists the followers only)
                else:
                    vp = {p.name: p for p in cl.replicas or []}.get(fl.cluster.nodes[victim].name)
                    lag = None if vp is None else (vp.current, vp.lag or 0)  # 0 is left out of the JSON
                if lag == (True, 0):
                    break
                await asyncio.sleep(0.1)
            return stats, lag, await _drain(fl, "c-kill")

        stats, lag, got = run(go(), timeout=100)
        assert stats["failures"], "the kill went unnoticed: the test did not test a failover"
        assert lag == (True, 0), f"restarted node not current: {lag}"
        seqs = [m.chunk.seq for _, m in got]
        assert sorted(seqs) == [i * 20 for i in range(n)], f"{len(seqs)} of {n} read back"
        assert len(seqs) == len(set(seqs)), "a resend was stored twice"
