"""The latency calibration's pure parts: a known latency recovered through noise and outliers, a refusal with too
few windows, the stored file's round trip and its refusals, and the correction of an unwired session's estimate."""

import json

import numpy as np
import pytest

from synchub.agent.align.latency import Latency, LatencyMeter, LatencyStore, PairKey, apply
from synchub.agent.core.evidence import OffsetEstimate

KEY = PairKey("cam0", "video", "imu0", "imu")


@pytest.mark.parametrize("latency_ms, noise_ms", [(37.5, 2.0), (-4.2, 0.3), (0.0, 5.0)])
def test_a_known_latency_is_recovered_through_noise_and_outliers(latency_ms, noise_ms):
    rng = np.random.default_rng(3)
    meter = LatencyMeter()
    trig = rng.integers(-2 * 10**9, 2 * 10**9, 60)
    diffs = latency_ms * 1e6 + rng.normal(0, noise_ms * 1e6, 60)
    diffs[::10] += rng.choice([-1, 1], 6) * 400e6  # look-alike peaks: a window 400 ms off
    for t, d in zip(trig, diffs, strict=True):
        meter.add(KEY, int(t + d), int(t))
    lat = meter.result(KEY)
    assert lat is not None and lat.rejected == 6 and lat.n == 54
    assert abs(lat.latency_ns / 1e6 - latency_ms) < 3 * lat.sigma_ns / 1e6 + 1e-3
    # the median's standard error, windows counted half (they overlap): about 1.25 * noise / sqrt(27)
    assert 0.5 * noise_ms / np.sqrt(27) < lat.sigma_ns / 1e6 < 3 * noise_ms / np.sqrt(27)


def test_too_few_windows_or_too_few_that_agree_give_no_latency():
    meter = LatencyMeter(min_windows=8)
    for i in range(7):
        meter.add(KEY, 30_000_000 + i * 1000, 0)
    assert meter.result(KEY) is None and meter.results() == {}
    assert meter.result(PairKey("x", "audio", "imu0", "imu")) is None
    meter.add(KEY, 30_000_000, 0)
    assert meter.result(KEY) is not None
    scattered = LatencyMeter(min_windows=8)  # half the windows wildly apart: not 8 that agree
    for i in range(12):
        scattered.add(KEY, (i % 2) * 30_000_000 + (i // 2) * 10**9 * (i % 2), 0)
    assert scattered.result(KEY) is None
    with pytest.raises(ValueError, match="min_windows"):
        LatencyMeter(min_windows=2)


def test_the_store_round_trips_and_a_newer_measurement_replaces_the_old():
    store = LatencyStore()
    store.update({KEY: Latency(37_000_000, 400_000, 50, 2)}, session="s1", utc="2026-11-27T01:00:00Z")
    other = PairKey("mic0", "audio", "imu0", "imu")
    store.update({other: Latency(-4_000_000, 100_000, 40)}, session="s1")
    back = LatencyStore.from_text(store.to_text())
    assert back.entries == store.entries and back.get(KEY).session == "s1"
    back.update({KEY: Latency(36_000_000, 300_000, 60)}, session="s2")
    assert back.get(KEY).latency_ns == 36_000_000 and back.get(KEY).session == "s2"
    assert back.get(other).latency_ns == -4_000_000
    assert [d["pair"] for d in back.describe()] == [KEY.label(), other.label()]


@pytest.mark.parametrize("text, why", [
    ("", "not JSON"),
    ('{"format": "synchub-latency-calibration", "version": 1, "pairs": [', "not JSON"),  # truncated
    ('[1, 2]', "not a synchub-latency-calibration file"),
    ('{"format": "something-else", "version": 1, "pairs": []}', "not a synchub-latency"),
    ('{"format": "synchub-latency-calibration", "version": 99, "pairs": []}', "version 99"),
    ('{"format": "synchub-latency-calibration", "version": 1}', "no 'pairs'"),
    ('{"format": "synchub-latency-calibration", "version": 1, "pairs": [{"stream": "a"}]}', "pair 0: bad entry"),
    ('{"format": "synchub-latency-calibration", "version": 1, "pairs": [{"stream": "a", "modality": "audio", '
     '"ref": "b", "ref_modality": "imu", "latency_ns": "x", "sigma_ns": 1, "n": 1}]}', "pair 0: bad entry"),
    ('{"format": "synchub-latency-calibration", "version": 1, "pairs": [{"stream": "a", "modality": "audio", '
     '"ref": "b", "ref_modality": "imu", "latency_ns": 5, "sigma_ns": 0, "n": 1}]}', "must be > 0"),
])
def test_a_foreign_or_damaged_file_is_refused_in_one_line(text, why):
    with pytest.raises(ValueError, match=why) as err:
        LatencyStore.from_text(text)
    assert "\n" not in str(err.value)


def test_apply_subtracts_the_latency_and_adds_its_sigma_to_the_shared_error():
    est = OffsetEstimate("cam0", 10**9, 1_000_000_000, 2_000_000, "hybrid", 0.9, shared_ns=3_000_000)
    out = apply(est, Latency(37_000_000, 4_000_000, 50))
    assert out.offset_ns == 1_000_000_000 - 37_000_000 and out.shared_ns == 5_000_000
    assert (out.stream, out.device_ns, out.sigma_ns, out.source, out.confidence) == ("cam0", 10**9, 2_000_000,
                                                                                     "hybrid", 0.9)
    doc = json.loads(LatencyStore({KEY: Latency(1, 1, 1)}).to_text())
    assert doc["format"] == "synchub-latency-calibration" and doc["version"] == 1
