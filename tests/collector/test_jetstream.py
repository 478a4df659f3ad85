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

from synchub.agent.collector.jetstream import NatsCollector  # noqa: E402
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

    def stop(self):
        self.stop_event.set()
        self.thread.join(20)
        assert self.error is None, self.error
        return self.col.stats()


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
        time.sleep(0.5)
        cst = col.stop()
        data = read_session(sorted((tmp_path / "out").glob("*.mcap")))
        emg = data["streams"]["emg"]["seq"]
        assert np.array_equal(emg, np.r_[np.arange(1000), np.arange(1020, 1220)])
        assert len(data["streams"]["temp"]["seq"]) == 5
        assert [g["count"] for g in data["gaps"]] == [20]
        assert any(m.get("meta") == {"note": "hello"} for m in data["meta"])
        assert len(cst["files"]) == 1 and cst["sessions"][s.session]["closed"]
        assert cst["bad"] == {}
