"""What a marker log's lines mean, said to ``synchub align``: ``--marker SENSES[~][>STREAMS][@MS[/MS]]:REGEX`` or
a manifest input's ``markers`` (the agent's ``[[stream]] markers`` tables).

Before: the file engine read every log with the default words only.  A log of "beep" lines (a word the defaults leave
out) was refused with "configure the stream's markers", which nothing in ``synchub align`` could do; a rig whose
sound comes a known latency after its line was mapped that much late, with no way to say so."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.signals import tone_bursts

from synchub.agent.align.files.engine import AlignError, FileAlignment, InputOptions, InputSpec
from synchub.agent.align.markers import MarkerSemantics, rules_from
from synchub.agent.cli.inputs import marker_rule
from synchub.agent.core.units import NS
from synchub.cli import main

sf = pytest.importorskip("soundfile", reason="soundfile is in the bench extra")
RATE = 16000
OFFSET_S, DRIFT = 0.3127, 80e-6  # the log's clock: ahead, and fast


def _rig(tmp_path, word: str = "beep", latency_s: float = 0.0):
    """A WAV of tone bursts and a log of ``word`` lines, each stamped ``latency_s`` before its sound."""
    x, onsets = tone_bursts(RATE, 60.0, seed=4)
    sf.write(tmp_path / "mic.wav", x, RATE)
    logged = (onsets - latency_s) * (1.0 + DRIFT) + OFFSET_S
    (tmp_path / "log.csv").write_text("time,event\n" + "".join(f"{t:.6f},{word}\n" for t in logged))
    return onsets, logged


def _errors_ms(tmp_path, logged, truth_s, markers=()) -> np.ndarray:
    fa = FileAlignment([InputSpec([str(tmp_path / "mic.wav")]),
                        InputSpec([str(tmp_path / "log.csv")], InputOptions(markers=markers))])
    fa.gather()
    dev = np.rint(logged * NS).astype(np.int64)
    mapped, _ = fa.inputs[1].link.map(dev, np.zeros(len(dev), dtype=np.int64))
    return (mapped - np.rint(truth_s * NS)) / 1e6


def test_a_log_of_words_the_defaults_leave_out_is_aligned_once_they_are_named(tmp_path, capsys):
    onsets, logged = _rig(tmp_path)
    code = main(["align", str(tmp_path / "mic.wav"), str(tmp_path / "log.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--marker SENSES:REGEX" in err[0] and "'beep'" in err[0], err
    code = main(["align", str(tmp_path / "mic.wav"), str(tmp_path / "log.csv"), "--marker", "audible:beep",
                 "--json", str(tmp_path / "r.json")])
    assert code == 0, capsys.readouterr().err
    row = next(s for s in json.loads((tmp_path / "r.json").read_text())["streams"] if s["name"] == "log")
    assert row["method"] in ("hybrid", "classical")
    err = _errors_ms(tmp_path, logged, onsets, [{"pattern": "beep", "senses": ["audible"]}])
    assert np.max(np.abs(err)) < 3.0, err


def test_lines_beyond_the_recording_are_mapped_with_the_drift_s_uncertainty_growing(tmp_path):
    """A log that goes on 120 s past a 60 s recording (the recorder stopped first): its lines there are mapped by the
    line through the recording's windows, whose drift is known to its 1-sigma only; their uncertainty grows with
    the distance (a held-out log with its WAV cut to a minute was mapped 17-24 ms off beyond it under 8-10 ms), and
    covers where they land."""
    onsets, logged = _rig(tmp_path)
    period = float(np.median(np.diff(onsets)))
    beyond = onsets[-1] + period * np.arange(1, int(120 / period))  # sounds after the recording ended
    lines = np.concatenate([logged, beyond * (1.0 + DRIFT) + OFFSET_S])
    (tmp_path / "log.csv").write_text("time,event\n" + "".join(f"{t:.6f},beep\n" for t in lines))
    fa = FileAlignment([InputSpec([str(tmp_path / "mic.wav")]),
                        InputSpec([str(tmp_path / "log.csv")], InputOptions(markers=[{"pattern": "beep",
                                                                                     "senses": ["audible"]}]))])
    fa.gather()
    link = fa.inputs[1].link
    dev = np.rint(lines * NS).astype(np.int64)
    mapped, unc = link.map(dev, np.zeros(len(dev), dtype=np.int64))
    inside, far = unc[: len(logged)], unc[-1]
    last = max(r[0] for r in link.residuals)
    assert link.drift_sigma_ppm and far >= (dev[-1] - last) * link.drift_sigma_ppm * 1e-6 > 0
    assert far > np.median(inside) and np.all(np.diff(unc[len(logged):]) >= 0)
    err = np.abs(mapped - np.rint(np.concatenate([onsets, beyond]) * NS))[len(logged):]
    assert np.all(err <= 2 * unc[len(logged):])


def test_a_rule_s_latency_moves_the_lines_before_their_sounds(tmp_path):
    """Each line stamped 25 ms before its sound (a sound card's buffer): without the latency the lines are mapped
    onto the sounds, 25 ms late; with it, where they were stamped."""
    onsets, logged = _rig(tmp_path, latency_s=0.025)
    stamped = onsets - 0.025
    naive = _errors_ms(tmp_path, logged, stamped, [{"pattern": "beep", "senses": "audible"}])
    assert abs(np.median(naive) - 25.0) < 3.0, np.median(naive)
    told = _errors_ms(tmp_path, logged, stamped, [{"pattern": "beep", "senses": "audible", "latency_ms": 25.0}])
    assert np.max(np.abs(told)) < 3.0, told


def test_a_manifest_input_says_what_its_lines_mean(tmp_path, capsys):
    _rig(tmp_path, word="cue 3 go")
    (tmp_path / "m.toml").write_text(
        '[[input]]\npath = "mic.wav"\n\n[[input]]\npath = "log.csv"\n'
        'markers = [{pattern = "\\\\bcue\\\\b", senses = "audible", spread_ms = 2.0}]\n')
    assert main(["align", "--manifest", str(tmp_path / "m.toml"), "--json", str(tmp_path / "r.json")]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["streams"]
    assert next(s for s in rows if s["name"] == "log")["method"] in ("hybrid", "classical")
    capsys.readouterr()
    (tmp_path / "bad.toml").write_text('[[input]]\npath = "log.csv"\nmarkers = [{pattern = "cue", senses = "loud"}]\n')
    assert main(["align", "--manifest", str(tmp_path / "bad.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "log.csv: markers:" in err[0] and "audible, visible, motion" in err[0], err


@pytest.mark.parametrize(("text", "rule"), [
    ("audible:beep", {"pattern": "beep", "senses": ("audible",)}),
    ("visible+motion@16/4:flip", {"pattern": "flip", "senses": ("visible", "motion"), "latency_ms": 16.0,
                                  "spread_ms": 4.0}),
    ("visible~:fade", {"pattern": "fade", "senses": ("visible",), "smooth": True}),
    ("motion>imu+video@5:lever", {"pattern": "lever", "senses": ("motion",), "streams": ("imu", "video"),
                                  "latency_ms": 5.0}),
    ("visible~>image:fa:de", {"pattern": "fa:de", "senses": ("visible",), "smooth": True, "streams": ("image",)}),
])
def test_a_rule_s_streams_and_a_slow_rise_are_said_on_the_command_line(text, rule):
    """What a manifest's ``markers`` could say and ``--marker`` could not (a rule's ``streams``, ``smooth``)."""
    assert marker_rule(text) == rule
    r = MarkerSemantics(rules_from([marker_rule(text)])).rules[0]
    assert r.streams == rule.get("streams", ()) and r.smooth == rule.get("smooth", False)


@pytest.mark.parametrize("rule, why", [("beep", "no ':REGEX'"), ("loud:beep", "senses must be some of"),
                                       ("audible:(beep", "not a regular expression"),
                                       ("audible@soon:beep", "could not convert"),
                                       ("motion>imu+vidoe:lever", "streams must be some of")])
def test_a_bad_rule_on_the_command_line_is_one_line(tmp_path, capsys, rule, why):
    _rig(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["align", str(tmp_path / "mic.wav"), str(tmp_path / "log.csv"), "--marker", rule])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and why in err[-1] and "--marker" in err[-1] and "Traceback" not in "".join(err)


def test_rules_that_are_not_rules_are_refused_where_the_input_is_made():
    with pytest.raises(AlignError, match=r"log\.csv: markers: marker rule 0: needs 'pattern' and 'senses'"):
        InputSpec(["log.csv"], InputOptions(markers=[{"pattern": "beep"}]))
    with pytest.raises(ValueError, match="markers: a list of marker rules"):
        InputOptions(markers="beep")


def test_a_column_of_numeric_event_codes_read_as_markers(tmp_path):
    """A rig's log of trigger codes (``--type marker``; an LSL marker stream of int codes alike): its lines were
    '[1.]' to the marker rules, so no rule for '^1$' matched and the neural path alone tied it, 16 ms off."""
    onsets, logged = _rig(tmp_path)
    codes = np.where(np.arange(len(logged)) % 2, 12, 1)
    (tmp_path / "log.csv").write_text("time,code\n" + "".join(f"{t:.6f},{c}\n" for t, c in zip(logged, codes, strict=True)))
    fa = FileAlignment([InputSpec([str(tmp_path / "mic.wav")]), InputSpec([str(tmp_path / "log.csv")], InputOptions(
        type="marker", markers=[{"pattern": "^(1|12)$", "senses": "audible"}]))])
    fa.gather()
    dev = np.rint(logged * NS).astype(np.int64)
    mapped, _ = fa.inputs[1].link.map(dev, np.zeros(len(dev), dtype=np.int64))
    assert np.max(np.abs(mapped - np.rint(onsets * NS))) < 3e6
    assert not any("matches a marker rule" in n for n in fa.inputs[1].link.notes)


def test_of_a_log_s_text_columns_the_one_that_names_the_sounds_ties_it(tmp_path, capsys):
    """A trial log with a condition column before the stimulus column: the engine tied the condition's lines (no
    rule matches 'congruent': the neural path alone, 108 ms late on these tones); now the column whose lines the
    rules say the microphone hears.  A log whose lines no rule matches is still tied, with a warning."""
    onsets, logged = _rig(tmp_path)
    (tmp_path / "log.csv").write_text("trial,time,condition,stim\n" + "".join(
        f"{i},{t:.6f},congruent,tone\n" for i, t in enumerate(logged)))
    assert main(["align", str(tmp_path / "mic.wav"), str(tmp_path / "log.csv"), "--json", str(tmp_path / "r.json")]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert next(s for s in rep["streams"] if s["name"] == "log.stim")["link"]["via"] == "log.stim -> mic"
    assert not rep["warnings"]
    err = _errors_ms(tmp_path, logged, onsets)
    assert np.max(np.abs(err)) < 3.0, err
    (tmp_path / "log.csv").write_text("time,condition\n" + "".join(f"{t:.6f},congruent\n" for t in logged))
    capsys.readouterr()
    main(["align", str(tmp_path / "mic.wav"), str(tmp_path / "log.csv"), "--json", str(tmp_path / "r.json")])
    rep = json.loads((tmp_path / "r.json").read_text())
    assert any("none of its marker lines matches a marker rule" in w and "--marker" in w for w in rep["warnings"])
    assert "none of its marker lines matches a marker rule" in capsys.readouterr().err


def test_a_recording_and_its_log_named_alike_are_two_streams(tmp_path, capsys):
    """``rec.wav`` and ``rec.csv`` (one stream each, both named after the stem): both became ``rec.rec``, the report
    gave the log the WAV's sample count, ``--ref`` could not tell them apart and the XDF held two streams of one
    name.  Now ``rec.wav`` and ``rec.csv``; two files of the same name get their input's number."""
    pyxdf = pytest.importorskip("pyxdf", reason="pyxdf is in the bench extra")
    onsets, logged = _rig(tmp_path, word="tone")
    (tmp_path / "log.csv").rename(tmp_path / "mic.csv")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mic.csv").write_text((tmp_path / "mic.csv").read_text())
    code = main(["align", str(tmp_path / "mic.wav"), str(tmp_path / "mic.csv"), str(tmp_path / "sub" / "mic.csv"),
                 "--ref", "mic.wav", "--json", str(tmp_path / "r.json"), "-o", str(tmp_path / "out.xdf")])
    assert code == 0, capsys.readouterr().err
    rows = {s["name"]: s for s in json.loads((tmp_path / "r.json").read_text())["streams"]}
    assert set(rows) == {"mic.wav", "mic.csv#2", "mic.csv#3"}, set(rows)
    assert rows["mic.wav"]["samples"] == 60 * RATE and rows["mic.csv#2"]["samples"] == len(logged)
    assert rows["mic.wav"]["method"] == "reference" and rows["mic.csv#2"]["link"]["via"] == "mic.csv#2 -> mic.wav"
    streams, _ = pyxdf.load_xdf(str(tmp_path / "out.xdf"))
    names = sorted(s["info"]["name"][0] for s in streams)
    assert [n for n in names if not n.endswith(".device_time")] == ["mic.csv#2", "mic.csv#3", "mic.wav"]
    assert len(set(names)) == len(names)
    code = main(["align", str(tmp_path / "mic.wav"), str(tmp_path / "mic.csv"), "--json", str(tmp_path / "r.json")])
    rows = {s["name"]: s for s in json.loads((tmp_path / "r.json").read_text())["streams"]}
    assert code == 0 and set(rows) == {"mic.wav", "mic.csv"} and rows["mic.csv"]["samples"] == len(logged)


