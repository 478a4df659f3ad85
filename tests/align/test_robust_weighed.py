"""The file engine's two-sided judgement of its aligner windows (``clock.robust.robust_weighed``): windows off the robust
line through all of them are left out, the rest weighed by the scatter they show beyond their sigmas."""

import numpy as np
import pytest

from synchub.agent.align.files.links import LINK_RW_PPM
from synchub.agent.clock.model import ClockModel
from synchub.agent.clock.robust import (
    excess_scatter,
    onto_robust_slope,
    robust_weighed,
    span_residuals,
    theil_sen,
    weighted_line,
)
from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.units import NS

OVERLAP = 4.0  # 16 s windows every 4 s, as the file engine's


def _offset(d_ns, drift_ppm, bend_at_s=None, bend_ppm=0.0):
    t = d_ns / NS
    off = 0.5e9 - drift_ppm * 1e3 * t
    if bend_at_s is not None and t > bend_at_s:
        off -= bend_ppm * 1e3 * (t - bend_at_s)
    return off


def _windows(rng, n=75, drift_ppm=60.0, wrong=0.0, wrong_ms=(40.0, 90.0), scatter_ms=0.0, **bend):
    """Window estimates every 4 s: sigmas 2-10 ms (their errors as stated, plus ``scatter_ms`` they do not state);
    a fraction ``wrong`` of them confident (2 ms) and late by ``wrong_ms`` (a vowel's onset for the utterance's)."""
    out, bad = [], []
    for k in range(n):
        d = int((10 + 4 * k) * NS)
        s = float(rng.uniform(2e6, 10e6))
        off = _offset(d, drift_ppm, **bend) + rng.normal(0, s) + rng.normal(0, scatter_ms * 1e6)
        if rng.uniform() < wrong:
            s, off = 2e6, off + rng.uniform(*wrong_ms) * 1e6
            bad.append(d)
        out.append(OffsetEstimate("log", d, int(off), int(s * OVERLAP ** 0.5), "hybrid"))
    return out, bad


def _mapping_errors(evs, drift_ppm, **bend):
    """(device times, the mapped offset's error ns there) of a link's clock model fed ``evs``, 20-300 s."""
    m = ClockModel("log", consensus=2, rw_bank_ppm=LINK_RW_PPM)
    for e in evs:
        m.add_offset(e)
    d = np.arange(20, 300, 5, dtype=np.int64) * NS
    mapped, _, _ = m.map(d, smooth=True)
    return d, mapped - d - np.array([_offset(int(x), drift_ppm, **bend) for x in d])


def _mapped_error_ms(evs, drift_ppm, **bend):
    return float(np.median(np.abs(_mapping_errors(evs, drift_ppm, **bend)[1]))) / 1e6


def test_excess_scatter_is_what_the_sigmas_do_not_explain():
    rng = np.random.default_rng(3)
    s = rng.uniform(1e6, 4e6, 400)
    assert excess_scatter(rng.normal(0, s), s) == 0.0
    tau = excess_scatter(rng.normal(0, np.hypot(s, 6e6)), s)
    assert tau == pytest.approx(6e6, rel=0.25)
    assert excess_scatter(np.full(5, 1e9), np.ones(5)) == 0.0  # too few windows to tell


def test_span_residuals_follow_a_drift_that_changes_between_spans():
    d = np.arange(0, 3600, 4, dtype=np.int64) * NS
    o = np.array([_offset(int(x), 20.0, bend_at_s=1800, bend_ppm=40.0) for x in d])
    r = span_residuals(d, o)
    assert np.percentile(np.abs(r), 95) < 1.5e6  # one line over the hour would be off by ~18 ms at its ends
    assert np.max(np.abs(o - np.polyval(np.polyfit(d / NS, o, 1), d / NS))) > 10e6


def test_confident_wrong_windows_are_left_out_and_the_mapping_is_right():
    before, after = [], []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        evs, bad = _windows(rng, wrong=0.15)
        kept, _tau, dropped = robust_weighed(evs, OVERLAP)
        left_out = set(bad) - {e.device_ns for e in kept}
        assert len(left_out) >= 0.8 * len(bad) and dropped <= len(bad) + 1  # the wrong ones go, the right stay
        before.append(_mapped_error_ms(evs, 60.0))
        after.append(_mapped_error_ms(kept, 60.0))
    assert np.median(before) > 8.0  # the clock model's least squares follows the confident wrong windows
    assert np.median(after) < 2.5, after


