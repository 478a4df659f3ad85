"""``synchub align``'s engine end to end on files with their truth: sync pulses in a CSV channel and a click train
in a WAV on different drifting clocks (TPrime-style edges, the agent's clock model), outputs read back with pyxdf and
mcap, the report, the plot, the reference, and errors that leave nothing behind."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from synchub.agent.align.files.engine import AlignError, FileAlignment, InputSpec, align_files
from synchub.agent.clock.kalman import least_squares_bound
from synchub.agent.formats.mcap_read import read_session
from synchub.agent.formats.readers.base import InputError, InputOptions
from synchub.bench.files.simulate import sim_sync_pair

pytest.importorskip("soundfile", reason="soundfile is in the bench extra")
pyxdf = pytest.importorskip("pyxdf", reason="pyxdf is in the bench extra")
NS = 1_000_000_000
CLICK = InputOptions(sync_kind="click")


def _errors(sp, fa):
    """Mapped-time errors of the WAV's clock on the table's, the optimal linear smoother's on the same pairs."""
    link = fa.inputs[1].link
    pts = np.arange(1 * NS, 118 * NS, 50_000_000, dtype=np.int64)
    g, _ = link.map(pts, np.zeros(len(pts), dtype=np.int64))
    err = g - sp.wav_to_table(pts)
    pairs = link.pairs[0]
    bias = (pairs.ref - pairs.src) - (sp.wav_to_table(pairs.src) - pairs.src)  # each pair's own error
    mse, _ = least_squares_bound(pairs.src, 1.0, 0.0, pts, edge_bias=bias.astype(float))
    return err, float(np.sqrt(mse.mean())), pairs


@pytest.mark.parametrize("kind,periodic", [("ttl", False), ("ttl", True), ("photodiode", False)])
def test_sync_edges_map_within_a_sample_and_the_least_squares_bound(tmp_path, kind, periodic):
    sp = sim_sync_pair(tmp_path, duration_s=120.0, kind=kind, periodic=periodic, seed=4)
    fa = FileAlignment([InputSpec([str(sp.table)]), InputSpec([str(sp.wav)], CLICK)])
    fa.gather()
    err, bound, pairs = _errors(sp, fa)
    period = NS / sp.table_rate  # the coarser stream's sample period
    rms = float(np.sqrt(np.mean(err.astype(float) ** 2)))
    assert np.max(np.abs(err)) <= period
    assert rms <= 1.2 * bound + 1_000, (rms, bound)
    assert pairs.n >= 110 and pairs.how == ("prior" if periodic else "intervals")


def test_outputs_keep_raw_times_and_read_back_with_pyxdf_and_mcap(tmp_path):
    sp = sim_sync_pair(tmp_path, duration_s=40.0, seed=5, audio_rate=8000)
    specs = [InputSpec([str(sp.table)]), InputSpec([str(sp.wav)], CLICK)]
    rep = align_files(specs, out=tmp_path / "out.xdf", json_path=tmp_path / "r.json", plot_path=tmp_path / "p.png")
    assert json.loads((tmp_path / "r.json").read_text())["streams"] == json.loads(json.dumps(rep["streams"],
                                                                                           default=str))
    assert (tmp_path / "p.png").stat().st_size > 10_000
    streams, _ = pyxdf.load_xdf(str(tmp_path / "out.xdf"), synchronize_clocks=False, dejitter_timestamps=False)
    by = {s["info"]["name"][0]: s for s in streams}
    assert set(by) == {"rig_ttl", "rig_ttl.device_time", "mic", "mic.device_time"}
    mic, raw = by["mic"], by["mic.device_time"]
    assert len(mic["time_stamps"]) == 40 * 8000 and np.array_equal(mic["time_stamps"], raw["time_stamps"])
    assert np.allclose(raw["time_series"][:3, 0], np.arange(3) / 8000)  # the WAV's own sample clock, kept
    truth = sp.wav_to_table((raw["time_series"][::1000, 0] * NS).astype(np.int64)) / NS
    assert np.max(np.abs(mic["time_stamps"][::1000] - truth)) < 1.0 / sp.table_rate
    mic_rep = next(s for s in rep["streams"] if s["name"] == "mic")
    assert mic_rep["method"] == "edges" and mic_rep["link"]["via"] == "mic -> rig_ttl"
    assert abs(mic_rep["drift_ppm"] - (-60.0 - 40.0)) < 10.0  # the WAV's clock runs 100 ppm slower than the table's
    assert mic_rep["uncertainty_us"]["median"] > 0
    FileAlignment(specs).write(tmp_path / "out.mcap")
    back = read_session(tmp_path / "out.mcap")
    assert np.array_equal(back["streams"]["mic"]["ref_ns"], np.rint(mic["time_stamps"] * NS).astype(np.int64))
    assert back["streams"]["mic"]["method"][0] == "triggers"


