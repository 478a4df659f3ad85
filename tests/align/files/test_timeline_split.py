"""TimelineSplit: a stream's clock resets (a step back that stays back) apart from samples out of time order."""

from __future__ import annotations

import numpy as np
import pytest

from synchub.agent.align.files.tracks import RESET_CONFIRM, TimelineSplit

NS = 1_000_000_000


def _split(seconds, pieces=1):
    t = (np.asarray(seconds, dtype=np.float64) * NS).astype(np.int64)
    s = TimelineSplit()
    for part in np.array_split(np.arange(len(t)), pieces):
        if len(part):
            s.feed(t[part])
    s.finish()
    return s, s.timeline_of(np.arange(len(t))).tolist()


@pytest.mark.parametrize("pieces", [1, 3, 12])  # one piece, a few, one sample each (an XDF marker stream)
def test_a_reset_starts_a_timeline_and_a_row_logged_late_does_not(pieces):
    s, tl = _split([10, 11, 12, 15, 13.5, 16, 17, 18, 2, 3, 4, 5], pieces)
    assert s.starts == [8] and tl == [0] * 8 + [1] * 4
    assert s.out_of_order == 1  # 13.5 came after 15, then the log went on


def test_up_to_reset_confirm_rows_out_of_order_keep_the_timeline():
    assert RESET_CONFIRM == 3
    s, tl = _split([1, 2, 25, 20, 21, 22, 26, 27])  # three rows of a merged log came late
    assert s.starts == [] and set(tl) == {0} and s.out_of_order == 3
    s, tl = _split([30, 31, 32, 20, 21, 22, 23, 24])  # one more that stays back: the clock reset
    assert s.starts == [3] and tl == [0, 0, 0, 1, 1, 1, 1, 1] and s.out_of_order == 0


def test_steps_back_under_a_second_and_a_reset_at_the_very_end():
    s, tl = _split([1, 2, 3, 2.2, 4, 5])  # jitter, not a reset nor out of order
    assert s.starts == [] and s.out_of_order == 0
    s, tl = _split([10, 11, 12, 1, 2])  # too few samples after it to tell: kept, counted
    assert s.starts == [] and s.out_of_order == 2 and set(tl) == {0}


@pytest.mark.parametrize("pieces", [1, 4, 10])
def test_one_sample_ahead_of_its_time_is_counted_and_the_timeline_goes_on(pieces):
    """A row stamped 100 s ahead (a glitch): before, every row after it was a new timeline's (39 of 60 markers of a
    test log left unmapped)."""
    s, tl = _split([1, 2, 3, 103, 4, 5, 6, 7, 8, 9], pieces)
    assert s.starts == [] and set(tl) == {0} and s.out_of_order == 1
    s, tl = _split([1, 2, 3, 103, 4, 5], pieces)  # near the end: still the one sample
    assert s.starts == [] and s.out_of_order == 1
    s, tl = _split([1, 2, 3, 103, 104, 105, 106, 107, 108, 109], pieces)  # a clock that jumped ahead and went on
    assert s.starts == [] and s.out_of_order == 0


@pytest.mark.parametrize("piece", [1, 7, 5000])
def test_sync_pulses_take_the_timeline_their_sample_ends_on(piece):
    """A TTL channel whose device clock resets: each pulse is on its own sample's timeline, whatever the chunking
    (a reset is only confirmed by the samples after it, which may come in later pieces)."""
    from synchub.agent.align.files.tracks import StreamTrack
    from synchub.agent.core.stream import StreamInfo
    from synchub.agent.formats.readers.base import FileStream, InputOptions, Piece

    rate, n = 1000, 4000
    t = np.arange(n, dtype=np.int64) * (NS // rate) + 100 * NS
    t[2100:] -= 60 * NS  # the clock went back a minute at sample 2100
    ttl = ((np.arange(n) % 250) < 10).astype(np.float32)  # a pulse every 250 ms, 16 in all
    info = StreamInfo("daq", "other", float(rate), 1, channel_labels=("sync",))
    tr = StreamTrack(FileStream("daq", info), InputOptions(sync="sync", dejitter=False), "table", True)
    for a in range(0, n, piece):
        tr.gather(Piece("daq", a, t[a:a + piece], ttl[a:a + piece, None]))
    tr.finish()
    assert tr.timelines == 1 and tr.split.out_of_order == 0
    at = np.array([int(round(q[0])) for q in tr.pulses])
    tl = np.array([q[3] for q in tr.pulses])
    assert len(at) >= 14 and np.array_equal(tl, (at >= 2100).astype(int)), (at, tl)
