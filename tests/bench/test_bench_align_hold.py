"""``bench align``'s hold of a target's earliest events (``bench/align/hold.py``): events the hybrid could only map
on an arrival envelope whose latency no offset has judged wait for the first offset and are mapped with it."""

from functools import partial

import numpy as np

from synchub.agent.clock.model import ClockModel
from synchub.agent.core.evidence import OffsetEstimate
from synchub.bench.align import pairs as B
from synchub.bench.align.hold import EarlyHold

S = 1_000_000_000
OFF = -1_455_000_000  # ref - device
DRIFT_PPM = 60.0  # the device runs fast: ref - device falls by 60 us per second


def _true(d):
    return d + OFF - np.rint(DRIFT_PPM * 1e-6 * (d - 2 * S)).astype(np.int64)


def _camera(until_s: float) -> ClockModel:
    """A 30 fps camera behind a 30-80 ms link: its arrival envelope is ~30 ms late and tight (a few ms)."""
    rng = np.random.default_rng(3)
    dev = np.arange(2 * S, int(until_s * S), 33_333_333, dtype=np.int64)
    model = ClockModel("video", skew_prior_ppm=300.0)
    model.add_arrivals(dev, _true(dev) + 30_000_000 + rng.integers(0, 50_000_000, len(dev)))
    return model


def _offset(model: ClockModel, offsets: list, at: int, bias: int, sigma: int) -> None:
    """A window's offset at ``at`` (``bias`` off the truth) into the model and the list, as ``pairs.feed_window``."""
    o = (at, int(_true(np.array([at]))[0] - at) + bias, sigma)
    model.add_offset(OffsetEstimate("video", *o, source="hybrid"))
    offsets.append(o)


def test_sparse_early_windows_wait_for_a_late_first_offset_and_land_on_it():
    """The first three windows abstained (two events each): their events, mapped on the envelope alone, are ~30 ms
    late; held until the first offset (window 4, 20 s in), they come out within the offset's error plus the drift
    over the distance, and report the offset's sigma grown by the skew prior."""
    hold = EarlyHold(60 * S)
    model = _camera(10.0)
    early = np.array([3, 4, 6, 7, 10, 11], dtype=np.int64) * S
    for w in range(3):
        d = early[2 * w: 2 * w + 2]
        mapped, unc = B.hybrid_map_unc(model, d, [])
        assert np.all(mapped - _true(d) > 25_000_000)  # the envelope alone: late by the link
        hold.hold(d, _true(d), mapped, unc)
    assert hold.waiting == 6
    model = _camera(22.0)
    first = 22 * S
    offsets = [(first, int(_true(np.array([first]))[0] - first + 1_000_000), 9_000_000)]  # 1 ms off, 9 ms sigma
    mapper = partial(B.hybrid_map_unc, model, offsets=offsets, skew_prior_ppm=300.0)
    assert [len(x) for x in hold.release(mapper, first)] == [0, 0, 0]  # the first judged look: held on
    t, m, u = hold.release(mapper, first)  # the next window: the same mapping, settled
    assert hold.waiting == 0 and hold.held == 6 and hold.expired == 0 and hold.max_wait_ns == 19 * S
    err = np.abs(m - t)
    assert np.all(err < 1_000_000 + DRIFT_PPM * 1e-6 * 20 * S + 100_000), err  # the offset + drift, not 30 ms
    assert np.all(u >= 9_000_000) and u[0] > u[-1]  # the farthest event: the widest sigma


