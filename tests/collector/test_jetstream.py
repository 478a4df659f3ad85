"""The NATS path end to end on a real 3-node JetStream cluster (TLS, per-agent credentials): ``NatsSender`` (the
agent's transport) publishes a session, ``NatsCollector`` records it to MCAP and acks after fsync; a collector
restarted mid-session resumes in a new part file from its durable consumer; an agent started before the cluster is
reachable keeps its data in the spool and delivers it once it is; messages that arrive out of order are recorded in
order; a message on another agent's subject for a session is refused."""

import threading
import time

import numpy as np
import pytest

pytest.importorskip("nats", reason="nats-py is not installed (pip install 'synchub[nats]')")

from support.lsl import needs_lsl  # noqa: E402

from synchub.agent.collector.jetstream import NatsCollector  # noqa: E402
from synchub.agent.collector.lsl_tap import LslTap  # noqa: E402
from synchub.agent.core.stream import Chunk, Gap, StreamInfo  # noqa: E402
from synchub.agent.formats.mcap_read import read_session  # noqa: E402
from synchub.agent.transport.nats import bus as nb  # noqa: E402
from synchub.agent.transport.nats.sender import NatsSender  # noqa: E402

pytest_plugins = ("support.nats_cluster",)  # fixtures fleet, own_fleet, make_fleet
STREAMS = [StreamInfo("emg", "imu", 200.0, 8), StreamInfo("temp", "telemetry", 1.0, 1)]


def _chunk(stream: str, seq: int, n: int, ch: int = 8) -> Chunk:
    data = (np.arange(n * ch, dtype=np.float32).reshape(n, ch) + seq)
    dev = (seq + np.arange(n, dtype=np.int64)) * 5_000_000
    return Chunk(stream, seq, data, dev, dev + 1_000_000)


def sender(fleet, who: str, tmp_path, **kw) -> NatsSender:
    o = fleet.publisher_options(who)
    return NatsSender(o["servers"], nb.Route("lab", who), STREAMS, kw.pop("spool_dir", tmp_path / f"spool-{who}"),
                      connect_options=o["connect_options"], tls=o["tls"], **kw)


class Running:
    """A ``NatsCollector`` serving in a thread until ``stop()``."""

    def __init__(self, fleet, out, **kw):
        o = fleet.publisher_options("collector")
        self.col = NatsCollector(o["servers"], out, connect_options=o["connect_options"], tls=o["tls"],
                                 inbox_prefix="_INBOX.collector", **kw)
        self.stop_event = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.col.run(self.stop_event)
        except Exception as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def wait_closed(self, sid: str, timeout: float = 20.0) -> None:
        """Until the session's bye is recorded (its file finished)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.col.sessions.get(sid)
            if s is not None and s.closed:
                return
            time.sleep(0.05)
        raise AssertionError(f"session {sid} not closed within {timeout} s ({self.error}): {self.col.stats()}")

    def stop(self):
        self.stop_event.set()
        self.thread.join(20)
        assert self.error is None, self.error
        st = self.col.stats()
        assert "internal_errors" not in st["counts"], st
        assert "fetch_errors" not in st["counts"], st  # an idle fetch is no error (it cost a 0.2 s pause)
        assert st["held"] == 0 and st["unacked"] == 0, st  # everything recorded was acked to JetStream
        return st


def _send(s: NatsSender, stream: str, start: int, count: int, n: int = 20) -> int:
    for i in range(count):
        s.send_chunk(_chunk(stream, start + i * n, n, 8 if stream == "emg" else 1))
    return start + count * n


def _check(out, emg: int, temp: int):
    files = sorted(out.glob("*.mcap"))
    data = read_session(files)
    for name, want in (("emg", emg), ("temp", temp)):
        seq = data["streams"][name]["seq"]
        assert len(seq) == want and np.array_equal(seq, np.arange(want)), (name, len(seq), want)
    return data, files


def test_a_session_goes_from_the_sender_through_the_cluster_into_one_recording(fleet, tmp_path):
    with fleet.stream():
        col = Running(fleet, tmp_path / "out")
        s = sender(fleet, "a1", tmp_path)
        s.connect(10)
        _send(s, "emg", 0, 50)
        _send(s, "temp", 0, 5, n=1)
        s.send_gap(Gap("emg", 1020, 20, "device_drop"))
        s.send_meta("emg", {"note": "hello"})
        _send(s, "emg", 1020, 10)
        assert s.close(20)
        st = s.stats()
        assert st["acked"] == st["chunks"] + 3  # chunks, gap, meta, bye
        col.wait_closed(s.session)
        cst = col.stop()
        data = read_session(sorted((tmp_path / "out").glob("*.mcap")))
        emg = data["streams"]["emg"]["seq"]
        assert np.array_equal(emg, np.r_[np.arange(1000), np.arange(1020, 1220)])
        assert len(data["streams"]["temp"]["seq"]) == 5
        assert [g["count"] for g in data["gaps"]] == [20]
        assert any(m.get("meta") == {"note": "hello"} for m in data["meta"])
        assert len(cst["files"]) == 1 and cst["sessions"][s.session]["closed"]
        assert cst["bad"] == {}


@needs_lsl
def test_the_nats_collector_with_lsl_outlet_publishes_what_it_records_once(fleet, tmp_path):
    """``--lsl-outlet`` hooks the recording both collectors share: JetStream's redeliveries are not published twice."""
    with fleet.stream():
        col = Running(fleet, tmp_path / "out")
        tap = col.col.lsl = LslTap("nats-test-").open()
        s = sender(fleet, "a1", tmp_path)
        s.connect(10)
        _send(s, "emg", 0, 30)
        _send(s, "temp", 0, 3, n=1)
        assert s.close(20)
        col.wait_closed(s.session)
        col.stop()
        tap.close()
    assert tap.published == {"a1/emg": 600, "a1/temp": 3} and tap.counts["host_time_samples"] == 603
    assert not tap.outlets and tap.counts["errors"] == 0  # the bye closed them


