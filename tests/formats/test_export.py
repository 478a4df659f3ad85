"""``synchub export``: a session recorded by the real collector (loopback) exported to XDF (read back by pyxdf with
its own clock sync, then into MNE), CSV and .npy, through the real command; bad inputs are one line, exit 2."""

import csv
import json
import logging
import shutil
import subprocess
import sys
from datetime import datetime, timezone

import numpy as np
import pytest
from support.sessions import LABELS, NS, RATE, UTC0, record_session, utc_of

from synchub.agent.formats.export import NpyAppender


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return record_session(tmp_path_factory.mktemp("rec"))


def export(*args):
    return subprocess.run([sys.executable, "-m", "synchub.cli", "export", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_xdf_export_is_synchronized_to_utc_by_pyxdf_itself_and_loads_into_mne(session, tmp_path, caplog):
    pyxdf = pytest.importorskip("pyxdf", reason="pyxdf not installed (the bench extra)")
    path, data, ref, mref = session
    out = tmp_path / "s.xdf"
    r = export(path, "--xdf", out, "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["outputs"]["xdf"]["streams"]["eeg"] == {"samples": 490, "uncorrected": 0, "gap_samples": 10}
    assert summary["outputs"]["xdf"]["clock_offsets"] == 6
    epoch = summary["outputs"]["xdf"]["utc_epoch_ns"]
    # the whole UTC second the session began (its start metadata: this host's clock when it was recorded)
    assert epoch % NS == 0 and abs(UTC0 - epoch) < 3600 * NS
    with caplog.at_level(logging.WARNING, logger="pyxdf"):
        streams, header = pyxdf.load_xdf(str(out), synchronize_clocks=True, dejitter_timestamps=False)
    assert not [m.getMessage() for m in caplog.records if m.levelno >= logging.WARNING]
    by = {s["info"]["name"][0]: s for s in streams}
    assert set(by) == {"eeg", "markers", "silent"} and len(by["silent"]["time_stamps"]) == 0
    eeg = by["eeg"]
    assert np.array_equal(eeg["time_series"], data)
    assert [c["label"][0] for c in eeg["info"]["desc"][0]["channels"][0]["channel"]] == list(LABELS)
    # pyxdf's own clock sync maps the reference times onto UTC (seconds since the epoch second: ns resolution)
    assert np.abs(eeg["time_stamps"] - (utc_of(ref) - epoch) / NS).max() < 2e-8
    assert [m[0] for m in by["markers"]["time_series"]] == ["start", "stim", "stop"]
    assert np.abs(by["markers"]["time_stamps"] - (utc_of(mref) - epoch) / NS).max() < 2e-8
    plain, _ = pyxdf.load_xdf(str(out), synchronize_clocks=False, dejitter_timestamps=False)
    assert np.abs({s["info"]["name"][0]: s for s in plain}["eeg"]["time_stamps"] - ref / NS).max() < 1e-9

    mne = pytest.importorskip("mne", reason="mne not installed")
    # docs/DEVICES.md "MNE": the few lines users run
    sfreq = float(eeg["info"]["nominal_srate"][0])
    info = mne.create_info(list(LABELS), sfreq, ch_types="eeg")
    raw = mne.io.RawArray(eeg["time_series"].T * 1e-6, info, verbose="error")  # uV -> V
    t0 = eeg["time_stamps"][0]
    mk = by["markers"]
    raw.set_annotations(mne.Annotations(onset=mk["time_stamps"] - t0, duration=0.0,
                                        description=[m[0] for m in mk["time_series"]]))
    assert raw.n_times == 490 and raw.info["sfreq"] == RATE
    assert [a["description"] for a in raw.annotations] == ["start", "stim", "stop"]
    assert np.allclose(raw.annotations.onset, (utc_of(mref) - utc_of(ref[0])) / NS, atol=1e-6)
    epoch_s = int(header["info"]["synchub_utc_epoch_ns"][0]) / 1e9  # the stamps count from this UTC second
    raw.set_meas_date(datetime.fromtimestamp(epoch_s + t0, tz=timezone.utc))
    assert abs(raw.info["meas_date"].timestamp() - utc_of(ref[0]) / NS) < 1e-5


def test_csv_and_npy_exports_carry_every_time_and_value(session, tmp_path):
    path, data, ref, mref = session
    r = export(path, "--csv", tmp_path / "csv", "--npy", tmp_path / "npy", "--no-utc")
    assert r.returncode == 0, r.stderr
    assert "eeg: 490 samples, 10 samples lost (gap records)" in r.stdout
    with open(tmp_path / "csv" / "eeg.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["seq", "ref_ns", "unc_ns", "device_ns", "host_ns", "segment", *LABELS]
    body = np.array(rows[1:], dtype=np.float64)
    assert np.array_equal(body[:, 1].astype(np.int64), ref) and np.array_equal(body[:, 6:].astype(np.float32), data)
    assert np.array_equal(body[:, 3].astype(np.int64), ref - 3_000_000)
    with open(tmp_path / "csv" / "_gaps.csv", newline="") as f:
        gaps = list(csv.DictReader(f))
    assert [(g["stream"], g["count"], g["cause"]) for g in gaps] == [("eeg", "10", "device_drop")]
    with open(tmp_path / "csv" / "markers.csv", newline="") as f:
        assert [row[-1] for row in csv.reader(f)][1:] == ["start", "stim", "stop"]
    npy = tmp_path / "npy" / "eeg"
    assert np.array_equal(np.load(npy / "ref_ns.npy"), ref) and np.array_equal(np.load(npy / "data.npy"), data)
    assert np.load(npy / "seq.npy").tolist() == list(range(490))
    assert json.loads((npy / "info.json").read_text())["channel_labels"] == list(LABELS)
    marks = (tmp_path / "npy" / "markers" / "data.jsonl").read_text().split()
    assert [json.loads(m) for m in marks] == ["start", "stim", "stop"]
    assert np.load(tmp_path / "npy" / "silent" / "data.npy").shape == (0, 3)


def test_a_torn_session_exports_what_it_holds_and_bad_inputs_are_one_line(session, tmp_path):
    path, data, ref, _ = session
    torn = tmp_path / "torn.mcap"
    raw = path.read_bytes()
    torn.write_bytes(raw[: len(raw) * 2 // 3])
    r = export(torn, "--npy", tmp_path / "t", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["torn_parts"] == 1 and 0 < s["samples"] <= 493
    got = np.load(tmp_path / "t" / "eeg" / "ref_ns.npy")
    assert np.array_equal(got, ref[: len(got)])  # a prefix, every sample whole
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for args, msg in [((text, "--xdf", tmp_path / "x.xdf"), "is not an MCAP file"),
                      ((tmp_path / "nope.mcap", "--xdf", tmp_path / "x.xdf"), "no such file"),
                      ((path,), "nothing to write"),
                      ((path, "--xdf", path), "is an input"),
                      ((path, "--csv", text), "exists and is not a folder")]:
        r = export(*args)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.xdf").exists() and not list(tmp_path.glob(".x.xdf.partial-*"))
    shutil.rmtree(tmp_path / "t")


def test_an_npy_file_appended_a_block_at_a_time_loads_with_its_final_shape(tmp_path):
    a = NpyAppender(tmp_path / "a.npy", np.float32, (2, 3))
    for k in range(4):
        a.append(np.full((k, 2, 3), k, np.float32))
    a.close()
    got = np.load(tmp_path / "a.npy")
    assert got.shape == (6, 2, 3) and got[-1, 0, 0] == 3 and got[0, 0, 0] == 1
    big = NpyAppender(tmp_path / "b.npy", np.int64)
    big.n = 10**15  # the header keeps its size however long the file grows
    big._header(big.n)
    assert big.f.tell() == NpyAppender.HEADER
    big.close()
