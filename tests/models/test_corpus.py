"""The real-signal corpus (``synchub.models.corpus``): deterministic rendering, truth onsets at the start of the
sound (checked on the waveform and against the TTS engine's own segment times), markers on a drifting clock, the
split, and the clip cache.  Recordings here are short (20 s) and use flite where a voice is needed; tests that
need a Debian package skip with its name where it is missing (``make test`` installs them as root)."""

import dataclasses

import numpy as np
import pytest
from support.paths import ROOT

from synchub.models import corpus
from synchub.models.corpus import audio as A
from synchub.models.corpus import clips as C
from synchub.models.corpus import sources as S
from synchub.models.corpus import split as SP


def needs(*items):
    why = [m for m in (S.missing(i) for i in items) if m]
    if why:
        pytest.skip("; ".join(why))


def quiet_speech(tmp_path, duration_s=20.0, **kw):
    """A held-out speech recording with flite voices only and no background (fast, engine-independent)."""
    needs("flite:slt", "flite:kal")
    spec = corpus.plan("heldout", 1, "speech", duration_s)[0]
    spec = dataclasses.replace(spec, voices=("flite:slt",), babble_voices=("flite:kal",), background=(), **kw)
    return spec, corpus.ClipCache(tmp_path / "cache")


# ------------------------------------------------------------------------------------------------ pure parts
def test_sound_onset_is_the_first_sample_of_the_sound_not_its_peak():
    fs = 16000
    x = np.zeros(fs)
    t = np.arange(4000) / fs
    x[3000:7000] = np.minimum(t / 0.05, 1.0) * np.sin(2 * np.pi * 440 * t)  # 50 ms linear attack
    on = A.sound_onset(x, fs)
    assert 3000 <= on <= 3010  # -40 dB of the peak is reached within 0.5 ms of the start of a 50 ms ramp
    rng = np.random.default_rng(1)
    noisy = x + rng.normal(0, 1e-3, fs)  # a recording's room noise: the onset is above the noise, not in it
    assert 3000 <= A.sound_onset(noisy, fs) <= 3100
    click = x.copy()
    click[1000] = 0.5  # a lone click before the sound is not where the sound starts
    assert 3000 <= A.sound_onset(click, fs) <= 3010
    assert A.sound_onset(np.zeros(100), fs) is None


def test_resampling_keeps_a_tone_and_its_timing():
    fs_in = 48000
    x = np.sin(2 * np.pi * 1000 * np.arange(fs_in) / fs_in)
    y = A.resample(x, fs_in, 16000)
    ref = np.sin(2 * np.pi * 1000 * np.arange(len(y)) / 16000)
    assert len(y) == 16000 and np.max(np.abs(y[50:-50] - ref[50:-50])) < 1e-3
    t = np.array([0.25, 0.5 + 1 / 64000])  # arbitrary instants, between samples
    assert np.allclose(A.sample_at(x, fs_in, t), np.sin(2 * np.pi * 1000 * t), atol=1e-3)


def test_the_split_shares_no_voice_speaker_sound_or_seed():
    seen = {}
    for split in ("train", "validation", "heldout"):  # calibration draws validation's material
        for v in SP.VOICES[split]:
            assert seen.setdefault(v, split) == split, f"{v} in {seen[v]} and {split}"
    speaker = {v.split(":")[1].replace("cmu_us_", "").split("_")[0] for v in SP.VOICES["heldout"]}
    trained = {v.split(":")[1].replace("cmu_us_", "").split("_")[0] for v in SP.VOICES["train"] + SP.VOICES["validation"]}
    assert "slt" in speaker and not speaker & trained, speaker & trained
    fams = [{SP.sound_split(s) for s in fam} for fam in SP.SOUND_FAMILIES]
    assert all(len(f) == 1 for f in fams), "a sound family straddles splits"
    sounds = {sp: set(SP.sounds(sp)) for sp in SP.SPLITS}
    assert not (sounds["train"] & sounds["heldout"]) and not (sounds["validation"] & sounds["heldout"])
    if S.all_sounds():
        assert sounds["heldout"] and sounds["train"]
    bases = sorted(SP.SEED_BASE.values())
    assert all(b - a >= SP.SEEDS_PER_SPLIT for a, b in zip(bases, bases[1:], strict=False))
    assert SP.split_of_seed(SP.seed_of("heldout", 3)) == "heldout"
    with pytest.raises(ValueError):
        SP.seed_of("heldout", SP.SEEDS_PER_SPLIT)
    for split in SP.SPLITS:  # a plan only draws from its own split
        for spec in corpus.plan(split, 3, "events", 60.0):
            assert spec.split == split and SP.split_of_seed(spec.seed) == split
            material = SP.MATERIAL_OF.get(split, split)
            assert set(spec.voices) | set(spec.babble_voices) <= set(SP.VOICES[material])
            assert all(SP.sound_split(s) == material for s in spec.sounds)


