"""Renderers: shapes, dtypes, events visible where they should be, chunk consistency, determinism by seed."""

import numpy as np
import pytest

from synchub.agent.core.units import NS
from synchub.drivers.sim import render as R
from synchub.drivers.sim.world import FLASH, MOTION, SOUND, TAP, World

RATES = {"imu": 200, "audio": 16000, "video": 30, "telemetry": 10}
SHAPES = {"imu": (6,), "audio": (1,), "video": (24, 32), "telemetry": (5,)}
DTYPES = {"imu": np.float32, "audio": np.float32, "video": np.uint8, "telemetry": np.float32}


@pytest.fixture(scope="module")
def world():
    return World(60.0, seed=3)


def _grid(rate, a_s, b_s):
    return np.arange(int(a_s * rate), int(b_s * rate), dtype=np.int64) * (NS // rate) if NS % rate == 0 else (
        np.rint(np.arange(int(a_s * rate), int(b_s * rate)) * (NS / rate)).astype(np.int64)
    )


@pytest.mark.parametrize("modality", list(RATES))
def test_shapes_dtypes_and_chunk_consistency(world, modality):
    t = _grid(RATES[modality], 0, 20)
    whole = R.render(world, modality, t)
    assert whole.shape == (len(t), *SHAPES[modality])
    assert whole.dtype == DTYPES[modality]
    cuts = [0, 7, len(t) // 3, len(t) // 2 + 1, len(t)]
    parts = [R.render(world, modality, t[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert R.render(world, modality, t[:0]).shape == (0, *SHAPES[modality])


@pytest.mark.parametrize("modality", list(RATES))
def test_noise_is_seeded_and_small(world, modality):
    t = _grid(RATES[modality], 0, 10)
    a = R.render(world, modality, t, rng=np.random.default_rng(5))
    b = R.render(world, modality, t, rng=np.random.default_rng(5))
    c = R.render(world, modality, t, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    clean = R.render(world, modality, t).astype(np.float64)
    assert np.corrcoef(clean.ravel(), a.astype(np.float64).ravel())[0, 1] > 0.9


def test_world_is_deterministic_by_seed():
    a, b, c = World(30, seed=1), World(30, seed=1), World(30, seed=2)
    t = _grid(200, 0, 30)
    np.testing.assert_array_equal(R.render_imu(a, t), R.render_imu(b, t))
    assert not np.array_equal(R.render_imu(a, t), R.render_imu(c, t))


def test_imu_gravity_and_taps(world):
    t = _grid(200, 0, 60)
    x = R.render_imu(world, t)
    quiet = np.ones(len(t), dtype=bool)
    for e in world.events:
        quiet &= ~((t >= e["t_ns"] - 50_000_000) & (t < e["t_ns"] + e["dur_ns"] + 500_000_000))
    np.testing.assert_allclose(np.linalg.norm(x[quiet, :3], axis=1), R.GRAVITY, rtol=1e-5)
    for e in world.of_kind(TAP):
        win = (t >= e["t_ns"]) & (t < e["t_ns"] + 40_000_000)
        spike = np.abs(x[win, int(e["axis"])]).max()
        assert spike > 10.0 * e["amp"], "tap spike on its axis"
    # rotated placement: gravity lands on other axes, magnitude kept
    rot = R.render_imu(world, t[quiet][:50], R.ImuParams(rotation=(np.pi / 2, 0.0, 0.0)))
    np.testing.assert_allclose(np.linalg.norm(rot[:, :3], axis=1), R.GRAVITY, rtol=1e-5)
    assert abs(rot[0, 2]) < 1e-3


def test_imu_motion_shows_in_gyro(world):
    t = _grid(200, 0, 60)
    x = R.render_imu(world, t)
    for e in world.of_kind(MOTION):
        win = (t >= e["t_ns"]) & (t < e["t_ns"] + e["dur_ns"])
        assert np.abs(x[win, 3:]).max() > 0.5 * e["amp"]


def test_audio_sounds_and_thumps(world):
    for e in world.of_kind(SOUND)[:5]:
        t = e["t_ns"] + _grid(16000, 0, e["dur_ns"] / NS)
        y = R.render_audio(world, t)[:, 0]
        spec = np.abs(np.fft.rfft(y))
        f = np.fft.rfftfreq(len(y), 1 / 16000)
        assert abs(f[np.argmax(spec[f > 200]) + np.sum(f <= 200)] - e["freq_hz"]) < 2.5 * 16000 / len(y) + 5
    for e in world.of_kind(TAP)[:5]:
        t = e["t_ns"] + _grid(16000, 0, 0.1)
        assert np.abs(R.render_audio(world, t)).max() > 0.1 * e["amp"]


def test_video_led_integrates_exposure(world):
    p = R.VideoParams(exposure_s=0.010, noise=0.0)
    lx, ly = int(p.led_xy[0]), int(p.led_xy[1])
    flashes = world.of_kind(FLASH)
    e = flashes[0]
    e = flashes[np.argmax(flashes["amp"])]

    def px(t):
        return int(R.render_video(world, np.array([t]), p)[0, ly, lx])

    on, off = px(e["t_ns"] + e["dur_ns"] // 2), px(e["t_ns"] - 20_000_000)
    half = px(e["t_ns"])  # exposure centred on the onset: half lit
    assert on - off > 120 * e["amp"]
    assert abs((half - off) - (on - off) / 2) < 3


def test_telemetry_channels(world):
    t = _grid(10, 0, 60)
    x = R.render_telemetry(world, t)
    for e in world.of_kind(FLASH):
        i = np.searchsorted(t, e["t_ns"] + min(e["dur_ns"], 100_000_000))
        if i < len(t):
            assert x[i, 2] > 200.0
    speed_on = np.zeros(len(t), dtype=bool)
    for e in world.of_kind(MOTION):
        speed_on |= (t > e["t_ns"]) & (t < e["t_ns"] + e["dur_ns"])
    assert np.all(x[~speed_on, 1] == 0) and x[speed_on, 1].max() > 0.1


def test_trigger_and_log(world):
    rises, widths = R.render_trigger(0, 10 * NS)
    np.testing.assert_array_equal(rises, np.arange(10) * NS + NS // 2)
    assert np.all(widths == 10_000_000)
    a, _ = R.render_trigger(0, 4_500_000_000)
    b, _ = R.render_trigger(4_500_000_000, 10 * NS)
    np.testing.assert_array_equal(np.concatenate([a, b]), rises)
    lines = R.render_log(world, 0, 60 * NS)
    assert lines == world.log_messages()
    assert R.render_log(world, 0, 30 * NS) + R.render_log(world, 30 * NS, 60 * NS) == lines


@pytest.mark.parametrize("cls", [R.ImuParams, R.AudioParams, R.VideoParams, R.TelemetryParams, R.TriggerParams])
def test_random_params_render(world, cls):
    rng = np.random.default_rng(0)
    p = cls.random(rng)
    assert p != cls.random(rng)
    if cls is R.TriggerParams:
        assert len(R.render_trigger(0, 5 * NS, p)[0]) >= 2
        return
    name = {R.ImuParams: "imu", R.AudioParams: "audio", R.VideoParams: "video", R.TelemetryParams: "telemetry"}[cls]
    x = R.render(world, name, _grid(RATES[name], 0, 2), p, rng)
    assert np.all(np.isfinite(x.astype(np.float64)))