def test_the_sender_spools_through_a_whole_cluster_outage_and_a_leader_kill_and_delivers_everything_once(own_fleet,
                                                                                                           tmp_path):
    fl = own_fleet
    with fl.stream():
        col = Running(fl, tmp_path / "out")
        s = sender(fl, "a1", tmp_path, ack_timeout_s=2.0)
        s.connect(10)
        seq = _send(s, "emg", 0, 40)
        fl.cluster.kill(0)  # a node (maybe the leader) dies while chunks flow
        seq = _send(s, "emg", seq, 40)
        for i in (1, 2):  # then the whole cluster: nothing answers, the spool holds what comes
            fl.cluster.kill(i)
        seq = _send(s, "emg", seq, 60)
        time.sleep(1.0)
        assert s.pending() > 0
        for i in range(3):
            fl.cluster.restart(i, wait=False)
        fl.cluster.wait_ready()
        seq = _send(s, "emg", seq, 40)
        assert s.close(40), s.stats()
        st = s.stats()
        assert st["publish_failed"] > 0 and st["resent"] > 0, "the outage went unnoticed: the test tested nothing"
        col.wait_closed(s.session)
        cst = col.stop()
    data = read_session(sorted((tmp_path / "out").glob("*.mcap")))
    got = data["streams"]["emg"]["seq"]
    assert np.array_equal(got, np.arange(seq)), f"{len(got)} of {seq} samples, {len(set(got))} distinct"
    assert data["gaps"] == [] and cst["bad"] == {}


def test_messages_out_of_order_are_recorded_in_order_and_a_foreign_subject_is_refused(fleet, tmp_path):
    from synchub.agent.transport import wire

    sid = "ooo1"
    a1 = nb.Route("lab", "a1")
    hello = wire.encode_hello("a1", sid, STREAMS, "test", 0, 0)
    msgs = [(a1.session_subject, hello, nb.msg_id(sid, "_s", 0))]
    for mid in range(1, 7):
        seq = (mid - 1) * 20
        msgs.append((a1.stream_subject("emg"), wire.encode_chunk(sid, mid, _chunk("emg", seq, 20)),
                     nb.msg_id(sid, "emg", seq)))
    msgs.append((a1.session_subject, wire.encode_bye(sid, 7), nb.msg_id(sid, "_s", 7)))
    order = [0, 1, 4, 5, 2, 3, 6, 7]  # 4 and 5 before 2 and 3: a resend after a failed publish
    a2 = nb.Route("lab", "a2")
    forged = (a2.stream_subject("emg"), wire.encode_chunk(sid, 3, _chunk("emg", 9000, 20)), nb.msg_id(sid, "emg", 9))

    async def publish():
        for who, items in (("a1", [msgs[i] for i in order[:4]]), ("a2", [forged]), ("a1", [msgs[i] for i in order[4:]])):
            pub = fleet.publisher(who)
            await pub.connect()
            for subject, frames, mid in items:
                await pub.publish(subject, nb.pack_frames(frames), mid)
            assert await pub.flush(10) and pub.counts["failed"] == 0
            await pub.close()

    with fleet.stream():
        fleet.run(publish())
        col = Running(fleet, tmp_path / "out")
        col.wait_closed(sid)
        cst = col.stop()
    data = read_session(sorted((tmp_path / "out").glob("*.mcap")))
    assert np.array_equal(data["streams"]["emg"]["seq"], np.arange(120))
    assert cst["bad"] == {"identity": 1}, cst["bad"]
    assert cst["counts"]["held_ahead"] == 2