def test_the_calibration_split_is_disjoint_from_training_and_from_evaluation():
    """The aligner's sigma is fitted on the calibration split and judged on the held-out split: they (and
    training) share no recording seed, voice, speaker or sound."""
    cal = corpus.plan("calibration", 6, "speech", 60.0) + corpus.plan("calibration", 6, "events", 60.0)
    for other in ("heldout", "train"):
        oth = corpus.plan(other, 6, "speech", 60.0) + corpus.plan(other, 6, "events", 60.0)
        assert not {s.seed for s in cal} & {s.seed for s in oth}
        assert not {s.name for s in cal} & {s.name for s in oth}
        assert not set(SP.voices("calibration", installed=False)) & set(SP.voices(other, installed=False))
        assert not set(SP.sounds("calibration")) & set(SP.sounds(other))
        assert not {v for s in cal for v in s.voices + s.babble_voices} & set(SP.VOICES[other])
        assert not {x for s in cal for x in s.sounds} & set(SP.sounds(other))
    assert all(SP.split_of_seed(s.seed) == "calibration" for s in cal)
    speaker = {v.split(":")[1].replace("cmu_us_", "").split("_")[0] for v in SP.voices("calibration", False)}
    held = {v.split(":")[1].replace("cmu_us_", "").split("_")[0] for v in SP.VOICES["heldout"]}
    assert speaker and not speaker & held


def test_the_makefile_installs_every_corpus_package():

    mk = (ROOT / "Makefile").read_text()
    line = mk.split("CORPUS_PKGS :=", 1)[1].split("\nAPT_PKGS", 1)[0]
    assert set(S.DEBIAN_PACKAGES) <= set(line.replace("\\", " ").split())


def test_a_missing_voice_names_its_debian_package():
    assert "festvox-kdlpc16k" in S.package_of("festival:ked_diphone")
    assert S.missing("flite:nosuchvoice")
    assert "oxygen-sounds" in S.missing("oxygen-sounds/no-such-sound.ogg")
    with pytest.raises(S.Unavailable, match="no-such-sound"):
        S.require(["oxygen-sounds/no-such-sound.ogg"])


# ------------------------------------------------------------------------------------------------ rendering
def test_a_recording_renders_the_same_from_a_cold_and_a_warm_cache(tmp_path):
    spec, cache = quiet_speech(tmp_path)
    a = corpus.render(spec, cache)
    b = corpus.render(spec, cache)  # every clip now from the cache
    c = corpus.render(spec, corpus.ClipCache(tmp_path / "other"))  # synthesized again
    for r in (b, c):
        assert np.array_equal(a.tracks["audio"].data, r.tracks["audio"].data)
        assert a.tracks["text"].data == r.tracks["text"].data
        for k in ("true_ns", "device_ns", "host_ns"):
            assert np.array_equal(getattr(a.tracks["text"], k), getattr(r.tracks["text"], k))
        assert np.array_equal(a.events["onset_ns"], r.events["onset_ns"])
    other = corpus.render(dataclasses.replace(spec, seed=spec.seed + 1), cache)
    assert not np.array_equal(other.events["onset_ns"], a.events["onset_ns"])


