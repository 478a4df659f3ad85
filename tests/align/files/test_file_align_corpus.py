"""A microphone recording (WAV) and a rig's marker log (CSV) on its own drifting clock, from the real-signal corpus
(speech from flite, recorded sound effects): the log is tied to the WAV by the aligner, or refused with its
reasons.  Accuracy is the aligner's (``bench align-real``: markers vs speech is its hardest pair)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from synchub.agent.align.files.engine import AlignError, FileAlignment
from synchub.agent.align.files.reference import InputSpec
from synchub.bench.align.files import write_files
from synchub.bench.align.mic import parse
from synchub.models import corpus
from synchub.models.corpus import sources as S

NS = 1_000_000_000

sf = pytest.importorskip("soundfile", reason="soundfile is in the bench extra")
pytest.importorskip("onnxruntime", reason="the aligner's encoders need the neural extra")


def _files(tmp_path, kind: str, index: int, **scene):
    spec = corpus.plan("heldout", 1, kind, 60.0, start=index)[0]
    if kind == "speech":
        spec = dataclasses.replace(spec, voices=("flite:slt",), babble_voices=("flite:kal",), background=())
    else:
        spec = dataclasses.replace(spec, background=())
    spec = dataclasses.replace(spec, **scene)
    why = [m for m in (S.missing(v) for v in (*spec.voices, *spec.babble_voices, *spec.sounds)) if m]
    if why:
        pytest.skip("; ".join(why))
    rec = corpus.render(spec, cache=corpus.ClipCache(corpus.default_cache_dir()))
    truth = rec.markers["log_ns"] - rec.tracks["audio"].true_ns[0]  # when each line was stamped, on the WAV's clock
    return write_files(rec, tmp_path), rec.tracks["text"], truth


def _error_ms(fa, log, truth):
    g, _ = fa.inputs[1].link.map(log.device_ns, np.zeros(len(log.device_ns), dtype=np.int64))
    return np.abs(g - truth) / 1e6


def test_utterance_markers_are_tied_to_the_speech_by_the_aligner(tmp_path):
    specs, log, truth = _files(tmp_path, "speech", 0)
    fa = FileAlignment(specs)
    rep = fa.write(tmp_path / "out.xdf")
    err = _error_ms(fa, log, truth)
    # the marker clock is 1.5 s off and drifts 150 ppm; clean speech, arrival-less: 1.6-6.5 ms on the first four
    # held-out recordings (in babble at 0-10 dB SNR tens of ms: bench align --real-files)
    assert np.median(err) < 10.0
    row = next(s for s in rep["streams"] if s["name"] == "log")
    assert row["method"] == "hybrid" and row["link"]["via"] == "log -> mic"
    assert row["drift_sigma_ppm"] > 0 and "drift_ppm" in row  # the drift with what the windows tell of it


def test_when_the_aligner_abstains_the_log_is_refused_with_its_reasons(tmp_path):
    specs, _, _ = _files(tmp_path, "speech", 1)
    # the microphone heard nothing of what the log says (a disconnected mic: faint noise only): no answer is given
    rate = sf.info(tmp_path / "mic.wav").samplerate
    noise = np.random.default_rng(1).normal(0.0, 1e-4, int(60 * rate)).astype(np.float32)
    sf.write(tmp_path / "mic.wav", noise, rate, subtype="FLOAT")
    # the windows counted by reason, whatever its numbers (PSR 2.0 or 2.3: one line, not one line each)
    with pytest.raises(AlignError, match=r"log\.csv: nothing to align on \(aligner log vs mic: [2-9]\d* windows like: "
                                         r".*low confidence.*flat signal"):
        FileAlignment(specs).write(tmp_path / "out.xdf")
    assert not (tmp_path / "out.xdf").exists()


def test_sound_effect_markers_within_a_few_milliseconds(tmp_path):
    specs, log, truth = _files(tmp_path, "events", 2)
    fa = FileAlignment(specs)
    fa.gather()
    err = _error_ms(fa, log, truth)
    assert np.median(err) < 10.0 and np.max(err) < 20.0


def test_the_uncertainty_of_an_aligned_log_is_the_calibrated_one(tmp_path):
    """Old behaviour: ``synchub align`` weighed its aligner windows by the aligner's own sigmas, which the live agent
    never uses uncalibrated: sound-effect markers 0.5-1.1 ms off were reported with 60-250 us (9-10 % within
    1-sigma on two held-out recordings).  Now the file path's windows go through the real-signal corpus's sigma
    table and its settings, as the live aligners' do."""
    specs, log, truth = _files(tmp_path, "events", 0)
    fa = FileAlignment(specs)
    fa.gather()
    g, unc = fa.inputs[1].link.map(log.device_ns, np.zeros(len(log.device_ns), dtype=np.int64))
    err = np.abs(g - truth)
    assert np.mean(err <= unc) >= 0.6, (np.median(err), np.median(unc))


