"""``synchub align`` and ``synchub inspect`` on recordings synchub did not make, as a user runs them: the real
command in its own process on LabRecorder's example XDFs, on a generated WAV + CSV pair (sync pulses, known truth),
and on bad inputs (one line naming the file, exit status 2, nothing left behind); synchub's own recordings keep
their rerun, and also go through the file engine with ``--session``."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from support.paths import ROOT

from synchub.agent.cli.progress import ProgressLine
from synchub.agent.formats.mcap_read import read_session

soundfile = pytest.importorskip("soundfile", reason="soundfile is in the bench extra")
pyxdf = pytest.importorskip("pyxdf", reason="pyxdf is in the bench extra")
EXAMPLES = Path("/work/shared/data/xdf-example-files")
NS = 1_000_000_000


def synchub(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synchub.cli", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=240)


def one_line_error(r, *needles) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def examples():
    if not (EXAMPLES / "clock_resets.xdf").exists():
        pytest.skip(f"the LabRecorder example files are not here ({EXAMPLES})")
    return EXAMPLES


def test_an_example_xdf_aligns_as_pyxdf_synchronizes_it(examples, tmp_path):
    src = examples / "clock_resets.xdf"
    r = synchub("align", src, "-o", tmp_path / "out.xdf", "--json", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "Traceback" not in r.stderr  # no progress line when stderr is no terminal
    assert "BioSemi" in r.stdout and "xdf-clock-offsets" in r.stdout
    rep = json.loads((tmp_path / "r.json").read_text())
    assert {s["name"]: len(s["segments"]) for s in rep["streams"]} == {"MyMarkerStream": 2, "BioSemi": 2}
    want, _ = pyxdf.load_xdf(str(src), synchronize_clocks=True)
    got, _ = pyxdf.load_xdf(str(tmp_path / "out.xdf"), synchronize_clocks=False, dejitter_timestamps=False)
    want = {s["info"]["name"][0]: s["time_stamps"] for s in want}
    got = {s["info"]["name"][0]: s for s in got}
    for name, t in want.items():
        d = np.abs(got[name]["time_stamps"] - t)
        assert np.median(d) <= 100e-6 and np.max(d) <= 500e-6, (name, np.median(d), np.max(d))
        raw = got[f"{name}.device_time"]["time_series"][:, 0]  # the raw times are kept beside
        assert len(raw) == len(t) and not np.allclose(raw, got[name]["time_stamps"])


def test_inspect_lists_every_stream_of_several_xdfs(examples):
    r = synchub("inspect", *sorted(examples.glob("*.xdf")), "--json")
    assert r.returncode == 0, r.stderr
    rows = {s["name"]: s for s in json.loads(r.stdout)["streams"]}
    assert rows["BioSemi"]["samples"] == 27815 and rows["BioSemi"]["clock_offsets"] > 0
    assert len(rows["BioSemi"]["clock_segments"]) == 2  # the clock reset
    # its stamps go back there: two timelines (before 2026-11-28 the count was cleared before it was shown: 1)
    assert rows["BioSemi"]["clock_timelines"] == 2 and rows["MyMarkerStream"]["clock_timelines"] == 2
    assert rows["BioSemi"]["out_of_time_order"] == 0
    assert rows["SendDataString"]["type"] == "marker"
    text = synchub("inspect", examples / "minimal.xdf")
    assert text.returncode == 0 and "SendDataC" in text.stdout and "2 clock offsets" in text.stdout


def _pair(folder: Path, seconds: float = 30.0):
    from synchub.bench.files.simulate import sim_sync_pair

    return sim_sync_pair(folder, duration_s=seconds, seed=11, audio_rate=8000)


def test_a_wav_and_a_csv_with_sync_pulses_through_a_manifest(tmp_path):
    sp = _pair(tmp_path)
    (tmp_path / "in.toml").write_text('out = "aligned.mcap"\njson = "report.json"\n'
                                      '[[input]]\npath = "rig_ttl.csv"\n'
                                      '[[input]]\npath = "mic.wav"\nsync_kind = "click"\n')
    r = synchub("align", "--manifest", tmp_path / "in.toml")
    assert r.returncode == 0, r.stderr
    assert "aligned ->" in r.stdout and "mic" in r.stdout
    rep = json.loads((tmp_path / "report.json").read_text())
    mic = next(s for s in rep["streams"] if s["name"] == "mic")
    assert mic["method"] == "edges" and abs(mic["drift_ppm"] + 100.0) < 25.0  # 100 ppm apart; 30 s of 2 ms samples
    back = read_session(tmp_path / "aligned.mcap")["streams"]["mic"]
    step = slice(None, None, 997)
    truth = sp.wav_to_table(back["device_ns"][step])
    assert np.max(np.abs(back["ref_ns"][step] - truth)) < NS / sp.table_rate  # within a sample of the coarser
    # the command line's flags win over the manifest's: the reference named by its stream (the WAV's stem), XDF out
    r = synchub("align", "--manifest", tmp_path / "in.toml", "--ref", "mic", "-o", tmp_path / "o.xdf")
    assert r.returncode == 0, r.stderr
    assert "reference: the clock of" in r.stdout and "mic.wav" in r.stdout.splitlines()[0]
    streams, _ = pyxdf.load_xdf(str(tmp_path / "o.xdf"), synchronize_clocks=False, dejitter_timestamps=False)
    assert {s["info"]["name"][0] for s in streams} >= {"mic", "rig_ttl", "mic.device_time"}


def test_inspect_a_wav_with_per_file_flags(tmp_path):
    sp = _pair(tmp_path, 20.0)
    r = synchub("inspect", sp.wav, "--sync-kind", "click", "--json")
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)["streams"]
    assert row["name"] == "mic" and row["samples"] == 20 * 8000 and row["sync_pulses"] >= 15


def _bad_inputs(folder: Path, examples_dir: Path | None) -> dict[str, tuple[Path, str]]:
    bad = {}
    p = folder / "notes.xdf"
    p.write_text("these are my notes, not an XDF file\n")
    bad["text named .xdf"] = (p, "not an XDF file")
    p = folder / "empty.xdf"
    p.write_bytes(b"")
    bad["empty"] = (p, "empty file")
    if examples_dir is not None:
        whole = (examples_dir / "minimal.xdf").read_bytes()
        p = folder / "cut.xdf"
        p.write_bytes(whole[: len(whole) * 2 // 3])
        bad["truncated XDF"] = (p, "cut.xdf:")
    p = folder / "log.csv"
    p.write_text("when,value\n1,2\n2,3\n")
    bad["CSV with no time column"] = (p, "no time column")
    p = folder / "silence.wav"
    soundfile.write(p, np.zeros((0, 1), dtype=np.float32), 8000)
    bad["zero-length WAV"] = (p, "silence.wav:")
    p = folder / "photo.jpg"
    p.write_bytes(b"\0\0\0\x18ftypmp42")
    bad["unsupported"] = (p, "unsupported file type")
    p = folder / "app.log"
    p.write_text("Nov 28 07:00:01 host systemd[1]: Started session.\n")
    bad["a .log that is not PsychoPy's"] = (p, "not a PsychoPy log")
    p = folder / "night.edf"
    p.write_text("exported from the sleep lab, see the PDF\n" * 10)
    bad["text named .edf"] = (p, "not an EDF or BDF file")
    p = folder / "eeg.vhdr"
    p.write_text("Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nDataFile=eeg.eeg\n"
                 "NumberOfChannels=2\nSamplingInterval=2000\n")
    bad["a BrainVision header without its data"] = (p, "the data file eeg.eeg it names is missing")
    bad["missing"] = (folder / "gone.xdf", "no such file")
    return bad


def test_bad_inputs_are_one_line_and_leave_nothing_behind(tmp_path):
    examples_dir = EXAMPLES if (EXAMPLES / "minimal.xdf").exists() else None
    sp = _pair(tmp_path, 10.0)
    cases = _bad_inputs(tmp_path, examples_dir)
    before = sorted(os.listdir(tmp_path))
    runs = [("align", sp.table, path, "-o", tmp_path / "out.xdf", "--json", tmp_path / "r.json")
            for path, _ in cases.values()] + [("inspect", path) for path, _ in cases.values()]
    with ThreadPoolExecutor(2) as pool:  # two programs at a time (the machine's two cores)
        done = list(pool.map(lambda a: synchub(*a), runs))
    for (what, (path, needle)), r, ri in zip(cases.items(), done[:len(cases)], done[len(cases):], strict=True):
        line = one_line_error(r, "synchub align:", needle)
        assert path.name in line, (what, line)
        one_line_error(ri, "synchub inspect:", path.name)
    assert sorted(os.listdir(tmp_path)) == before  # no output, no partial file
    with ThreadPoolExecutor(2) as pool:
        r = list(pool.map(lambda a: synchub(*a), [("align", sp.table, "-o", sp.table),
                                                   ("align", sp.table, "-o", tmp_path / "out.txt"),
                                                   ("align", sp.table, "--ref", "nope"), ("align", sp.table, "--live"),
                                                   ("align",), ("align", sp.table, "--rate-hz", "fast")]))
    for ri, needle in zip(r, ("is also an input", "must end in .xdf or .mcap", "no stream 'nope'", "--live",
                              "no inputs"), strict=False):
        one_line_error(ri, needle)
    assert r[-1].returncode == 2  # argparse: a usage line


def test_synchub_recordings_keep_their_rerun_and_stream_through_the_engine(tmp_path, legacy_recording):
    path, expected_file = legacy_recording
    src = tmp_path / "rig.mcap"
    shutil.copy(path, src)
    r = synchub("align", src, "-o", tmp_path / "copy.mcap", "--json", tmp_path / "a.json")
    assert r.returncode == 0, r.stderr
    assert "re-corrected recording ->" in r.stdout and "moved" in r.stdout  # the rerun, as before
    summary = json.loads((tmp_path / "a.json").read_text())
    assert summary["session"] == str(src) and summary["evidence"] > 0
    expected = np.load(expected_file)
    copy, orig = read_session(tmp_path / "copy.mcap"), read_session(src)
    assert len(copy["meta"]) == len(orig["meta"]) and len(copy["gaps"]) == len(orig["gaps"])
    for name in ("imu0", "sync", "tlm0"):  # streamed two-sided: the numbers the in-memory rerun gave
        assert np.array_equal(copy["streams"][name]["ref_ns"], expected[f"align_{name}_ref_ns"]), name
        assert np.array_equal(copy["streams"][name]["unc_ns"], expected[f"align_{name}_unc_ns"]), name
        assert np.array_equal(copy["streams"][name]["device_ns"], orig["streams"][name]["device_ns"])
    r = synchub("align", src, "--live", "-o", tmp_path / "live.mcap", "--json", tmp_path / "l.json")
    assert r.returncode == 0, r.stderr
    live = read_session(tmp_path / "live.mcap")["streams"]["imu0"]  # causal, in memory, as before
    assert not np.array_equal(live["ref_ns"], copy["streams"]["imu0"]["ref_ns"])
    assert len(live["ref_ns"]) == len(live["seq"])  # every message re-corrected
    assert [s["name"] for s in json.loads((tmp_path / "l.json").read_text())["streams"]] == ["imu0", "sync", "tlm0"]
    r = synchub("align", src, "--session", "-o", tmp_path / "engine.mcap")
    assert r.returncode == 0, r.stderr
    back = read_session(tmp_path / "engine.mcap")["streams"]
    assert back["imu0"]["method"].size and len(back["imu0"]["ref_ns"]) == len(expected["align_imu0_ref_ns"])
    d = np.abs(back["imu0"]["ref_ns"] - expected["align_imu0_ref_ns"])
    assert np.max(d) <= 1_000, np.max(d)  # the streaming rerun lands where the in-memory one did (ns)
    r = synchub("inspect", src)
    assert r.returncode == 0 and "imu0" in r.stdout and "gap records" in r.stdout


def test_the_progress_line_shows_only_on_a_terminal_after_a_while():
    now = [0.0]
    out = io.StringIO()
    p = ProgressLine(out, enabled=True, delay_s=1.0, every_s=0.2, clock=lambda: now[0])
    p("evidence", "/data/long.xdf", 0.1)
    assert out.getvalue() == ""  # a short run shows nothing
    now[0] = 1.5
    p("evidence", "/data/long.xdf", 0.25)
    assert out.getvalue() == "\revidence long.xdf  25.0 %"
    now[0] = 1.6
    p("evidence", "/data/long.xdf", 0.3)  # too soon after the last
    now[0] = 2.0
    p("write", "/data/log.csv", None)
    assert out.getvalue().endswith("\rwrite log.csv" + " " * 12)
    p.close()
    assert out.getvalue().endswith("\r" + " " * 13 + "\r")
    quiet = io.StringIO()
    q = ProgressLine(quiet, clock=lambda: 99.0)  # StringIO is no terminal
    q("write", "x.wav", 0.5)
    q.close()
    assert quiet.getvalue() == ""


def test_a_sound_file_without_soundfile_names_the_extra(tmp_path):
    wav = tmp_path / "mic.wav"
    soundfile.write(wav, np.zeros((800, 1), dtype=np.float32), 8000)
    code = ("import sys\nsys.modules['soundfile'] = None\nfrom synchub.cli import main\n"
            f"sys.exit(main(['align', {str(wav)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    one_line_error(r, "synchub align:", "soundfile", "synchub[audio]")


def test_decimated_keeps_an_even_share_within_its_cap():
    from synchub.agent.cli.rerun import Decimated

    d = Decimated(cap=100)
    x = np.arange(1000)
    for a in range(0, 1000, 37):  # pieces of any length
        d.add(x[a:a + 37])
    assert d.held <= 100 and np.array_equal(d.values(), np.arange(0, 1000, d.stride))
    small = Decimated(cap=100)
    small.add(np.array([5.0, 1.0, 3.0]))
    assert small.median() == 3.0 and Decimated().median() is None