def test_truth_onsets_are_where_the_sound_starts(tmp_path):
    spec, cache = quiet_speech(tmp_path)
    rec = corpus.render(spec, cache)
    assert len(rec.events["onset_ns"]) >= 5
    k_on = rec.events["onset_ns"] // 62_500
    k_start = rec.events["start_ns"] // 62_500
    for i, (s, k) in enumerate(zip(k_start, k_on, strict=True)):
        clip = rec.clean[s : rec.events["end_ns"][i] // 62_500]
        thr = A.onset_threshold(clip, 16000)
        assert np.max(np.abs(rec.clean[s:k]), initial=0.0) <= thr < abs(rec.clean[k])  # nothing of it before
        assert np.sqrt(np.mean(rec.clean[k : k + 80] ** 2)) >= 0.25 * thr  # sound right after
        # the engine's own phone times: the sound starts after the leading pause, within the first two phones
        seg = rec.segments["event"] == i
        names, ends = rec.segments["name"][seg], rec.segments["end_ns"][seg]
        assert names[0] == "pau"
        assert ends[0] - 2_000_000 <= rec.events["onset_ns"][i] <= ends[2]
        # on the microphone (quiet room, reverb): louder in the 20 ms after the onset than in the 20 ms before
        mic = rec.tracks["audio"].data[:, 0]
        assert np.std(mic[k : k + 320]) > 2 * np.std(mic[k - 320 : k])


def test_markers_mean_the_sound_start_and_run_on_a_drifting_clock(tmp_path):
    spec, cache = quiet_speech(tmp_path, marker_offset_s=1.2, marker_drift_ppm=-140.0)
    rec = corpus.render(spec, cache)
    m, tx = rec.markers, rec.tracks["text"]
    sound = m["event"] >= 0
    assert sound.sum() == len(rec.events["onset_ns"]) and (~sound).sum() >= 1  # and lines of soundless things
    assert np.array_equal(rec.events["marker"], np.nonzero(sound)[0])
    lag = (m["log_ns"][sound] - m["onset_ns"][sound]) / 1e6
    assert np.all(np.abs(lag - spec.log_latency_ms) < 5 * spec.log_jitter_ms + 0.01)
    assert np.all(m["onset_ns"][~sound] == -1)
    assert np.array_equal(tx.true_ns, m["log_ns"])
    slope = np.polyfit(tx.true_ns / 1e9, (tx.device_ns - tx.true_ns) / 1e3, 1)[0]  # us per s = ppm
    assert slope == pytest.approx(-140.0, abs=0.5)
    assert (tx.device_ns[0] - tx.true_ns[0]) / 1e9 == pytest.approx(1.2, abs=0.01)
    lat = (tx.host_ns - tx.true_ns) / 1e6
    assert np.all(lat >= spec.link_latency_ms[0] - 1e-6) and np.all(lat <= spec.link_latency_ms[1] + 1e-6)
    assert tx.info().type == "marker" and all(isinstance(s, str) for s in tx.data)
    assert not any("impact" in s or "beep" in s for s in tx.data)  # no simulator vocabulary


def test_sound_effects_come_with_an_imu_and_a_camera_that_see_them(tmp_path):
    needs(*SP.sounds("heldout")[:1] or ["sound-theme-freedesktop/bell.oga"])
    spec = dataclasses.replace(corpus.plan("heldout", 1, "events", 20.0)[0], background=())
    rec = corpus.render(spec, corpus.ClipCache(tmp_path))
    imu, cam = rec.tracks["imu"], rec.tracks["video"]
    assert imu.data.shape[1:] == (6,) and cam.data.shape[1:] == (24, 32) and cam.data.dtype == np.uint8
    cause = rec.events["cause_ns"]
    delay = (rec.events["onset_ns"] - cause) / 1e6
    assert np.all((delay > 0.5) & (delay < 9.0))  # heard 0.3-3 m away
    acc = np.linalg.norm(imu.data[:, :3] - np.median(imu.data[:, :3], axis=0), axis=1)
    ratios = []
    for c in cause:
        i = np.searchsorted(imu.true_ns, c)
        ratios.append(np.max(acc[i : i + 4]) / (np.median(acc[max(0, i - 40) : i]) + 1e-9))
    assert np.median(ratios) > 3.0
    lvl = np.abs(np.diff(cam.data.reshape(len(cam.data), -1).astype(float), axis=0)).mean(axis=1)
    seen = [np.max(lvl[max(0, j - 1) : j + 2]) for j in np.searchsorted(cam.true_ns[1:], cause)]
    assert np.median(seen) > 2.5 * np.median(lvl)


def test_the_clip_cache_survives_a_torn_file_and_keys_on_the_engine(tmp_path):
    needs("flite:kal")
    cache = C.ClipCache(tmp_path)
    a = C.speech("flite:kal", ["seven"], 1.0, cache)[0]
    files = list(tmp_path.rglob("*.npz"))
    assert len(files) == 1
    files[0].write_bytes(b"torn")
    b = C.speech("flite:kal", ["seven"], 1.0, cache)[0]  # made again, same
    assert np.array_equal(a.samples, b.samples) and a.onset == b.onset
    slow = C.speech("flite:kal", ["seven"], 0.8, cache)[0]
    assert slow.duration_s > a.duration_s * 1.1  # speed is part of the key and of the sound


def test_recordings_yields_the_planned_recordings_with_streams_on_the_reference_clock(tmp_path):
    needs(*SP.VOICES["validation"])
    recs = list(corpus.recordings("validation", 2, "speech", 20.0, cache=corpus.ClipCache(tmp_path)))
    assert [r.name for r in recs] == [s.name for s in corpus.plan("validation", 2, "speech", 20.0)]
    streams = recs[0].on_reference()
    x, t = streams["audio"]
    assert x.shape == (len(t), 1) and np.all(np.diff(t) > 0)
    lines, t = streams["text"]
    assert len(lines) == len(t) and np.array_equal(t, recs[0].markers["log_ns"])


def test_a_drifting_microphone_samples_the_same_sound_at_its_own_instants(tmp_path):
    spec, cache = quiet_speech(tmp_path, audio_offset_s=0.7, audio_drift_ppm=120.0)
    rec = corpus.render(spec, cache)
    mic = rec.tracks["audio"]
    slope = np.polyfit(mic.true_ns[::4000] / 1e9, (mic.device_ns - mic.true_ns)[::4000] / 1e3, 1)[0]
    assert slope == pytest.approx(120.0, abs=0.5) and np.all(np.diff(mic.device_ns) == 62_500)
    ref = corpus.render(dataclasses.replace(spec, audio_offset_s=0.0, audio_drift_ppm=0.0), cache)
    x = ref.tracks["audio"].data[:, 0]
    want = A.sample_at(x, 16000, mic.true_ns[:: 997] / 1e9)  # the reference-grid sound at the device's instants
    assert np.allclose(mic.data[:: 997, 0], want, atol=1e-4)
    assert np.array_equal(rec.events["onset_ns"], ref.events["onset_ns"])  # truth is on the reference clock