def test_a_hold_that_runs_out_keeps_its_last_mapping_and_flush_releases_the_rest():
    hold = EarlyHold(10 * S)
    hold.hold(np.array([S, 3 * S]), np.array([5, 6]), np.array([50, 60]), np.array([7.0, 7.0]))
    hold.hold(np.array([15 * S]), np.array([7]), np.array([70]), np.array([7.0]))

    def mapper(value, unc):
        return lambda d: (np.full(len(d), value), np.full(len(d), unc))

    # the first judged look (12 s): the first event's wait has run out (11 s), never remapped: its first mapping;
    # the others are remapped and wait on (nothing to tell yet whether their mapping still sharpens)
    t, m, u = hold.release(mapper(1, 4.0), 12 * S)
    assert t.tolist() == [5] and m.tolist() == [50] and u.tolist() == [7.0]
    assert hold.waiting == 2 and hold.held == 0 and hold.expired == 1
    # 13 s: the uncertainty halved (still sharpening): they wait on with the new mapping
    assert [len(x) for x in hold.release(mapper(1, 2.0), 13 * S)] == [0, 0, 0] and hold.waiting == 2
    # 14 s: the second event's wait runs out: released with the last mapping it had (1), not its first (60); the
    # third's moved by 3 (more than half its sigma of 2): still sharpening
    t, m, u = hold.release(mapper(4, 1.8), 14 * S)
    assert t.tolist() == [6] and m.tolist() == [1] and u.tolist() == [2.0] and hold.held == 1
    # 16 s: 1.8 -> 1.7, moved by 0: settled, released with this mapping
    t, m, u = hold.release(mapper(4, 1.7), 16 * S)
    assert t.tolist() == [7] and m.tolist() == [4] and u.tolist() == [1.7]
    assert hold.held == 2 and hold.expired == 1 and hold.waiting == 0 and hold.max_wait_ns == S
    assert [len(x) for x in hold.release(mapper(5, 1.0), 17 * S)] == [0, 0, 0]  # nothing left
    hold.hold(np.array([20 * S]), np.array([8]), np.array([80]), np.array([9.0]))
    t, m, u = hold.flush()  # the stream ended without an offset: as first mapped
    assert t.tolist() == [8] and m.tolist() == [80] and hold.expired == 2 and hold.waiting == 0
    assert [len(x) for x in EarlyHold(S).flush()] == [0, 0, 0]


def test_hybrid_events_hold_until_three_offsets_have_judged_the_envelope_and_the_mapping_settles():
    """No offset, then one and two: every event waits (one or two offsets cannot tell a late envelope from a wrong
    offset); from the third on the held events are remapped each window and wait on while that mapping sharpens;
    once settled they come out first, mapped with the offsets, then the window's own events."""
    model = _camera(40.0)
    hold = EarlyHold(60 * S)
    offsets: list = []
    released = []
    for w, d0 in enumerate((4, 8, 12, 16, 20, 24, 28)):
        d = np.array([d0 * S, d0 * S + S // 2], dtype=np.int64)
        if w:
            _offset(model, offsets, (d0 - 1) * S, 0, 3_000_000)
        got = B.hybrid_events(hold, model, d, _true(d), offsets, d0 * S, 300.0)
        if w <= 3:  # the third offset (w 3) is the first judged look: held on, nothing to compare yet
            assert got == [] and hold.waiting == 2 * (w + 1)
        released.extend(len(t) for t, _m, _u in got)
        for t, m, _u in got:
            assert np.all(np.abs(m - t) < 4_000_000)  # the offsets' view, not the envelope 30 ms late
    assert sum(released) == 14 and hold.waiting == 0 and hold.held >= 8 and hold.expired == 0
    no_hold = EarlyHold(0)
    d = np.array([5 * S], dtype=np.int64)
    (t, m, _u), = B.hybrid_events(no_hold, model, d, _true(d), [], 5 * S, 300.0)  # hold_s 0: as before
    assert m[0] - t[0] > 25_000_000 and no_hold.waiting == 0


def test_coarse_first_offsets_then_a_precise_one_the_held_events_wait_for_it():
    """The class of an IMU+Audio world's first events: three coarse neural offsets (5 ms biased, 6 ms sigma) judge
    the envelope; the fourth window's classical offset (0.5 ms) is the one to map them with: the held events wait
    through the window it cut their uncertainty in and come out within ~1 ms, not 5."""
    model = _camera(40.0)
    hold = EarlyHold(60 * S)
    offsets: list = []
    out = []
    for w, d0 in enumerate((4, 8, 12, 16, 20, 24, 28, 32)):
        d = np.array([d0 * S + S // 4], dtype=np.int64)
        if w:
            _offset(model, offsets, (d0 - 1) * S, *((5_000_000, 6_000_000) if w <= 3 else (0, 500_000)))
        out.extend(B.hybrid_events(hold, model, d, _true(d), offsets, d0 * S, 300.0))
    out.append(hold.flush())
    t = np.concatenate([x[0] for x in out])
    m = np.concatenate([x[1] for x in out])
    assert len(t) == 8 and hold.expired == 0
    assert np.all(np.abs(m - t) < 1_500_000), np.abs(m - t) / 1e6
