"""``synchub align SESSION.mcap --json OUT`` reports, per stream, the stored latency its aligner was corrected by (the
agent's ``_latency`` record): read back from an MCAP the real collector wrote, two-sided and ``--live``."""

import json
import subprocess
import sys

from support.sessions import record_session

from synchub.agent.align.latency import Latency, LatencyStore, PairKey
from synchub.agent.pipeline.latency_io import SessionLatency, save_store

SYNCHUB = [sys.executable, "-c", "import sys\nfrom synchub.cli import main\nsys.exit(main(sys.argv[1:]))"]
EEG = PairKey("eeg", "other", "markers", "marker")


def test_align_reports_the_stored_latency_each_stream_was_corrected_by(tmp_path):
    store = tmp_path / "latency.json"
    save_store(store, LatencyStore({EEG: Latency(4_250_000, 310_000, 42, session="s-old",
                                                 measured_utc="2026-11-20T10:00:00Z")}))
    cal = SessionLatency(store, {"eeg": (EEG, False)}, session="s-new")  # what the agent records at start
    session = record_session(tmp_path / "rec", meta=(("_latency", cal.describe()),))
    for extra in ([], ["--live"]):
        out = tmp_path / f"report{len(extra)}.json"
        r = subprocess.run([*SYNCHUB, "align", str(session.path), "--json", str(out), *extra],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        rep = {s["name"]: s for s in json.loads(out.read_text())["streams"]}
        lat = rep["eeg"]["latency"]
        assert lat["stored_latency_ns"] == 4_250_000 and lat["stored_sigma_ns"] == 310_000
        assert lat["stored_session"] == "s-old" and lat["stored_windows"] == 42 and not lat["trigger_wired"]
        assert "corrected by it" in lat["use"] and lat["calibration_file"] == str(store)
        assert rep["markers"]["latency"] is None  # not aligned: nothing to report
        assert "aligner latency 4.25 ms stored by session s-old" in r.stdout


def test_a_wired_stream_reports_its_fallback_prior_and_what_it_measured(tmp_path):
    store = tmp_path / "latency.json"
    save_store(store, LatencyStore({EEG: Latency(-2_000_000, 500_000, 20, session="s-old")}))
    cal = SessionLatency(store, {"eeg": (EEG, True)}, session="s-new")
    cal.measured = {"eeg": {"pair": EEG.label(), "latency_ns": -1_900_000, "sigma_ns": 400_000, "n": 12,
                            "rejected": 1}}  # what finish() leaves (the stop's record)
    session = record_session(tmp_path / "rec", meta=(("_latency", cal.describe()),))
    out = tmp_path / "report.json"
    r = subprocess.run([*SYNCHUB, "align", str(session.path), "--json", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lat = {s["name"]: s for s in json.loads(out.read_text())["streams"]}["eeg"]["latency"]
    assert lat["trigger_wired"] and lat["stored_latency_ns"] == -2_000_000 and "fallback" in lat["use"]
    assert lat["measured_this_session"]["latency_ns"] == -1_900_000