def test_a_log_in_milliseconds_read_as_seconds_is_refused_with_what_to_give(tmp_path, capsys):
    """An Arduino's millis() in a column named "time": the refusal said "its clock far from the reference's? give
    --offset-s", which no offset fixes; it says the times span ~1000x the microphone's and to give --time-unit ms."""
    onsets, logged = _rig(tmp_path, word="tone")
    (tmp_path / "log.csv").write_text("time,event\n" + "".join(f"{t * 1000:.1f},tone\n" for t in logged))
    assert main(["align", str(tmp_path / "mic.wav"), str(tmp_path / "log.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "times span" in err and "milliseconds read as seconds" in err and "--time-unit ms" in err, err
    assert main(["align", str(tmp_path / "mic.wav"), str(tmp_path / "log.csv"), "--time-unit", "ms"]) == 0


def test_a_log_whose_clock_restarted_for_a_second_run_ties_both_runs(tmp_path, capsys):
    """One WAV of two runs, the log's clock restarted at the second (its times from 0.5 s again): both runs' times
    overlap, the windows over the whole log mixed them, and the one model tied the first run to the second's
    offset (57.7 s off) while the second stayed unmapped.  Each timeline is tied on its own now; one that cannot be
    tied (its lines of sounds not heard) is said in a warning."""
    onsets, logged = _rig(tmp_path, word="tone")
    n = len(onsets) // 2
    second = onsets[n:] - onsets[n] + 0.5
    (tmp_path / "log.csv").write_text("time,event\n" + "".join(f"{t:.6f},tone\n" for t in np.r_[logged[:n], second]))
    classical = InputOptions(align="classical")  # tones: the hybrid needs 32 s of windows to trust the onsets alone
    fa = FileAlignment([InputSpec([str(tmp_path / "mic.wav")]), InputSpec([str(tmp_path / "log.csv")], classical)])
    fa.gather()
    link = fa.inputs[1].link
    assert set(link.models) == {0, 1}, link.notes
    dev = np.rint(np.r_[logged[:n], second] * NS).astype(np.int64)
    tl = np.r_[np.zeros(n, dtype=np.int64), np.ones(len(onsets) - n, dtype=np.int64)]
    mapped, unc = link.map(dev, tl)
    assert np.max(np.abs(mapped - np.rint(onsets * NS))) < 3e6 and np.all(unc < 10e6)
    heard_not = np.sort(np.random.default_rng(2).uniform(0.5, 14.0, 6))  # six lines after it, of sounds not heard
    short = np.r_[logged[:-6], heard_not]
    (tmp_path / "log.csv").write_text("time,event\n" + "".join(f"{t:.6f},tone\n" for t in short))
    assert main(["align", str(tmp_path / "mic.wav"), str(tmp_path / "log.csv"), "--align", "classical", "--json",
                 str(tmp_path / "r.json")]) == 0
    warnings = json.loads((tmp_path / "r.json").read_text())["warnings"]
    assert any("timeline 2 of its clock (after a reset): not tied" in w for w in warnings), warnings
