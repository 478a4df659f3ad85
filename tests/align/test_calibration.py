"""Sigma calibration: the floor that brings 1-sigma coverage to its target, and the per-pair table."""

import numpy as np
import pytest

from synchub.agent.align import calibration as K
from synchub.agent.align.aligner import AlignerSettings
from synchub.agent.align.window import WindowAligner
from synchub.agent.core.stream import StreamInfo


def test_floor_brings_an_overconfident_sigma_to_the_coverage_target():
    rng = np.random.default_rng(0)
    err = rng.normal(1.5e6, 2.0e6, 4000)  # a bias and a spread the peak does not show
    sig = np.full(4000, 0.4e6)
    assert K.coverage(err, sig) < 0.2
    f = K.floor_for_coverage(err, sig)
    total = np.hypot(sig, f)
    assert K.coverage(err, total) == pytest.approx(0.68, abs=0.01)
    assert K.coverage(err, total, k=2.0) > 0.9
    assert K.floor_for_coverage(err, np.full(4000, 50e6)) == 0.0  # already covered: no floor
    assert K.floor_for_coverage([], []) == 0.0 and np.isnan(K.coverage([], []))


def test_pair_floor_is_unordered_and_reaches_the_window_aligner():
    table = (("audio", "text", 3.0), ("imu", "audio", 1.5))
    assert K.pair_floor_ns(table, "text", "audio") == 3e6
    assert K.pair_floor_ns(table, "video", "audio", 7.0) == 7.0
    mic, log = StreamInfo("mic", "audio", 16000.0, 1), StreamInfo("log", "marker", 0.0, 1, "string")
    s = AlignerSettings(pair_sigma_floor_ms=table)
    assert WindowAligner(mic, log, settings=s).s.sigma_floor_ns == 3e6
    assert WindowAligner(mic, mic, settings=s).s.sigma_floor_ns == s.sigma_floor_ns  # no entry: the default