def test_the_bias_the_windows_share_is_counted_once(tmp_path):
    """Old behaviour: the windows went into the link's clock model with the live table's floor as the error they
    share (``OffsetEstimate.shared_ns``, 2.2 ms for microphone-marker windows), which the model adds to everything it
    maps; the link then added that same bias again as one window's sigma, or, where the onset check measured it,
    kept the floor beside the check's measure (sound markers 0.1-1.5 ms off said 2.1 ms, all within 1-sigma).  The
    link carries it, once."""
    specs, log, _ = _files(tmp_path, "events", 0)
    fa = FileAlignment(specs)
    fa.gather()
    link = fa.inputs[1].link
    assert all(s.shared_var == 0.0 for m in link.models.values() for s in m.segments)
    w = [r[0] for r in link.residuals]
    d = log.device_ns[(log.device_ns >= min(w)) & (log.device_ns <= max(w))]  # beyond them the drift's part grows
    tl = np.zeros(len(d), dtype=np.int64)
    _, model_unc, _ = link.models[0].map(d, tl, smooth=True)
    _, unc = link.map(d, tl)
    k, g = link.calibration
    shared = 0.0 if link.bias_measured else link.window_sigma_ns
    want = k * np.sqrt(model_unc.astype(float) ** 2 + shared ** 2 + link.hidden_ns ** 2 + g * g)
    assert np.allclose(unc, want, atol=2)


def test_the_uncalibrated_run_says_all_the_calibrated_one_scales(tmp_path):
    """What ``bench align --real-files --fit-sigma`` fits the table on (``calibrated=False``) is the part the shipped
    engine scales by it: the same ``map_parts``, k = 1 and g = 0.  Old behaviour: off, the links did not know the
    pair was one the table calibrates, and held the bias their windows share at one window's sigma at every length
    where the shipped engine averages it over minutes: a refit found a table for other sigmas (x0.40 with a 6.2 ms
    floor where x0.71 without one is right)."""
    specs, log, _ = _files(tmp_path, "events", 0)
    t, tl = log.device_ns, np.zeros(len(log.device_ns), dtype=np.int64)
    parts = []
    for calibrated in (True, False):
        fa = FileAlignment(specs, calibrated=calibrated)
        fa.gather()
        link = fa.inputs[1].link
        assert link.bias_averages and link.span_ns > 60 * 10**9, calibrated
        assert (link.calibration == (1.0, 0.0)) == (not calibrated)
        parts.append(link.map_parts(t, tl))
    assert all(np.array_equal(a, b) for a, b in zip(*parts, strict=True))