def test_a_session_left_half_acked_in_the_spool_is_replayed_by_the_next_run(own_fleet, tmp_path):
    fl, spool = own_fleet, tmp_path / "spool"
    with fl.stream():
        col = Running(fl, tmp_path / "out")
        first = sender(fl, "a1", tmp_path, spool_dir=spool, ack_timeout_s=1.0)
        first.connect(10)
        _send(first, "emg", 0, 10)
        assert first.flush(20)  # acked: forgotten by the spool
        for i in range(3):  # then the cluster goes away and the agent stops with the rest unsent
            fl.cluster.kill(i)
        _send(first, "emg", 200, 20)
        assert not first.close(0.5)
        for i in range(3):
            fl.cluster.restart(i, wait=False)
        fl.cluster.wait_ready()
        second = sender(fl, "a1", tmp_path, spool_dir=spool)
        second.connect(20)
        _send(second, "emg", 0, 10)
        assert second.close(40), second.stats()
        for sid in (first.session, second.session):
            col.wait_closed(sid, timeout=40)
        cst = col.stop()
    files = sorted((tmp_path / "out").glob("*.mcap"))
    for sid, n in ((first.session, 600), (second.session, 200)):
        data = read_session([f for f in files if sid in f.name])
        assert np.array_equal(data["streams"]["emg"]["seq"], np.arange(n)), sid
    assert cst["bad"] == {}
    assert list(spool.glob("hello-*")) == []  # both sessions are done with


def test_a_session_over_the_agents_limit_is_refused_and_redelivered_not_a_crash(fleet, tmp_path):
    """Admission holds on NATS too: with one session per agent allowed, a second hello of the same agent is
    counted as ``session_limit`` and nak'd (JetStream redelivers it later), the first session records on."""
    from synchub.agent.collector.admission import Admission
    from synchub.agent.transport import wire

    a1 = nb.Route("lab", "a1")
    msgs = []
    for sid in ("lim1", "lim2"):
        msgs.append((a1.session_subject, wire.encode_hello("a1", sid, STREAMS, "test", 0, 0), nb.msg_id(sid, "_s", 0)))
        msgs.append((a1.stream_subject("emg"), wire.encode_chunk(sid, 1, _chunk("emg", 0, 20)),
                     nb.msg_id(sid, "emg", 0)))
    msgs.append((a1.session_subject, wire.encode_bye("lim1", 2), nb.msg_id("lim1", "_s", 2)))

    async def publish():
        pub = fleet.publisher("a1")
        await pub.connect()
        for subject, frames, mid in msgs:
            await pub.publish(subject, nb.pack_frames(frames), mid)
        assert await pub.flush(10) and pub.counts["failed"] == 0
        await pub.close()

    with fleet.stream():
        fleet.run(publish())
        col = Running(fleet, tmp_path / "out", admission=Admission(100, max_sessions_per_key=1))
        col.wait_closed("lim1")
        deadline = time.monotonic() + 10
        while not col.col.bad.get("session_limit") and time.monotonic() < deadline:
            time.sleep(0.05)
        cst = col.stop()
    assert cst["bad"].get("session_limit", 0) >= 1, cst["bad"]
    assert "lim2" not in cst["sessions"]
    data = read_session(sorted((tmp_path / "out").glob("*lim1*.mcap")))
    assert np.array_equal(data["streams"]["emg"]["seq"], np.arange(20))



def test_a_fetch_that_times_out_is_no_failure():
    """nats-py ends a fetch that found nothing in time with its own TimeoutError or with asyncio's (the builtin
    TimeoutError, an OSError); both mean "no message yet".  asyncio's was taken for a failed fetch and cost a 0.2 s
    pause each time (150-210 ms stalls of a whole partition in bench fleet).  Real failures still count."""
    import asyncio

    import nats.errors

    from synchub.agent.collector.jetstream import fetch_failed

    assert not fetch_failed(asyncio.TimeoutError())
    assert not fetch_failed(TimeoutError())
    assert not fetch_failed(nats.errors.TimeoutError())
    assert fetch_failed(nats.errors.ConnectionClosedError())
    assert fetch_failed(ConnectionResetError())
