"""Sync pulses in data channels (TTL, photodiode, audio click), the dejitter lines, and the TPrime-style pairing of
edges across streams: pure classes on synthetic data, any chunking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synchub.agent.align.files.links import decode_barcodes
from synchub.agent.align.files.sync_edges import PulseFinder
from synchub.agent.clock.barcode import encode_barcode
from synchub.agent.clock.dejitter import JitterFit
from synchub.agent.clock.edge_pairs import pair_codes, pair_edges
from synchub.bench.files.simulate import click_signal, photodiode_level, ttl_level

NS = 1_000_000_000
RNG = np.random.default_rng(5)
RISES = np.cumsum(RNG.uniform(0.5, 1.5, 30)) * NS
FS = 1000.0
T = (np.arange(int(40 * FS)) / FS * NS).astype(np.int64)


def _feed(finder, x, cuts, t=None):
    out = []
    bounds = [0, *sorted(set(cuts)), len(x)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b > a:
            out += finder.feed(a, x[a:b], None if t is None else t[a:b])
    return out + finder.finish()


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, len(T) - 1), max_size=12))
def test_ttl_edges_within_half_a_sample_whatever_the_chunking(cuts):
    x = ttl_level(T, RISES.astype(np.int64), 50_000_000) + np.random.default_rng(1).normal(0, 0.02, len(T))
    pulses = _feed(PulseFinder("ttl"), x, cuts, T)
    assert len(pulses) == len(RISES)
    got = np.array([p.t_ns for p in pulses])
    assert np.max(np.abs(got - RISES)) <= 0.55 * NS / FS  # half a sample, and the noise on the levels
    assert np.allclose([p.width for p in pulses], 50, atol=1)


def test_photodiode_edges_at_half_level_and_a_width_rule():
    x = photodiode_level(T, RISES.astype(np.int64), 50_000_000, tau_ns=3e5) + RNG.normal(0, 0.01, len(T))
    x[int(10.2 * FS):int(10.205 * FS)] += 1.0  # a 5 ms flash: not a sync pulse
    pulses = _feed(PulseFinder("photodiode", min_width=30, max_width=80), x, [777, 5000], T)
    assert len(pulses) == len(RISES)
    lag = np.array([p.t_ns for p in pulses]) - RISES
    assert np.all(np.abs(lag - 3e5 * np.log(2)) < 0.5 * NS / FS)  # the sensor's half-level delay, within a sample


def test_click_train_in_an_audio_channel():
    rate = 16000
    pos = RISES / NS * rate
    x = click_signal(0, 40 * rate, rate, pos) + RNG.normal(0, 0.001, 40 * rate)
    pulses = _feed(PulseFinder("click", merge=32), x, list(range(0, 40 * rate, 4096)))
    idx = np.array([p.index for p in pulses])
    assert len(idx) == len(pos) and np.max(np.abs(idx - pos)) < 1.0


def test_a_channel_without_two_levels_gives_no_pulse_and_says_why():
    f = PulseFinder("ttl")
    assert _feed(f, RNG.normal(0, 1, 5000), [1000]) == []
    assert f.stats == {"no_levels": 1}


def test_dejitter_lines_whatever_the_chunking_and_breaks_at_gaps_and_resets():
    rate = 100.0
    dev = np.concatenate([np.arange(3000) * 10_000_000, 40 * NS + np.arange(2000) * 10_000_000,
                          5 * NS + np.arange(1000) * 10_000_000]).astype(np.int64)  # a 10 s gap, then a reset
    stamps = dev + RNG.normal(0, 2e6, len(dev)).astype(np.int64)
    fits = []
    for step in (len(dev), 97, 1000):
        j = JitterFit(rate)
        for a in range(0, len(dev), step):
            j.add(a, stamps[a:a + step])
        fits.append(np.concatenate([j.apply(a, stamps[a:a + 333]) for a in range(0, len(dev), 333)]))
    assert [s["first_sample"] for s in j.segments()] == [0, 3000, 5000]
    assert np.max(np.abs(fits[0] - fits[1])) <= 1 and np.max(np.abs(fits[0] - fits[2])) <= 1
    assert np.sqrt(np.mean((fits[0] - dev) ** 2)) < 0.1e6  # 2 ms of jitter down to a line's error


def test_random_intervals_pair_by_their_pattern_despite_drift_and_missing_pulses():
    ref = np.cumsum(RNG.uniform(0.5, 1.5, 1500) * NS).astype(np.int64)
    keep = RNG.random(len(ref)) > 0.1
    src = ((ref[keep] - 91_300_000_000) * (1 + 150e-6)).astype(np.int64)  # the source clock: 91 s behind, fast
    p = pair_edges(src, ref, sample_ns=1_000_000)
    assert p.how == "intervals" and p.n == keep.sum()
    assert np.array_equal(p.ref, ref[keep])


def test_a_periodic_train_is_ambiguous_and_the_prior_chooses():
    ref = (np.arange(600) * NS + 300_000_000).astype(np.int64)
    src = ((ref - 3_000_000_000) * (1 - 50e-6)).astype(np.int64)
    p = pair_edges(src, ref, prior_ns=2_900_000_000, sample_ns=1_000_000)
    assert p.how == "prior" and p.n == len(ref)
    assert np.array_equal(p.ref, ref)  # every pulse with its own partner
    far = pair_edges(src, ref, prior_ns=4_100_000_000, sample_ns=1_000_000)
    assert far.how == "prior" and np.array_equal(far.ref, ref[1:])  # a whole period off: the prior's choice


def test_barcodes_pair_by_value():
    def edges(t0, skew):
        e = []
        for k in range(12):
            e += [(int((t0 + k * 5 * NS) * skew + dt), lvl) for dt, lvl in encode_barcode(1000 + k, 0, 10_000_000)]
        return e

    def pulses(e):
        rises = [t for t, lvl in e if lvl == 1]
        falls = [t for t, lvl in e if lvl == 0]
        return np.array(rises), np.array(falls) - np.array(rises)

    a = decode_barcodes(*pulses(edges(0, 1.0)))
    b = decode_barcodes(*pulses(edges(7 * NS, 1 + 1e-4)))
    assert [v for _, v in a] == list(range(1000, 1012)) == [v for _, v in b]
    p = pair_codes(b, a)
    assert p.how == "barcodes" and p.n == 12


@pytest.mark.parametrize("kind", ["bogus"])
def test_unknown_pulse_kind_is_refused(kind):
    with pytest.raises(ValueError, match="unknown pulse kind"):
        PulseFinder(kind)
