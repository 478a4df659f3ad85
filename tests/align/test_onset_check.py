"""``onset_check.EventAverage``: the average energy around a recording's mapped sound onsets shows a leading edge
that single onsets under loud background hide; a mapping is moved earlier only where that rise is clearly before
it, and never further than the mapping's own uncertainty allows."""

from __future__ import annotations

import numpy as np
import pytest

from synchub.agent.align.onset_check import EventAverage

FS = 8000
NS = 1_000_000_000


def _scene(n_events=60, swell_ms=80.0, level=1.0, background=0.6, seed=0, seconds=150.0, swing=0.3):
    """Amplitude-modulated noise (a babble-like background, its level's log drawn every 0.2 s with sd ``swing``:
    1.0 swings its power by 50x) with sounds at ``truth`` that swell linearly in amplitude over ``swell_ms`` (0: a
    step) and last 0.4 s."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    env = np.exp(rng.normal(0, swing, n // 1600 + 2))
    bg = rng.normal(0, 1, n) * np.interp(np.arange(n), np.arange(len(env)) * 1600, env) * background
    truth = np.sort(rng.choice(np.arange(2.0, seconds - 2.0, 1.7), n_events, replace=False)) + rng.uniform(0, 0.5,
                                                                                                        n_events)
    x = bg.copy()
    for t in truth:
        k = int(t * FS)
        m = int(0.4 * FS)
        amp = np.ones(m) if swell_ms <= 0 else np.minimum(np.arange(m) / (swell_ms * 1e-3 * FS), 1.0)
        x[k:k + m] += level * amp * rng.normal(0, 1, m)
    return np.arange(n, dtype=np.int64) * NS // FS, x, (truth * NS).astype(np.int64)


def _run(t, x, onsets, piece=4096, **kw):
    avg = EventAverage(onsets)
    for a in range(0, len(t), piece):
        avg.add(t[a:a + piece], x[a:a + piece])
    return avg.departure(**kw)


def test_a_late_mapping_under_loud_background_is_moved_earlier_but_not_past_the_onsets():
    t, x, truth = _scene()
    dep = _run(t, x, truth + 30_000_000)  # every mapped onset 30 ms late, as windows in babble agree on
    assert dep is not None and dep.events == 60
    assert -30e6 <= dep.shift_ns <= -8e6  # earlier, by no more than it was late: the swell's start may stay hidden
    assert dep.latest_ns < -5e6


def test_a_right_mapping_and_sharp_onsets_stay_where_they_are():
    t, x, truth = _scene()
    assert _run(t, x, truth).shift_ns == 0
    t, x, truth = _scene(swell_ms=0.0, seed=2)
    dep = _run(t, x, truth)
    assert dep.shift_ns == 0 and -3e6 <= dep.departure_ns <= 1e6  # a step's rise: in its own 1 ms bin


def test_no_shift_beyond_what_the_mapping_s_uncertainty_allows():
    t, x, truth = _scene()
    late = truth + 30_000_000
    assert _run(t, x, late, limit_ns=10e6).shift_ns == 0
    assert _run(t, x, late, limit_ns=40e6).shift_ns < 0


@pytest.mark.parametrize("what", ["no sounds", "too few", "nothing around the onsets"])
def test_without_a_clear_rise_or_enough_onsets_there_is_no_answer(what):
    # no sounds in a background whose power swings by 50x: a mean of the power followed its loudest few swings
    # and saw a rise 70 ms before the onsets (the log of the power does not)
    t, x, truth = _scene(level=0.0 if what == "no sounds" else 1.0, swing=1.0 if what == "no sounds" else 0.3)
    if what == "too few":
        truth = truth[:8]
    if what == "nothing around the onsets":
        truth = truth + 10**12  # past the recording: no whole window
    assert _run(t, x, truth) is None


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_swinging_background_alone_moves_nothing(seed):
    t, x, truth = _scene(level=0.0, swing=1.0, seed=seed)
    dep = _run(t, x, truth)
    assert dep is None or dep.shift_ns == 0


def test_pieces_of_any_size_give_the_same_answer():
    t, x, truth = _scene(seconds=60.0, n_events=25)
    late = truth + 20_000_000
    a, b = _run(t, x, late, piece=len(t)), _run(t, x, late, piece=777)
    assert a == b
