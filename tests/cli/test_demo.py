"""End to end: simulated rig -> agent -> ZeroMQ -> collector process -> MCAP, read back with the mcap library."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from synchub.agent.cli.demo import _wait_listening
from synchub.agent.core.evidence import TriggerEdge, UtcSample
from synchub.agent.formats.mcap_read import read_session
from synchub.cli import main
from synchub.errors import UserError


@pytest.mark.slow
def test_demo_records_every_sample_exactly_once(tmp_path):
    out = tmp_path / "demo"
    rc = main(["demo", "--duration", "8", "--out", str(out), "--seed", "3"])
    assert rc == 0
    for name in ("session.mcap", "report.json", "alignment.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert report["duration_s"] == 8
    by_name = {s["name"]: s for s in report["streams"]}
    assert set(by_name) == {"imu0", "tlm0", "log0", "mic0", "cam0"}
    for s in report["streams"]:
        assert set(s) >= {"name", "modality", "samples_sent", "samples_recorded", "method", "error_us"}
        assert s["samples_sent"] > 0 and s["samples_recorded"] == s["samples_sent"] == s["samples_delivered"]
        assert set(s["error_us"]) == set(s["error_us_after_20s"]) == {"median", "p95", "max"}
        assert set(s["offline"]["error_us_after_20s"]) == {"median", "p95", "max"}  # the live / offline ratio
    # the trigger-wired IMU is corrected by its trigger edges, to tens of microseconds or better. On a loaded
    # machine the first chunks can be shipped before the trigger reader has two edges in: those go out on arrival
    # (labelled so), never a chunk after the first trigger-corrected one, and never most of the stream.
    data = read_session(out / "session.mcap")
    methods = data["streams"]["imu0"]["method"]
    trig = methods == "triggers"
    first = int(np.argmax(trig))
    assert trig.mean() > 0.75 and trig[first:].all() and set(methods[:first]) <= {"arrival"}, by_name["imu0"]["method"]
    assert by_name["imu0"]["error_us"]["median"] < 50.0
    if by_name["imu0"]["method"] == "triggers":
        assert by_name["imu0"]["error_us"]["p95"] < 50.0
    # read the file back independently: every sequence number of every stream exactly once, in order
    for name, s in by_name.items():
        seq = data["streams"][name]["seq"]
        assert np.array_equal(seq, np.arange(s["samples_sent"])), name
        rec = data["streams"][name]
        assert rec["ref_ns"] is not None and np.all(rec["unc_ns"] >= 0)
        assert len(rec["device_ns"]) == len(rec["host_ns"]) == len(seq)
    # stage 5 of the source paper: fused vectors + per-stream anomaly scores as their own channel, exported as JSON
    fused = data["streams"]["fused"]
    assert fused["info"]["type"] == "fused" and len(fused["seq"]) >= 4
    assert np.array_equal(fused["seq"], np.arange(len(fused["seq"])))
    assert main(["inspect", str(out / "session.mcap"), "--fused-json", str(tmp_path / "fused.json")]) == 0
    records = json.loads((tmp_path / "fused.json").read_text())["streams"]["fused"]
    assert len(records) == len(fused["seq"]) and set(records[0]["anomaly"]) >= {"imu0", "mic0", "cam0"}


@pytest.mark.slow
def test_offline_rerun_of_a_recording(tmp_path):
    """`synchub align` reruns the clock layer on the stored raw times and evidence and writes a full copy."""
    out = tmp_path / "demo"
    assert main(["demo", "--duration", "6", "--out", str(out), "--seed", "4", "--no-plot"]) == 0
    src, dst = out / "session.mcap", tmp_path / "aligned.mcap"
    assert main(["align", str(src), "--out", str(dst), "--json", str(tmp_path / "a.json")]) == 0
    a, b = read_session(src), read_session(dst)
    assert set(a["streams"]) == set(b["streams"]) and len(a["meta"]) == len(b["meta"])
    from synchub.agent.cli.align import clock_inputs
    from synchub.agent.formats.mcap_read import read_raw

    _, config, evidence, _ = clock_inputs(read_raw(src))
    assert config.streams["imu0"].trigger == "sync" and config.correction_delay_ms == 1500.0
    assert any(isinstance(e, TriggerEdge) for e in evidence)
    assert any(isinstance(e, UtcSample) for e in evidence)  # the monotonic -> UTC samples are kept
    for name, rec in a["streams"].items():
        new = b["streams"][name]
        assert np.array_equal(rec["seq"], new["seq"]) and np.array_equal(rec["device_ns"], new["device_ns"])
        assert np.array_equal(rec["host_ns"], new["host_ns"])  # raw times are never touched
    summary = json.loads((tmp_path / "a.json").read_text())
    imu = next(s for s in summary["streams"] if s["name"] == "imu0")
    assert imu["method"] == "triggers" and imu["median_unc_us"] < 50
    # the live aligners rerun on the recording (bench align --replay), live vs offline, short windows for 6 s
    rp = tmp_path / "replay.json"
    assert main(["bench", "align", "--replay", str(out), "--window", "3", "--hop", "1", "--settle", "3", "--json",
                 str(rp)]) == 0
    doc = json.loads(rp.read_text())
    assert doc["window_s"] == 3.0 and doc["settle_s"] == 3.0
    streams = doc["per_recording"][str(out)]
    assert set(streams) == {"mic0", "cam0"}  # the demo's aligned streams, from the recorded clock config
    mic = streams["mic0"]
    assert mic["modality"] == "audio" and 0 < mic["live_us"] < 50_000 and 0 < mic["offline_us"] < 50_000
    assert mic["ratio"] == pytest.approx(mic["live_us"] / mic["offline_us"], rel=1e-2)
    assert doc["summary"]["mic0"]["recordings"] == 1
    assert main(["bench", "align", "--replay", str(tmp_path)]) == 2  # not a demo folder: one line, no traceback


def test_the_demo_counts_its_seconds_from_a_listening_collector(tmp_path):
    """A slow machine (arm64 under qemu: ~15 s) must not end the session before the collector listens; a collector
    that dies or never listens is one line."""
    def child(code: str, log):
        return subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)

    log_path = tmp_path / "collector.log"
    with open(log_path, "wb") as log:
        p = child("import time; time.sleep(0.5); print('collector listening on tcp://x', flush=True); "
                  "time.sleep(5)", log)
        t0 = time.monotonic()
        _wait_listening(p, log_path, timeout_s=30)
        assert time.monotonic() - t0 >= 0.4  # it waited for the line
        p.kill()
    with open(log_path, "wb") as log:
        p = child("import sys; sys.exit(3)", log)
        with pytest.raises(UserError, match=r"collector exited early \(status 3\)"):
            _wait_listening(p, log_path, timeout_s=30)
    with open(log_path, "wb") as log:
        p = child("import time; time.sleep(30)", log)
        with pytest.raises(UserError, match="collector not listening after 1 s"):
            _wait_listening(p, log_path, timeout_s=1)
        p.kill()