def test_windows_that_agree_as_they_say_pass_unchanged():
    unchanged = 0
    for seed in range(20):
        evs, _ = _windows(np.random.default_rng(seed))
        kept, tau, dropped = robust_weighed(evs, OVERLAP)
        unchanged += (tau, dropped) == (0.0, 0) and kept == evs
    assert unchanged >= 18
    rng = np.random.default_rng(5)
    evs, _ = _windows(rng, n=400, drift_ppm=20.0, bend_at_s=800, bend_ppm=40.0)  # 27 min, the drift changes
    assert robust_weighed(evs, OVERLAP)[2] <= 2


def test_windows_that_scatter_beyond_their_sigmas_are_weighed_alike():
    rng = np.random.default_rng(8)
    evs, _ = _windows(rng, scatter_ms=12.0)
    kept, tau, dropped = robust_weighed(evs, OVERLAP)
    assert tau == pytest.approx(12e6, rel=0.35) and dropped <= 2
    widened = {e.device_ns: e.sigma_ns for e in kept}
    assert all(widened[e.device_ns] >= np.hypot(e.sigma_ns, tau * OVERLAP ** 0.5) - 1 for e in evs
               if e.device_ns in widened)


def test_weighted_line_recovers_a_line_and_its_slope_variance():
    """``weighted_line``: the drift tracker's and the file links' weighted fit (one formula for both)."""
    rng = np.random.default_rng(5)
    x = np.linspace(0.0, 300.0, 60)
    sig = rng.uniform(1.0, 5.0, len(x))
    slopes = []
    for _ in range(400):
        a, b, var_b = weighted_line(x, 3.0 - 0.2 * x + rng.normal(0.0, sig), 1.0 / sig**2)
        slopes.append(b)
    assert abs(np.mean(slopes) + 0.2) < 3 * np.sqrt(var_b / 400)
    assert 0.85 < np.std(slopes) / np.sqrt(var_b) < 1.15  # the stated variance is the slope's own
    assert weighted_line(np.full(5, 2.0), np.arange(5.0), np.ones(5)) is None  # no spread in x
    assert weighted_line(x, x, np.zeros(len(x))) is None


def _drift_error_ppm(evs, drift_ppm):
    d, err = _mapping_errors(evs, drift_ppm)
    return float(np.polyfit(d / NS, err / 1e3, 1)[0])  # the mapping's drift error, as the bench


def test_the_drift_is_the_robust_lines_where_sigmas_do_not_tell_the_better_windows():
    """Speech in noise: a window's sigma is the width of its own peak, which says little of its error; the errors
    scatter alike (6 ms) under sigmas of 3-40 ms, and now and then a window is 15-30 ms late with a small sigma.
    Weighed by their sigmas the drift follows the few that claim the most; turned onto the slope of the robust line
    through all of them (``onto_robust_slope``) it does not."""
    before, after = [], []
    for seed in range(16):
        rng = np.random.default_rng(100 + seed)
        evs = []
        for k in range(75):
            d = int((10 + 4 * k) * NS)
            off, s = _offset(d, 60.0) + rng.normal(0, 6e6), rng.uniform(3e6, 40e6)
            if rng.uniform() < 0.1:
                off, s = off + rng.uniform(15e6, 30e6), rng.uniform(3e6, 10e6)
            evs.append(OffsetEstimate("log", d, int(off), int(s * OVERLAP ** 0.5), "hybrid"))
        kept, _tau, _dropped = robust_weighed(evs, OVERLAP)
        turned = onto_robust_slope(kept)
        assert [(e.device_ns, e.sigma_ns) for e in turned] == [(e.device_ns, e.sigma_ns) for e in kept]
        before.append(abs(_drift_error_ppm(kept, 60.0)))
        after.append(abs(_drift_error_ppm(turned, 60.0)))
    assert np.median(before) > 1.5 * np.median(after), (before, after)
    assert np.median(after) < 10.0, after


def test_windows_on_their_line_are_not_turned():
    rng = np.random.default_rng(4)
    evs, _ = _windows(rng)
    turned = onto_robust_slope(evs)
    moved = np.array([t.offset_ns - e.offset_ns for e, t in zip(evs, turned, strict=True)], dtype=np.float64)
    spread = np.std([e.offset_ns - _offset(e.device_ns, 60.0) for e in evs])
    assert np.max(np.abs(moved)) < 0.5 * spread  # a turn within the slope's own noise, no more
    x = np.array([e.device_ns for e in evs], dtype=np.float64) / NS
    w = 1.0 / np.array([e.sigma_ns for e in evs], dtype=np.float64) ** 2
    assert abs(np.sum(w * moved)) / np.sum(w) < 1.0  # the weighted offset at the weighted centre stays
    line = weighted_line(x, np.array([t.offset_ns for t in turned], dtype=np.float64), w)
    assert line[1] == pytest.approx(theil_sen(x, np.array([e.offset_ns for e in evs], dtype=np.float64))[1], abs=2.0)
    assert onto_robust_slope(evs[:5]) == evs[:5]  # too few to say what their line is
