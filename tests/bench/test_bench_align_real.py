"""`synchub bench align --real`: the aligner on a tiny held-out subset of the real-signal corpus writes the
documented JSON (the figures themselves belong in bench/results/align-real.json, not here)."""

import json

import numpy as np
import pytest

from synchub.bench.align import real as B
from synchub.cli import main
from synchub.models import corpus
from synchub.models.corpus import sources as S
from synchub.models.corpus import split as SP

FIELDS = {"events", "mapped", "signed_median_ms", "median_abs_ms", "p95_abs_ms", "within_5ms_pct", "drift_err_ppm",
          "drift_signed_err_ppm", "sigma_median_ms", "cover_1sigma_pct", "cover_2sigma_pct", "abstain_pct",
          "abstain_reasons"}


def _needs_heldout():
    why = [m for m in (S.missing(v) for v in SP.VOICES["heldout"]) if m]
    if why or not SP.sounds("heldout"):
        pytest.skip("; ".join(why) or "no held-out sound effects installed (sound-theme-freedesktop, ...)")


def test_bench_align_real_writes_the_documented_json(tmp_path, capsys):
    _needs_heldout()
    out = tmp_path / "align-real.json"
    assert main(["bench", "align", "--real", "--speech", "1", "--sounds", "1", "--duration", "40", "--cache",
                 str(tmp_path / "cache"), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["corpus"] == "heldout" and doc["recordings"] == ["heldout-speech-0000", "heldout-events-0000"]
    keys = [(r["pair"], r["mode"], r["method"]) for r in doc["results"]]
    pairs = ("Speech+Markers", "Sounds+Markers", "Sounds+IMU", "Sounds+Video")
    assert keys == [(p, mode, B.method_label(m, mode)) for p in pairs for mode in B.MODES for m in B.METHODS]
    for r in doc["results"] + doc["per_recording"]:
        assert FIELDS <= set(r)
        for k in ("within_5ms_pct", "cover_1sigma_pct", "cover_2sigma_pct", "abstain_pct"):
            assert r[k] is None or 0.0 <= r[k] <= 100.0
        assert r["mapped"] <= r["events"]
    by = {(r["pair"], r["mode"], r["method"]): r for r in doc["results"]}
    # functional sanity: arrival stamps are late by the marker link's latency (>= 0.5 ms, < 50 ms), the naive
    # file-mode mapping is off by the clock offset (up to 1.5 s)
    live = by[("Speech+Markers", "live", "arrival")]
    assert 0.5 <= live["signed_median_ms"] <= 50.0 and live["events"] >= live["mapped"] >= 5
    assert by[("Speech+Markers", "file", "naive")]["median_abs_ms"] > 20.0
    assert by[("Speech+Markers", "live", "arrival")]["sigma_median_ms"] is None  # arrival reports no sigma
    assert len(doc["per_recording"]) == (1 + 3) * len(B.MODES) * len(B.METHODS)
    # coverage per modality pair, the unit the sigma table calibrates: speech and sound markers pooled as audio-text
    cov = doc["coverage"]
    assert set(cov) == {"all", "audio-imu", "audio-text", "audio-video"}
    hyb = {p: by[(p, "live", "hybrid")] for p in pairs}
    assert cov["audio-text"]["mapped"] == hyb["Speech+Markers"]["mapped"] + hyb["Sounds+Markers"]["mapped"]
    assert cov["all"]["events"] == sum(r["events"] for r in hyb.values()) and cov["all"]["outcomes"] == 4
    for key, name in (("audio-imu", "Sounds+IMU"), ("audio-video", "Sounds+Video")):
        assert cov[key]["cover_1sigma_pct"] == hyb[name]["cover_1sigma_pct"]
        assert cov[key]["cover_2sigma_pct"] == hyb[name]["cover_2sigma_pct"]
    out_text = capsys.readouterr().out
    assert "Speech+Markers" in out_text and "coverage per modality pair" in out_text


def test_events_are_judged_where_each_target_sees_them(tmp_path):
    _needs_heldout()
    spec = corpus.plan("heldout", 1, "events", 20.0)[0]
    rec = corpus.render(spec, corpus.ClipCache(tmp_path))
    d, t = B.target_events(rec, "text")  # markers: their stamps, meaning the sound's start at the microphone
    assert np.array_equal(t, rec.events["onset_ns"]) and len(d) == len(t)
    d, t = B.target_events(rec, "imu")  # the IMU: the physical event on its own clock
    assert np.array_equal(t, rec.events["cause_ns"])
    assert np.array_equal(d, rec.tracks["imu"].clock.to_device(t))


def test_bad_real_arguments_are_user_errors(capsys):
    assert main(["bench", "align", "--real", "--methods", "arrival,telepathy"]) == 2
    assert "telepathy" in capsys.readouterr().err
    assert main(["bench", "align", "--real", "--modes", "offline"]) == 2
    assert "live, file" in capsys.readouterr().err
    assert main(["bench", "align", "--real", "--duration", "5"]) == 2
    assert main(["bench", "align"]) == 2
    assert "--real" in capsys.readouterr().err
    # the sigma is fitted on the calibration split only, never on the held-out split it is judged on
    assert main(["bench", "align", "--real", "--fit-sigma", "/nonexistent/t.json"]) == 2
    assert "--split calibration" in capsys.readouterr().err
    assert main(["bench", "align", "--real", "--split", "calibration", "--methods", "classical", "--fit-sigma",
                 "/nonexistent/t.json"]) == 2


def test_fit_sigma_writes_a_table_from_the_calibration_split(tmp_path, capsys):
    why = [m for m in (S.missing(v) for v in SP.voices("calibration", installed=False)) if m]
    if why:
        pytest.skip("; ".join(why))
    table = tmp_path / "sigma.json"
    assert main(["bench", "align", "--real", "--split", "calibration", "--speech", "1", "--sounds", "0",
                 "--duration", "60", "--methods", "hybrid", "--modes", "live", "--cache", str(tmp_path / "cache"),
                 "--fit-sigma", str(table), "--quiet"]) == 0
    doc = json.loads(table.read_text())
    assert doc["split"] == "calibration" and doc["recordings"] == ["calibration-speech-0000"] and doc["date"]
    (p,) = doc["pairs"]
    assert p["pair"] == ["audio", "text"] and p["scale"] > 0 and p["floor_ms"] >= 0 and p["events"] >= 5
    assert 55.0 <= p["cover_1sigma_pct_fitted"] <= 85.0  # on the data it was fitted on, by construction
    # the window sigmas' scales, fitted first (the hybrid weighs its two estimates by them; a minute of speech may
    # have no window either method answered: then none)
    assert all(w["scale"] > 0 and w["method"] in ("classical", "neural") and w["events"] > 0 for w in doc["windows"])
    assert "sigma calibration: audio-text" in capsys.readouterr().out
