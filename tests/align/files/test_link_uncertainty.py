"""What ``synchub align`` reports as the uncertainty of an input tied by the aligner (``links.Link.map``): its
windows share a bias (a vowel's onset taken for its utterance's start in noise), which the clock model's average of
many windows does not shrink, so the mapped 1-sigma is at least one window's sigma, scaled by the file engine's own
table (``calibration.FILES_TABLE``)."""

import numpy as np

from synchub.agent.align.calibration import FILES_TABLE, SigmaTable
from synchub.agent.align.files.links import LINK_RW_PPM, Link
from synchub.agent.clock.choice import UNKNOWN_UNC_NS
from synchub.agent.clock.model import ClockModel
from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.units import NS

BIAS_NS = 20_000_000  # every window late by this much: what no window's sigma shows
WINDOW_SIGMA_NS = 8_000_000


def _link(calibration=None) -> Link:
    rng = np.random.default_rng(5)
    m = ClockModel("log", consensus=2, rw_bank_ppm=LINK_RW_PPM)
    for k in range(70):
        d = (10 + 4 * k) * NS
        off = 0.5e9 - 60e-6 * d + BIAS_NS + rng.normal(0.0, WINDOW_SIGMA_NS / 3)
        m.add_offset(OffsetEstimate("log", d, int(off), WINDOW_SIGMA_NS, "hybrid"))
    return Link("hybrid", {0: m}, window_sigma_ns=WINDOW_SIGMA_NS, calibration=calibration)


def test_the_windows_shared_bias_is_not_averaged_away():
    d = np.arange(20, 280, 10, dtype=np.int64) * NS
    tl = np.zeros(len(d), dtype=np.int64)
    truth = 0.5e9 - 60e-6 * d
    g, raw = _link().map(d, tl)
    err = np.abs(g - d - truth)
    assert np.median(raw) < WINDOW_SIGMA_NS / 2 and np.mean(err <= raw) < 0.2  # the model alone: overconfident
    g2, unc = _link((1.0, 0.0)).map(d, tl)
    assert np.array_equal(g, g2)  # the calibration changes what is said of the mapping, not the mapping
    assert np.all(unc >= WINDOW_SIGMA_NS) and np.mean(err <= 3 * unc) == 1.0
    k, floor = 1.5, 4e6
    _, scaled = _link((k, floor)).map(d, tl)
    assert np.allclose(scaled, k * np.sqrt(raw.astype(float) ** 2 + WINDOW_SIGMA_NS ** 2 + floor ** 2), atol=1)


def test_times_no_model_covers_stay_unknown():
    d = np.array([30, 40], dtype=np.int64) * NS
    _, unc = _link((1.0, 0.0)).map(d, np.array([0, 1]))  # timeline 1 has no model
    assert unc[0] < UNKNOWN_UNC_NS and unc[1] == UNKNOWN_UNC_NS


def test_the_shipped_file_table_is_the_file_engines_own():
    t = SigmaTable.load(FILES_TABLE)
    assert t.source["mode"] == "files" and t.source["split"] == "calibration"
    assert t.has("text", "audio") and not t.has("audio", "imu")
    k, g = t.of("audio", "text")
    assert 0.3 < k < 3.0 and g >= 0.0


def _drift_errors_and_sigmas(noise_ms: float, stated_ms: float, seeds: int = 300):
    from synchub.agent.align.files.judge import drift_sigma

    errs, sigs = [], []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        d = (10 + 16 * np.arange(20)) * NS  # 20 independent windows over 5 minutes
        off = 0.5e9 - 60e-6 * d + rng.normal(0.0, noise_ms * 1e6, len(d))
        evs = [OffsetEstimate("log", int(x), int(o), int(stated_ms * 1e6), "hybrid") for x, o in zip(d, off, strict=True)]
        b = np.polyfit(d / NS, off, 1)[0]  # ns per s: the windows' own drift (equal sigmas: the weighted fit's)
        errs.append(abs(b / 1e3 + 60.0))  # ppm off the true -60 ns/s
        sigs.append(drift_sigma(evs))
    return np.array(errs), np.array(sigs)


def test_the_drift_sigma_of_an_aligner_link_covers_its_drift_error():
    """``synchub align`` reports the drift its aligner windows give with a 1-sigma (``drift_sigma_ppm``): the
    weighted slope's, widened where the windows scatter more than their sigmas say."""
    e, s = _drift_errors_and_sigmas(5.0, 5.0)  # sigmas as stated
    assert 0.6 <= np.mean(e <= s) <= 0.8
    e, s = _drift_errors_and_sigmas(15.0, 5.0)  # the windows scatter three times their sigmas
    assert 0.6 <= np.mean(e <= s) <= 0.8
    from synchub.agent.align.files.judge import drift_sigma

    assert drift_sigma([OffsetEstimate("log", k * NS, 0, 1_000_000, "hybrid") for k in range(2)]) is None