def test_speech_in_babble_is_reported_with_the_bias_its_windows_share(tmp_path):
    """Old behaviour: in babble every path's onset of an utterance is its vowel's, 20-60 ms after its start, in every
    window alike; the clock model averaged its windows down to a 3-5 ms sigma (0 % within 1- and 2-sigma on two
    held-out recordings; here 6.7 ms off with 4.7 ms).  Now the mapped sigma is at least one window's, scaled by the
    file engine's own table."""
    specs, log, truth = _files(tmp_path, "speech", 0, background=("babble",), snr_db=0.0)
    fa = FileAlignment(specs)
    fa.gather()
    link = fa.inputs[1].link
    g, unc = link.map(log.device_ns, np.zeros(len(log.device_ns), dtype=np.int64))
    err = np.abs(g - truth)
    k, _ = link.calibration
    assert np.all(unc >= k * link.window_sigma_ns - 1)
    assert any("at least one window's sigma" in n for n in link.notes)  # the report says why
    assert np.mean(err <= unc) >= 0.6, (np.median(err) / 1e6, np.median(unc) / 1e6)


def test_every_aligner_link_maps_with_at_least_one_windows_sigma(tmp_path):
    """The class, not the one table: a link the file engine's table has no entry for (here the classical path alone,
    ``align = "classical"``) still maps with the bias its windows share (k = 1, g = 0; one window's sigma over a
    minute of them), not the average's."""
    specs, log, _ = _files(tmp_path, "events", 2)
    specs[1] = dataclasses.replace(specs[1], options=dataclasses.replace(specs[1].options, align="classical"))
    fa = FileAlignment(specs)
    fa.gather()
    link = fa.inputs[1].link
    assert link.method == "classical" and link.calibration == (1.0, 0.0) and link.window_sigma_ns > 0
    _, unc = link.map(log.device_ns, np.zeros(len(log.device_ns), dtype=np.int64))
    # not a pair (method) the table calibrates: its bias is not taken to average over minutes
    assert not link.bias_averages and link.shared_ns == link.window_sigma_ns and np.all(unc >= link.shared_ns - 1)


def test_marker_rows_out_of_time_order_are_mapped_on_their_own_timeline(tmp_path):
    """A log whose rows are not all in time order (a marker logged late, merged logs): before 2026-11-28 a row
    more than 1 s before the one above it started a new clock timeline for every row after it, which no aligner
    window reached (56 of 60 markers of a test log left without a mapping).  Now such rows keep their timeline,
    are counted and warned about, and every marker maps as in the ordered log; so does a row stamped 100 s ahead
    (a glitch: 39 of 60 left unmapped before)."""
    pyxdf = pytest.importorskip("pyxdf", reason="pyxdf is in the bench extra")
    specs, _, truth = _files(tmp_path, "events", 2)
    lines = (tmp_path / "log.csv").read_text().splitlines()
    body, t = lines[1:], [float(r.split(",")[0]) for r in lines[1:]]
    order = np.arange(len(body))
    swaps = [k for k in range(3, len(body) - 2, 6) if t[k + 2] - t[k] > 1.2][:4]  # rows two apart, > 1 s
    for k in swaps:
        order[[k, k + 2]] = order[[k + 2, k]]
    rows = [body[i] for i in order]
    g = len(rows) // 2 + 1  # the glitch
    stamp, text = rows[g].split(",", 1)
    rows[g] = f"{float(stamp) + 100.0:.9f},{text}"
    (tmp_path / "log.csv").write_text("\n".join([lines[0], *rows]) + "\n")
    rep = FileAlignment(specs).write(tmp_path / "out.xdf")
    row = next(s for s in rep["streams"] if s["name"] == "log")
    assert len(swaps) >= 3 and row["out_of_time_order"] >= len(swaps) + 1
    assert "samples_without_mapping" not in row and row["segments"] and row["method"] == "hybrid"
    assert any("log: " in w and "out of time order" in w for w in rep["warnings"])
    streams, _ = pyxdf.load_xdf(str(tmp_path / "out.xdf"), synchronize_clocks=False, dejitter_timestamps=False)
    marks = next(s for s in streams if s["info"]["name"][0] == "log")
    err_ms = np.delete(np.abs(marks["time_stamps"] * 1e3 - truth[order] / 1e6), g)
    assert np.median(err_ms) < 10.0 and np.max(err_ms) < 20.0