def test_the_reference_can_be_the_wav(tmp_path):
    sp = sim_sync_pair(tmp_path, duration_s=60.0, seed=6)
    fa = FileAlignment([InputSpec([str(sp.table)]), InputSpec([str(sp.wav)], CLICK)], ref="mic")
    rep = fa.write(None)
    assert rep["reference"] == "the clock of " + str(sp.wav)
    link = fa.inputs[0].link
    d = np.arange(2, 58, 1, dtype=np.int64) * NS  # table times
    g, _ = link.map(d, np.zeros(len(d), dtype=np.int64))
    wav_truth = sp.clock_b.to_device(sp.clock_a.to_true(d, 0))
    assert np.max(np.abs(g - wav_truth)) < NS / sp.table_rate


def test_a_bad_input_leaves_no_output_behind(tmp_path):
    sp = sim_sync_pair(tmp_path, duration_s=20.0, seed=7)
    bad = tmp_path / "broken.xdf"
    bad.write_text("not an xdf")
    out = tmp_path / "out.xdf"
    with pytest.raises(InputError, match=r"broken\.xdf: not an XDF file"):
        align_files([InputSpec([str(sp.table)]), InputSpec([str(bad)])], out=out)
    quiet = tmp_path / "quiet.csv"
    quiet.write_text("time,v\n" + "".join(f"{i / 100},{np.sin(i)}\n" for i in range(500)))
    with pytest.raises(AlignError, match=r"quiet\.csv: nothing to align on \(aligner quiet vs rig_ttl: "):
        align_files([InputSpec([str(sp.table)]), InputSpec([str(quiet)])], out=out)
    assert sorted(os.listdir(tmp_path)) == sorted(["broken.xdf", "mic.wav", "quiet.csv", "rig_ttl.csv"])
    with pytest.raises(AlignError, match="no stream 'nope'"):
        FileAlignment([InputSpec([str(sp.table)])], ref="nope").gather()
    with pytest.raises(ValueError, match="must end in .xdf or .mcap"):
        FileAlignment([InputSpec([str(sp.table)])]).write(tmp_path / "out.txt")


def test_align_none_takes_a_files_clock_as_the_references(tmp_path):
    sp = sim_sync_pair(tmp_path, duration_s=20.0, seed=8)
    quiet = tmp_path / "log.csv"
    quiet.write_text("time,event\n1.5,start\n3.25,stop\n")
    fa = FileAlignment([InputSpec([str(sp.table)]), InputSpec([str(quiet)], InputOptions(align="none"))])
    rep = fa.write(tmp_path / "o.xdf")
    log = next(s for s in rep["streams"] if s["name"] == "log")
    assert log["first_ref_s"] == 1.5 and log["offset_ms"] == 0.0


def test_inspect_lists_what_the_inputs_hold(tmp_path):
    sp = sim_sync_pair(tmp_path, duration_s=20.0, seed=9)
    rep = FileAlignment([InputSpec([str(sp.table)]), InputSpec([str(sp.wav)], CLICK)]).inspect()
    rows = {r["name"]: r for r in rep["streams"]}
    assert rows["mic"]["samples"] == 20 * 16000 and rows["mic"]["sync_pulses"] == rows["rig_ttl"]["sync_pulses"]
    assert abs(rows["rig_ttl"]["measured_rate_hz"] - 500.0) < 1e-6  # on its own clock
