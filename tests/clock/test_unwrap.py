"""Unwrapper: 16/32-bit wraps, resets told apart from wraps (with and without host times), side readings."""

import numpy as np
import pytest

from synchub.agent.clock.unwrap import Unwrapper
from synchub.agent.core.units import NS


@pytest.mark.parametrize("bits,tick_hz,step", [(16, 1000.0, 7), (32, 1e6, 5000), (32, 1000.0, 100)])
def test_wraps_in_chunks(bits, tick_hz, step):
    start = max((1 << bits) - 10_000 * step, 12_345)  # the first wrap comes within the first 10000 samples
    true_ticks = np.arange(40_000, dtype=np.int64) * step + start
    raw = true_ticks % (1 << bits)
    u = Unwrapper(bits, tick_hz)
    parts = [u.unwrap(c) for c in np.array_split(raw, 13)]
    dev = np.concatenate([p.device_ns for p in parts])
    expect = np.rint(true_ticks * (NS / tick_hz)).astype(np.int64)
    np.testing.assert_array_equal(dev, expect)
    assert u.resets == 0 and u.wraps == true_ticks[-1] // (1 << bits) - true_ticks[0] // (1 << bits) >= 1


def test_reset_without_host_time():
    u = Unwrapper(32, 1e6, max_gap_s=10.0)
    raw = np.array([3_000_000_000, 3_000_005_000, 100, 5100, 10100])  # counter restarted near 0
    out = u.unwrap(raw)
    assert out.resets == [2] and u.resets == 1
    assert out.segment.tolist() == [0, 0, 1, 1, 1]
    assert out.device_ns[2:].tolist() == [100_000, 5_100_000, 10_100_000]


def test_host_time_tells_wrap_from_reset():
    # 16-bit ms counter wraps every 65.5 s; host says 65.536 s + 5 ms passed: a wrap (plus 5 ticks)
    u = Unwrapper(16, 1000.0, host_tol_s=0.5)
    h0 = 10 * NS
    out = u.unwrap([100, 105], [h0, h0 + 65_541_000_000])
    assert out.resets == [] and out.device_ns[1] - out.device_ns[0] == 65_541_000_000
    # only 1 s passed on the host but the counter moved 30 s: a reset
    out = u.unwrap([30_105], [h0 + 66_541_000_000])
    assert out.resets == [0] and out.segment[0] == 1
    # USB buffering: several readings with the same host stamp are fine
    out = u.unwrap([30_110, 30_115, 30_120], [h0 + 66_560_000_000] * 3)
    assert out.resets == [] and np.all(np.diff(out.device_ns) == 5_000_000)


def test_a_late_reader_is_not_a_reset():
    u = Unwrapper(32, 1e6, host_tol_s=0.5)
    u.unwrap([1000, 6000], [NS, NS + 1_000_000])
    out = u.unwrap([11_000, 16_000], [NS + 5 * NS] * 2)  # the reader stalled 5 s, then read buffered samples
    assert out.resets == [] and out.device_ns.tolist() == [11_000_000, 16_000_000]
    out = u.unwrap([16_000 + 3_000_000], [NS + 5 * NS + 10_000_000])  # 3 s ahead of the host: a reset
    assert out.resets == [0]


def test_host_time_counts_multiple_wraps_after_a_long_silence():
    u = Unwrapper(16, 1000.0)
    u.unwrap([1000], [0])
    out = u.unwrap([1000 + 10], [3 * 65_536_000_000 + 10_000_000])  # three wraps + 10 ms later
    assert out.resets == [] and out.device_ns[0] == (1000 + 3 * 65536 + 10) * 1_000_000


def test_peek_nearest():
    u = Unwrapper(16, 1000.0)
    u.unwrap(np.arange(65_000, 65_536 + 600, 100) % 65536)
    assert u.peek(65_530) == 65_530 * 1_000_000  # just before the wrap: behind the last reading
    assert u.peek(700) == (65_536 + 700) * 1_000_000
    assert Unwrapper(32, 1e6).peek(5) == 5000


@pytest.mark.parametrize("host", [True, False])
def test_a_time_that_never_wraps_a_little_behind_the_newest_is_kept_and_no_reset(host):
    """A line printed late (up to ``back_s`` behind): its own time, no reset, and the newest stays the reference;
    the clock layer decides whether the clock went back (``timeline.RESET_CONFIRM``)."""
    u = Unwrapper(64, 1e9)
    raw = np.array([10, 10.5, 10.4, 11.0, 11.5, 2.0, 12.0]) * NS  # 0.1 s late, then 9.5 s late
    out = u.unwrap(raw.astype(np.int64), np.arange(7) * 500_000_000 + 20 * NS if host else None)
    assert out.resets == [] and u.resets == 0 and u.behind == 2
    assert out.device_ns.tolist() == raw.astype(np.int64).tolist()


def test_far_behind_or_on_a_wrapping_counter_a_step_back_is_still_a_reset():
    u = Unwrapper(64, 1e9)
    out = u.unwrap(np.array([60, 61, 40]) * NS)  # 21 s behind: more than a late line
    assert out.resets == [2] and u.behind == 0
    u = Unwrapper(32, 1e6)  # a counter's reading behind: a restart (its era differs from a late reading's)
    out = u.unwrap([30_000, 30_100, 30_050], [NS, NS + 10_000_000, NS + 20_000_000])
    assert out.resets == [2] and u.behind == 0 and out.device_ns[2] == 30_050_000