def test_lines_that_log_a_sound_s_end_are_not_taken_for_its_start(tmp_path):
    """A log that also writes when each sound ends ("sound 3 off", 0.3-0.5 s after its start), in babble and noise
    at 10 dB: before 2026-11-28 the marker rule that hears "sound" took each end for another start, and the
    neural path embedded those lines too: 0.33 ms median error instead of 0.13 (a tone log with its ends was refused
    outright).  An end is now seen only by a sensor that sees changes both ways (a camera): against the microphone
    the log ties exactly as without those lines."""
    specs, log, truth = _files(tmp_path, "events", 4, background=("babble", "noise"), snr_db=10.0)
    lines = (tmp_path / "log.csv").read_text().splitlines()
    rng = np.random.default_rng(3)
    rows = [(float(r.split(",")[0]), r) for r in lines[1:]]
    ends = [(t + float(rng.uniform(0.3, 0.5)), k) for k, (t, _) in enumerate(rows)]
    ends = [(t, f"{t:.9f},sound {k} off") for t, k in ends]
    plain = FileAlignment(specs)
    plain.gather()
    expect = _error_ms(plain, log, truth)
    (tmp_path / "log.csv").write_text("\n".join([lines[0], *[r for _, r in sorted(rows + ends)]]) + "\n")
    fa = FileAlignment(specs)
    fa.gather()
    got = _error_ms(fa, log, truth)
    assert np.median(expect) < 0.3 and np.allclose(got, expect, atol=0.02)


