"""Feature extraction (numpy only): grid, scale invariance, event localization, bad input masked and counted."""

import numpy as np
import pytest

from synchub.agent.core.units import NS
from synchub.drivers.sim import render as R
from synchub.drivers.sim.world import FLASH, SOUND, TAP, World, WorldSpec
from synchub.models import features as F
from synchub.models.simdata import make_recording


def _times(rate, dur_s, t0_ns=0):
    return t0_ns + np.rint(np.arange(int(rate * dur_s)) * NS / rate).astype(np.int64)


def _world(**rates):
    spec = WorldSpec(**{k: rates.get(k, 0.0) for k in ("tap_rate", "motion_rate", "flash_rate", "sound_rate",
                                                        "marker_rate")})
    return World(10.0, seed=3, spec=spec)


@pytest.mark.parametrize("modality", F.MODALITIES)
def test_channels_and_grid(modality):
    rec = make_recording(123, 4.0)
    s = rec[modality]
    f = F.featurize(modality, s.samples, s.times_ns + 7 * NS)
    assert f.x.shape[0] == F.channels(modality)
    assert f.x.dtype == np.float32 and np.all(np.isfinite(f.x))
    assert np.all(np.abs(f.x) <= F.CLIP)
    # grid anchored at absolute multiples of the frame period, centres in the middle
    assert np.all((f.frame_times_ns - F.FRAME_NS // 2) % F.FRAME_NS == 0)
    assert np.all(np.diff(f.frame_times_ns) == F.FRAME_NS)
    finite = s.times_ns if modality == "text" else s.times_ns[np.isfinite(s.samples.reshape(len(s.times_ns), -1)).all(1)]
    assert f.frame_times_ns[0] - F.FRAME_NS // 2 <= finite.min() + 7 * NS < f.frame_times_ns[0] + F.FRAME_NS
    np.testing.assert_array_equal(f.x[-1], f.valid)


def test_imu_gain_and_offset_invariant():
    w = _world(tap_rate=1.0, motion_rate=0.2)
    t = _times(200, 10)
    x = R.render_imu(w, t, R.ImuParams(), np.random.default_rng(0)).astype(np.float64)
    a = F.featurize("imu", x, t).x
    b = F.featurize("imu", 3.0 * x + 1.5, t).x
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_digital_silence_and_quantized_stillness_keep_the_features_gain_invariant():
    """Sounds between stretches of exact zeros (a recorder's digital silence), taps on a still IMU whose readings are
    quantized (its jerk exactly zero in most frames): the same features at any gain (a camera's are on its 8-bit
    scale).  An absolute floor where a row's median was zero hid the sounds of a recording 40 dB quieter (0.3 in
    place of 8) and blew a still IMU's levels up by its noise floor of 1e-9."""
    rng = np.random.default_rng(0)
    t_a, t_i = _times(16000, 8), _times(200, 8)
    audio = np.zeros(len(t_a))
    imu = np.zeros((len(t_i), 6))
    for k in range(1, 8):
        audio[k * 16000:k * 16000 + 3000] = rng.normal(0, 0.3, 3000) * np.linspace(0, 1, 3000)
        imu[k * 200:k * 200 + 4] += rng.integers(-40, 40, (4, 6))  # a tap, in sensor counts
    imu += rng.integers(0, 2, imu.shape) * (rng.random(imu.shape) < 0.2)  # the odd count of noise
    for modality, x, t, gains in (("audio", audio, t_a, (1.0, 1e-2, 1e-4)), ("imu", imu, t_i, (1.0, 1e-3, 0.061))):
        ref = F.featurize(modality, x, t).x
        assert np.abs(ref).max() > 3.0  # the events stand out
        for g in gains[1:]:
            np.testing.assert_allclose(F.featurize(modality, x * g, t).x, ref, atol=1e-3, err_msg=f"{modality} x{g}")


@pytest.mark.parametrize("rate", [22050, 32000, 44100, 48000])
def test_audio_features_do_not_depend_on_the_sample_rate(rate):
    """One sound (a tone in each band, each swelling and fading on its own) sampled at 16 kHz, as the encoders were
    trained, and at a real microphone's rate: the same features.  At 44.1, 48 and 22.05 kHz the whole-ns sample
    times fell a fraction of a ns before their place in the frame and 26-47 % of the samples were put onto their
    neighbours' places (holes of zeros: every band off); at 44.1 kHz the rate from those times (44099.5 Hz) put the
    100 Hz bin in the band below."""
    tones = np.array([60.0, 180.0, 370.0, 700.0, 1200.0, 2000.0, 3200.0, 5500.0])
    rng = np.random.default_rng(3)
    phase, env_hz = rng.uniform(0, 2 * np.pi, len(tones)), rng.uniform(0.3, 2.0, len(tones))

    def feats(sr):
        t = np.rint(np.arange(int(6 * sr)) * NS / sr).astype(np.int64)
        s = t[:, None] / NS
        x = (np.sin(2 * np.pi * tones * s + phase) * (1.1 + np.sin(2 * np.pi * env_hz * s))).sum(axis=1)
        return F.featurize("audio", x[:, None], t).x

    base, f = feats(16000), feats(rate)
    assert f.shape == base.shape
    assert np.abs(f - base).mean(axis=1).max() < 0.1, np.round(np.abs(f - base).mean(axis=1), 2)


def test_audio_tone_lights_the_right_frames_and_band():
    w = _world(sound_rate=0.3)
    ev = w.of_kind(SOUND)
    t = _times(16000, 10)
    x = R.render_audio(w, t, R.AudioParams(), np.random.default_rng(1))
    f = F.featurize("audio", x, t)
    total = f.x[len(F.AUDIO_BANDS_HZ) - 1]
    frame = ((ev["t_ns"] + ev["dur_ns"] // 2) // F.FRAME_NS).astype(int)
    quiet = np.ones(f.n_frames, bool)
    for e in ev:
        quiet[int(e["t_ns"] // F.FRAME_NS) - 2 : int((e["t_ns"] + e["dur_ns"]) // F.FRAME_NS) + 3] = False
    assert total[frame].min() > total[quiet].max()


def test_video_led_flash_localized():
    w = _world(flash_rate=0.4)
    ev = w.of_kind(FLASH)
    t = _times(30, 10)
    frames = R.render_video(w, t, R.VideoParams(led_xy=(24.0, 6.0)), np.random.default_rng(2))
    f = F.featurize("video", frames, t)
    # pooled cell holding the LED (row 6*6/24 = 1, col 24*8/32 = 6)
    cell = f.x[1 * F.VIDEO_POOL[1] + 6]
    on = np.zeros(f.n_frames, bool)
    for e in ev:
        if e["dur_ns"] > 80_000_000:
            on[int(e["t_ns"] // F.FRAME_NS) + 2 : int((e["t_ns"] + e["dur_ns"]) // F.FRAME_NS) - 1] = True
    assert on.any()
    assert np.median(cell[on]) > 2.0 > np.median(np.abs(cell[~on]))


def test_text_tokens_impulses_and_duration_box():
    t = np.array([1 * NS, 3 * NS + 5_000_000], dtype=np.int64)
    lines = ["led on dur=0.100s", "impact detected amp=0.50"]
    f = F.featurize("text", lines, t)
    assert F.text_tokens(lines[1]) == ["impact", "detected", "amp"]
    count = f.x[F.TEXT_BUCKETS]
    box = f.x[F.TEXT_BUCKETS + 1]
    assert count[0] == 1.0 and count[-1] == 1.0 and count.sum() == 2.0
    assert box[:5].sum() == 5.0 and box[6:].sum() == 0.0  # 100 ms = 5 frames
    assert f.x[: F.TEXT_BUCKETS, 0].sum() == pytest.approx(1.0)


def test_tap_in_imu_and_audio_same_frame():
    w = _world(tap_rate=0.5)
    ev = w.of_kind(TAP)
    ti, ta = _times(200, 10), _times(16000, 10)
    fi = F.featurize("imu", R.render_imu(w, ti, R.ImuParams(), np.random.default_rng(3)), ti)
    fa = F.featurize("audio", R.render_audio(w, ta, R.AudioParams(), np.random.default_rng(4)), ta)
    ei = fi.x[6:12].max(axis=0)  # jerk energy
    ea = fa.x[len(F.AUDIO_BANDS_HZ) - 1]
    for e in ev:
        k = int(e["t_ns"] // F.FRAME_NS)
        assert abs(int(np.argmax(ei[k - 3 : k + 6])) - int(np.argmax(ea[k - 3 : k + 6]))) <= 2


def test_nan_samples_masked_and_counted():
    t = _times(200, 2)
    x = np.random.default_rng(0).normal(size=(len(t), 6))
    x[50:90] = np.nan
    f = F.featurize("imu", x, t)
    assert f.problems["nan_samples"] == 40
    assert np.all(np.isfinite(f.x))
    k0 = int(t[0] // F.FRAME_NS)
    gap = (t[55:85] // F.FRAME_NS - k0).astype(int)
    assert np.all(f.valid[gap] == 0.0) and np.all(f.x[:, gap] == 0.0)
    assert f.valid[0] == 1.0


def test_all_nan_flat_and_empty_streams():
    t = _times(10, 5)
    f = F.featurize("telemetry", np.full((len(t), 5), np.nan), t)
    assert f.problems["nan_samples"] == len(t) and f.problems["empty"] == 1 and f.n_frames == 0
    f = F.featurize("telemetry", np.ones((len(t), 5)), t)
    assert f.problems["flat_channels"] == 5 and np.all(f.x[:-2] == 0.0)  # all but fresh, valid
    f = F.featurize("audio", np.zeros((0, 1)), np.zeros(0, np.int64))
    assert f.n_frames == 0 and f.x.shape == (F.channels("audio"), 0) and f.problems["empty"] == 1
    f = F.featurize("text", [], [])
    assert f.n_frames == 0
    t = _times(30, 1)
    f = F.featurize("video", np.zeros((len(t), 24, 32), np.uint8), t)
    assert np.all(np.isfinite(f.x)) and f.problems["flat_channels"] == 1


def test_unsorted_times_counted_and_sorted():
    t = _times(200, 1)
    x = np.random.default_rng(1).normal(size=(len(t), 6))
    perm = np.random.default_rng(2).permutation(len(t))
    a = F.featurize("imu", x, t)
    b = F.featurize("imu", x[perm], t[perm])
    assert b.problems["unsorted_times"] > 0
    np.testing.assert_allclose(a.x, b.x, atol=1e-6)


def test_length_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="samples but"):
        F.featurize("imu", np.zeros((5, 6)), np.arange(4))
    with pytest.raises(ValueError, match="6 channels"):
        F.featurize("imu", np.zeros((5, 3)), np.arange(5) * 5_000_000)
