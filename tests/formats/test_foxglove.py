"""``synchub export --foxglove``: the session as an MCAP Foxglove plots, read back with the Python ``mcap`` reader and
with ``@mcap/core`` (Foxglove's own TypeScript reader, through node), its foxglove.* schemas checked against
``@foxglove/schemas``; log_time in UTC ns from the recorded UTC samples, raw times kept in every message."""

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from support.paths import TESTS
from support.sessions import LABELS, NS, record_session, utc_of

from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.formats.foxglove import FoxgloveExport, UtcMap
from synchub.agent.formats.mcap_read import read_session

NPM = Path(os.environ.get("SYNCHUB_NPM", Path.home() / ".cache" / "synchub" / "npm")) / "node_modules"
WHY = ("node not installed" if not shutil.which("node") else
       f"@mcap/core/@foxglove/schemas/fzstd not in {NPM} (make npm-tools)"
       if not all((NPM / p).is_dir() for p in ("@mcap/core", "@foxglove/schemas", "fzstd")) else "")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    s = record_session(tmp_path_factory.mktemp("rec"))
    out = tmp_path_factory.mktemp("fox") / "session-foxglove.mcap"
    r = subprocess.run([sys.executable, "-m", "synchub.cli", "export", str(s.path), "--foxglove", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "log_time UTC" in r.stdout
    return s, out


def test_every_sample_is_a_json_message_at_its_utc_time_with_its_raw_times(exported):
    s, out = exported
    with open(out, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        topics = {c.topic: (c.message_encoding, summary.schemas[c.schema_id].name,
                            summary.schemas[c.schema_id].encoding) for c in summary.channels.values()}
        msgs = [(ch.topic, m.log_time, m.publish_time, json.loads(m.data)) for _, ch, m in reader.iter_messages()]
    assert topics["/eeg"] == ("json", "synchub.eeg", "jsonschema")
    assert topics["/markers"] == ("json", "foxglove.Log", "jsonschema")
    assert topics["/synchub/gaps"] == ("json", "foxglove.Log", "jsonschema")
    eeg = [m for m in msgs if m[0] == "/eeg"]
    assert len(eeg) == 490
    log_t = np.array([m[1] for m in eeg], dtype=np.int64)
    # a least-squares line through the recorded UTC samples: exact here, where the truth is a line
    assert np.abs(log_t - utc_of(s.ref)).max() <= 2 and all(m[1] == m[2] for m in eeg)
    first = eeg[0][3]
    assert first["timestamp"] == {"sec": int(log_t[0]) // NS, "nsec": int(log_t[0]) % NS}
    assert first["ref"]["sec"] * NS + first["ref"]["nsec"] == s.ref[0]  # raw and corrected times kept
    assert first["device"]["sec"] * NS + first["device"]["nsec"] == s.ref[0] - 3_000_000
    assert [first[lab] for lab in LABELS] == s.data[0].tolist() and first["unc_ns"] == 900
    marks = [m[3] for m in msgs if m[0] == "/markers"]
    assert [(m["message"], m["level"], m["name"]) for m in marks] == [("start", 2, "markers"), ("stim", 2, "markers"),
                                                                      ("stop", 2, "markers")]
    gap = [m[3] for m in msgs if m[0] == "/synchub/gaps"][0]
    assert gap["level"] == 3 and gap["message"].startswith("10 samples lost (device_drop)")
    assert read_session(s.path)["streams"]["eeg"]["seq"].size == 490  # the recording itself is untouched


@pytest.mark.skipif(bool(WHY), reason=WHY or "-")
def test_mcap_core_reads_it_and_the_foxglove_schemas_match_the_npm_package(exported):
    s, out = exported
    r = subprocess.run(["node", str(TESTS / "support" / "mcap_check.cjs"), str(out)], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, NODE_PATH=str(NPM)))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["counts"] == {"/eeg": 490, "/markers": 3, "/synchub/gaps": 1}
    assert got["foxgloveOk"] == {"foxglove.Log": True}
    assert got["channels"]["/eeg"] == {"encoding": "json", "schema": "synchub.eeg"}
    assert int(got["minLogTime"]) == int(utc_of(s.ref[:1])[0])  # UTC ns: the timeline starts at the session
    assert got["first"]["/eeg"]["EEG3"] == pytest.approx(float(s.data[0, 3]))
    assert got["metadata"]["synchub.export"]["log_time"] == "UTC ns"


def test_the_utc_map_is_a_line_through_the_samples_and_the_identity_without_any():
    pairs = [(10 * NS, 1_000 * NS), (20 * NS, 1_010 * NS + 1_000), (30 * NS, 1_020 * NS + 2_000)]
    m = UtcMap(pairs)
    assert m(np.array([25 * NS])).tolist() == [1_015 * NS + 1_500]
    assert UtcMap([(5, 105)])(np.array([7])).tolist() == [107] and UtcMap([])(np.array([7])).tolist() == [7]
    assert not UtcMap([]).ok


def test_a_recording_made_before_the_restructure_exports_with_utc_log_times(legacy_recording, tmp_path):
    """Older files keep exporting: their UTC sample was an OffsetEstimate of the '_utc' pseudo stream."""
    path, _ = legacy_recording
    out = tmp_path / "legacy-foxglove.mcap"
    r = subprocess.run([sys.executable, "-m", "synchub.cli", "export", str(path), "--foxglove", str(out), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["outputs"]["foxglove"]["streams"]["imu0"]["samples"] == 451
    with open(out, "rb") as f:
        times = [m.log_time for _, ch, m in make_reader(f).iter_messages(topics=["/imu0"])]
    rec = read_session(path)["streams"]["imu0"]
    meta = dict(read_session(path)["metadata"])["synchub.session"]
    offset = int(meta["agent_utc_ns"]) - int(meta["agent_mono_ns"])
    # UTC within a few ms of the session-start pair's mapping (the recorded system-clock readings jitter)
    assert np.abs(np.array(times) - (rec["ref_ns"] + offset)).max() < 20_000_000
    assert min(times) > 1_700_000_000 * NS  # not 1970: Foxglove's timeline starts at the recording


def test_gray_frames_are_foxglove_raw_images_and_nan_values_are_null(tmp_path):
    cam = StreamInfo("cam", "video", 30.0, 6, "uint8", shape=(2, 3))
    tel = StreamInfo("tlm", "telemetry", 1.0, 2, "float32", ("None", "2nd-value"))
    out = tmp_path / "f.mcap"
    ex = FoxgloveExport(out, UtcMap([(0, 1_800_000_000 * NS)]))
    ex.start("cam", cam)
    ex.start("tlm", tel)
    t = np.array([NS, 2 * NS], dtype=np.int64)
    frames = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    ex.chunk("cam", Chunk("cam", 0, frames, t, t, t, np.zeros(2, np.int64)))
    ex.chunk("tlm", Chunk("tlm", 0, np.array([[1.5, np.nan], [2.5, 3.0]], np.float32), t, t, t, np.zeros(2, np.int64)))
    ex.close()
    with open(out, "rb") as f:
        msgs = {(ch.topic, m.log_time): (sch.name, json.loads(m.data)) for sch, ch, m in make_reader(f).iter_messages()}
    name, img = msgs[("/cam", 1_800_000_001 * NS)]
    assert name == "foxglove.RawImage" and (img["width"], img["height"], img["encoding"], img["step"]) == (3, 2, "mono8", 3)
    assert base64.b64decode(img["data"]) == frames[0].tobytes()
    name, row = msgs[("/tlm", 1_800_000_001 * NS)]
    assert name == "synchub.tlm" and row["None"] == 1.5 and row["ch_2nd_value"] is None  # NaN: JSON null