def test_a_psychopy_log_is_tied_to_the_microphone_that_heard_its_sounds(tmp_path):
    """The ``.log`` a PsychoPy experiment writes (times to 0.1 ms on its own clock; a warning, trial lines, key
    presses and each sound's start and stop among them; one flip line written late): ``synchub align mic.wav
    run.log`` ties its sound starts to the microphone as well as a CSV of the sounds alone."""
    specs, log, truth = _files(tmp_path, "events", 0)
    plain = FileAlignment(specs)
    plain.gather()
    expect = _error_ms(plain, log, truth)
    rows = [float(r.split(",")[0]) for r in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    entries = [(0.0, "WARNING", "Monitor specification not found. Creating a temporary one...")]
    for k, t in enumerate(rows):
        entries += [(t - 0.5, "EXP", f"New trial (rep=0, index={k}): {{'sound': 's{k}'}}"),
                    (t, "EXP", f"Sound s{k} started"), (t + 0.4, "EXP", f"Sound s{k} stopped"),
                    (t + 0.6, "DATA", "Keypress: space")]
    entries.sort()
    entries.insert(len(entries) // 2, (entries[len(entries) // 2][0] - 0.3, "EXP", "fixation: autoDraw = False"))
    (tmp_path / "run.log").write_text("".join(f"{t:.4f} \t{lv} \t{msg}\n" for t, lv, msg in entries))
    fa = FileAlignment([specs[0], InputSpec([str(tmp_path / "run.log")])])
    fa.gather()
    got = _error_ms(fa, log, truth)
    assert fa.inputs[1].reader.kind == "psychopy" and fa.inputs[1].link is not None
    assert np.median(got) < np.median(expect) + 0.3 and np.percentile(got, 95) < np.percentile(expect, 95) + 1.0


def test_a_psychopy_data_file_is_tied_to_the_microphone_that_heard_its_sounds(tmp_path):
    """PsychoPy's trial-by-trial data CSV (one row per trial: a fixation's and the sound's start and stop, a key
    press's reaction time): its sound starts tie to the microphone as well as a CSV of the sounds alone."""
    specs, log, truth = _files(tmp_path, "events", 0)
    plain = FileAlignment(specs)
    plain.gather()
    expect = _error_ms(plain, log, truth)
    rows = [float(r.split(",")[0]) for r in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    lines = ["trials.thisN,sound_file,fixation.started,fixation.stopped,sound_1.started,sound_1.stopped,key_resp.rt"]
    lines += [f"{k},s{k}.wav,{t - 0.5:.4f},{t - 0.1:.4f},{t:.4f},{t + 0.4:.4f},0.5" for k, t in enumerate(rows)]
    (tmp_path / "01_exp.csv").write_text("\n".join(lines) + "\n")
    fa = FileAlignment([specs[0], InputSpec([str(tmp_path / "01_exp.csv")])])
    fa.gather()
    got = _error_ms(fa, log, truth)
    assert fa.inputs[1].link is not None
    assert np.median(got) < np.median(expect) + 0.3 and np.percentile(got, 95) < np.percentile(expect, 95) + 1.0


def test_brainvision_markers_are_tied_to_the_microphone_with_their_recording(tmp_path):
    """An EEG amplifier's BrainVision recording (written by pybv, as Recorder writes it) whose marker file holds the
    rig's lines at their data points (5 kHz): its markers tie to the microphone as well as a CSV of the lines, and its
    channels go with them (one clock: the amplifier's sample clock)."""
    pybv = pytest.importorskip("pybv", reason="pybv (writes the BrainVision recording) is in the dev extra")
    specs, log, truth = _files(tmp_path, "events", 0)
    plain = FileAlignment(specs)
    plain.gather()
    expect = _error_ms(plain, log, truth)
    fs, start = 5000, int(log.device_ns.min()) - 2 * NS
    pos = np.rint((log.device_ns - start) * fs / NS).astype(np.int64)
    events = [{"onset": int(p), "duration": 1, "description": str(line), "type": "Comment"}
              for p, line in zip(pos.tolist(), log.data, strict=True)]
    data = np.random.default_rng(0).normal(0.0, 1e-5, (2, int(pos.max()) + 2 * fs))
    pybv.write_brainvision(data=data, sfreq=fs, ch_names=["Cz", "Pz"], fname_base="eeg", folder_out=tmp_path,
                           events=events)
    fa = FileAlignment([specs[0], InputSpec([str(tmp_path / "eeg.vhdr")])])
    rep = fa.write(tmp_path / "out.xdf")
    dev = pos * NS // fs  # the markers on the amplifier's clock: its first sample at 0
    g, _ = fa.inputs[1].link.map(dev, np.zeros(len(dev), dtype=np.int64))
    got = np.abs(g - truth) / 1e6
    assert fa.inputs[1].reader.kind == "brainvision"
    assert np.median(got) < np.median(expect) + 0.3 and np.percentile(got, 95) < np.percentile(expect, 95) + 1.0
    rows = {s["name"]: s for s in rep["streams"]}
    assert rows["eeg"]["link"]["via"] == rows["eeg-markers"]["link"]["via"] == "eeg-markers -> mic"


def _speech_log(tmp_path, split: str, index: int, duration_s: float):
    """A corpus speech recording as it is rendered (its voices, background and SNR), its marker log tied to its
    microphone by ``synchub align``'s engine: (the link, the mapped sound markers, their 1-sigmas, each sound's
    start on the WAV's clock)."""
    spec = corpus.plan(split, 1, "speech", duration_s, start=index)[0]
    why = [m for m in (S.missing(v) for v in (*spec.voices, *spec.babble_voices)) if m]
    if why:
        pytest.skip("; ".join(why))
    rec = corpus.render(spec, cache=corpus.ClipCache(corpus.default_cache_dir()))
    rows = np.nonzero(rec.markers["event"] >= 0)[0]
    dev = rec.tracks["text"].device_ns[rows]
    truth = rec.markers["onset_ns"][rows] - int(rec.tracks["audio"].true_ns[0])  # each sound's start
    fa = FileAlignment(write_files(rec, tmp_path))
    fa.gather()
    link = fa.inputs[1].link
    g, unc = link.map(dev, np.zeros(len(dev), dtype=np.int64))
    return link, g, unc, truth


def test_speech_found_late_in_babble_is_moved_to_where_its_average_rises(tmp_path):
    """A held-out recording in babble and noise at 0 dB SNR, a voice whose utterances swell slowly: every window
    found the onsets 60-70 ms late, alike (the mapped sigma did not cover it).  The microphone's average energy
    around the mapped onsets stands out of the background 30-40 ms before them, and the line of its rise starts
    further back still: the log is moved there (it was moved to where the rise stood out, 20-30 ms late), and its
    uncertainty is the start's, not one window's sigma, so the error left is inside two sigmas."""
    link, g, unc, truth = _speech_log(tmp_path, "heldout", 3, 300.0)
    before, after = np.median(g - link.shift_ns - truth) / 1e6, np.median(g - truth) / 1e6
    assert link.shift_ns <= -20e6 and before > 50.0 and abs(after) < 12.0
    assert link.bias_measured and 6.6e6 <= link.hidden_ns <= 12e6
    assert np.median(np.abs(g - truth)) <= 2 * np.median(unc) and np.median(unc) < 15e6
    assert any("line of its rise starts" in n for n in link.notes)


def test_a_swell_before_each_utterance_is_not_taken_for_their_start(tmp_path):
    """A held-out recording at 30 dB SNR whose voices' average rises 2 x over the 150 ms before each utterance: the
    check saw that rise 131 ms before the mapped onsets, beyond three window sigmas, and added half of it (65 ms) to
    the link's 1-sigma (a limit allowing it, it moved the log there).  The line of the utterances' own rise starts 5
    ms before the mapped onsets (they are 7.5 ms late): not clearly earlier, so not moved, and that start with its
    uncertainty widens the 1-sigma instead (9.3 ms before the file engine's table: 6.9 ms, 1.1 sigmas off)."""
    link, g, unc, truth = _speech_log(tmp_path, "heldout", 4, 300.0)
    assert link.shift_ns == 0 and 7.2e6 <= link.hidden_ns <= 12e6
    assert any("an earlier rise" in n for n in link.notes)
    assert np.median(np.abs(g - truth)) <= 2 * np.median(unc) and np.median(unc) < 15e6


def test_the_drift_of_speech_in_music_is_the_robust_lines(tmp_path):
    """A calibration recording of 5 minutes, speech in music at 10 dB SNR: the windows' offsets scatter alike under
    sigmas of very different sizes, and the sigma-weighted line through them put the log's drift 28 ppm off (8 ms
    over the recording).  The link's drift is the robust line's (``clock.robust.onto_robust_slope``).  Its offset:
    moved by the onset check to the start of the sounds' average rise, 12 ms before the true onsets here (that start
    scatters 7.2 ms about them over the splits' speech), 2.2 of its sigmas (the file engine's table, fitted on this
    split, scales the start's scatter with the rest: this recording is one of the 7 % beyond two)."""
    _, g, unc, truth = _speech_log(tmp_path, "calibration", 9, 300.0)
    drift_err_ppm = np.polyfit((truth - truth[0]) / NS, (g - truth) / 1e3, 1)[0]
    assert abs(drift_err_ppm) < 10.0
    assert np.median(np.abs(g - truth)) < min(15e6, 3 * np.median(unc))


def test_a_microphone_s_dc_offset_maps_the_log_as_without(tmp_path):
    """A held-out recording of sound effects in babble and noise at 0 dB SNR, its WAV with a DC offset of 20 % of
    full scale (a cheap microphone's ADC): the windows' onsets and the encoders' features take it out, the onset
    check's average took it for background, did not see the sounds' rise and left the log 19 ms late (1.3 ms
    without it).  Now every line maps as without it, to well under a millisecond."""
    spec = corpus.plan("heldout", 1, "events", 150.0, start=3)[0]
    why = [m for m in (S.missing(v) for v in (*spec.voices, *spec.babble_voices, *spec.sounds)) if m]
    if why:
        pytest.skip("; ".join(why))
    rec = corpus.render(spec, cache=corpus.ClipCache(corpus.default_cache_dir()))
    dev = rec.tracks["text"].device_ns[rec.markers["event"] >= 0]
    audio = rec.tracks["audio"]
    mapped, notes = [], []
    for dc in (0.0, 0.2):
        (tmp_path / str(dc)).mkdir()
        specs = write_files(rec, tmp_path / str(dc))
        sf.write(specs[0].paths[0], (np.asarray(audio.data, np.float32) + dc), int(audio.rate_hz), subtype="FLOAT")
        fa = FileAlignment(specs)
        fa.gather()
        mapped.append(fa.inputs[1].link.map(dev, np.zeros(len(dev), dtype=np.int64))[0])
        notes.append([n for n in fa.inputs[1].link.notes if "average energy" in n])
    assert notes[0] and notes[1] == notes[0]
    assert np.max(np.abs(mapped[1] - mapped[0])) < 500_000


@pytest.mark.parametrize("kind", ["events", "speech"])
def test_loud_mains_hum_is_taken_out_before_the_log_is_tied_to_the_microphone(tmp_path, kind):
    """50 Hz hum with its third harmonic at -10 dBFS, louder than the sounds (a ground loop): every window was a
    "flat signal" (the 1 ms RMS swung with the hum more than any sound rose) and the log was refused.  The steady
    tones are taken out of the windows' onsets, the encoders' features and the onset check: the log maps about as
    closely as without the hum."""
    specs, log, truth = _files(tmp_path, kind, 0)
    x, rate = sf.read(specs[0].paths[0], dtype="float64")
    parse("hum=0.316").write(specs[0].paths[0], x, float(rate))
    fa = FileAlignment(specs)
    fa.gather()
    err = _error_ms(fa, log, truth)
    # with it 0.7 / 2.1 ms (median / p95) and 2.6 / 3.3 ms; without it 0.7 / 2.1 and 1.9 / 2.3 ms
    assert np.median(err) < 4.0 and np.percentile(err, 95) < 8.0


@pytest.mark.parametrize("log_first", [False, True])
def test_a_drift_the_windows_missed_is_taken_from_the_sounds_rise(tmp_path, log_first):
    """The held-out recording above, without the offset: its windows' drift is 67 ppm off (their 1-sigma 154 ppm:
    few windows, tied at what onsets the babble lets through).  The average of the sounds' energy in each third of
    the recording departs where they start, earlier and earlier from their mapped onsets: weighed against the
    windows', the drift is corrected and its 1-sigma shrinks, the error left within it (24 ppm under 33).  With the
    log given first, the microphone is mapped onto it: the same correction, the other way (the sounds were averaged
    again with both their onsets and the microphone moved, twice the correction: 1.6 ms off, not 0.6)."""
    spec = corpus.plan("heldout", 1, "events", 150.0, start=3)[0]
    why = [m for m in (S.missing(v) for v in (*spec.voices, *spec.babble_voices, *spec.sounds)) if m]
    if why:
        pytest.skip("; ".join(why))
    rec = corpus.render(spec, cache=corpus.ClipCache(corpus.default_cache_dir()))
    rows = rec.markers["event"] >= 0
    dev = rec.tracks["text"].device_ns[rows]
    truth = rec.markers["onset_ns"][rows] - rec.tracks["audio"].true_ns[0]
    specs = write_files(rec, tmp_path)
    fa = FileAlignment(specs[::-1] if log_first else specs)
    fa.gather()
    link = fa.inputs[1].link
    zero = np.zeros(len(dev), dtype=np.int64)
    err = (link.map(truth, zero)[0] - dev if log_first else link.map(dev, zero)[0] - truth) / 1e6
    drift_err_ppm = np.polyfit((dev - dev[0]) / 1e9, err, 1)[0] * 1e3
    assert [n for n in link.notes if "the sounds' rise drifts" in n]
    assert abs(drift_err_ppm) < min(40.0, link.drift_sigma_ppm) and link.drift_sigma_ppm < 60.0
    assert np.median(np.abs(err)) < 1.5 and np.percentile(np.abs(err), 95) < 4.0  # 1.3 / 3.1 and 0.6 / 1.0 ms
