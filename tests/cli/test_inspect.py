"""synchub inspect on a file produced by a real sender and collector."""

import json
import threading

import numpy as np

from synchub.agent.collector.server import Collector
from synchub.agent.core.evidence import ClockReset, evidence_to_dict
from synchub.agent.core.stream import Chunk, Gap, StreamInfo
from synchub.agent.transport.sender import Sender
from synchub.cli import main


def _record(tmp_path):
    col = Collector("tcp://127.0.0.1:0", tmp_path / "rec")
    stop = threading.Event()
    t = threading.Thread(target=col.run, args=(stop,), daemon=True)
    t.start()
    infos = [StreamInfo("imu", "imu", 200.0, 3), StreamInfo("log", "text", 0.0, 1, "string")]
    s = Sender(col.endpoint, "insp", infos)
    for k in range(10):
        seq = k * 20 if k < 5 else k * 20 + 7  # a hole of 7 samples after chunk 4
        t_ns = 1_000_000_000 + np.arange(seq, seq + 20) * 5_000_000
        s.send_chunk(Chunk("imu", seq, np.zeros((20, 3), np.float32), t_ns, t_ns))
    s.send_gap(Gap("imu", 107, 7, "device_drop"))
    s.send_meta("_evidence", {"kind": "evidence", **evidence_to_dict(ClockReset("imu", 120, 5, 9))})
    s.send_chunk(Chunk("log", 0, ["a", "b"], [1, 2], [1_000_000_000, 1_500_000_000]))
    assert s.close(10)
    stop.set()
    t.join(10)
    col.close()
    return [str(p) for p in (tmp_path / "rec").glob("*.mcap")]


def test_inspect_json_and_plot(tmp_path, capsys):
    files = _record(tmp_path)
    png = tmp_path / "t.png"
    assert main(["inspect", *files, "--json", "--plot", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    imu = next(r for r in out["streams"] if r["name"] == "imu")
    assert imu["samples"] == 200 and imu["seq_missing"] == 7 and imu["seq_holes"] == 1
    assert imu["gap_records"] == 1 and imu["gap_samples"] == 7 and imu["gap_causes"] == ["device_drop"]
    assert imu["clock_resets"] == 1  # recorded as evidence, not as a gap
    assert imu["nominal_hz"] == 200.0 and abs(imu["measured_hz"] - 200.0 * 199 / 206) < 0.5
    assert "utc_first" in imu and imu["modality"] == "imu"
    log = next(r for r in out["streams"] if r["name"] == "log")
    assert log["samples"] == 2 and log["format"] == "string"
    assert png.stat().st_size > 1000


def test_inspect_table_and_missing_file(tmp_path, capsys):
    files = _record(tmp_path)
    assert main(["inspect", *files]) == 0
    text = capsys.readouterr().out
    assert "imu" in text and "200" in text
    assert main(["inspect", str(tmp_path / "nope.mcap")]) == 2
    assert "no such file" in capsys.readouterr().err
