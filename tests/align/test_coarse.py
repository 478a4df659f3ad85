"""``align.coarse``: the offset of two clocks that started far apart, from their whole event trains, and
``synchub align`` searching there where its windows around the files' prior found nothing.

Before: a marker log whose clock started 37 s from the microphone's was refused (every window searched +-2 s around
the prior, "low confidence" and "no reference samples"), with nothing that said why or what to do."""

from __future__ import annotations

import re

import numpy as np
import pytest
from support.signals import tone_bursts

from synchub.agent.align.coarse import EventTrain, coarse_fit, coarse_offset, support
from synchub.agent.align.files.engine import AlignError, FileAlignment, InputOptions, InputSpec
from synchub.agent.core.units import NS

sf = pytest.importorskip("soundfile")


def _train(n=120, seed=0, lo=1.0, hi=3.0):
    return np.cumsum(np.random.default_rng(seed).uniform(lo, hi, n)) * NS


@pytest.mark.parametrize("offset_s", [-37.25, 0.4, 123.0])
def test_the_offset_of_two_trains_with_drift_jitter_and_missing_or_extra_events(offset_s):
    rng = np.random.default_rng(3)
    ref = _train()
    seen = ref[rng.random(len(ref)) > 0.3]  # the log misses 30 % of the sounds ...
    tgt = (seen - offset_s * NS) * (1 + 150e-6) + rng.normal(0, 5e6, len(seen))  # ... on a drifting clock
    noise = np.sort(rng.uniform(ref[0], ref[-1], 60))  # ... and the microphone hears 60 other sounds
    r = np.sort(np.concatenate([ref, noise]))
    found = coarse_offset(r, tgt, float(r[0] - tgt[-1]), float(r[-1] - tgt[0]))
    assert found is not None and abs(found.offset_ns - offset_s * NS) < 60e6, found  # within the drift's smear
    assert found.matched >= 0.8 * len(tgt) and found.second < 0.5 * found.matched


def test_periodic_or_unrelated_trains_give_no_answer():
    periodic = np.arange(100) * 2 * NS
    assert coarse_offset(periodic, periodic[:60] + 7 * NS, -300e9, 300e9) is None  # a pile at every period
    a, b = _train(seed=1), _train(seed=2)
    assert coarse_offset(a, b, float(a[0] - b[-1]), float(a[-1] - b[0])) is None  # nothing in common
    assert coarse_offset(a[:3], a[:3], -1e9, 1e9) is None  # too few


@pytest.mark.parametrize("ppm", [-4800.0, -1500.0, 2100.0, 4000.0])
def test_a_clock_that_runs_off_by_thousands_of_ppm_is_found_with_its_rate(ppm):
    """An Arduino Uno's millis() runs on a ceramic resonator, off by up to 0.5 %: over 10 minutes its events smear
    over seconds and no offset piles up; stretched by the rate, they do."""
    rng = np.random.default_rng(4)
    ref = _train(n=300)
    seen = ref[rng.random(len(ref)) > 0.2]  # the log misses a fifth, and stamps each within a few ms
    tgt = (seen + 12.3 * NS) * (1 + ppm * 1e-6) + rng.normal(0, 3e6, len(seen))
    assert coarse_offset(ref, tgt, float(ref[0] - tgt[-1]), float(ref[-1] - tgt[0])) is None or abs(ppm) < 300
    found = coarse_fit(ref, tgt)
    assert found is not None and abs(found.rate * 1e6 + ppm) <= 200, found  # ref = c + (t - c)(1 + rate) + offset
    mapped = found.centre_ns + (tgt - found.centre_ns) * (1 + found.rate) + found.offset_ns
    want = tgt / (1 + ppm * 1e-6) - 12.3 * NS
    assert np.median(np.abs(mapped - want)) < 0.05 * NS
    for seed in range(5):  # trains with nothing in common find no rate that lines them up
        assert coarse_fit(_train(seed=10 + seed), _train(seed=20 + seed)) is None


def test_support_tells_a_links_offset_from_chance():
    """``support``: one offset asked about, not the best of all.  A microphone's onsets (70 % of the log's sounds,
    about 20 ms late, among 200 other sounds): the log's true mapping lines up far more than chance; the same mapping
    0.7 s off (inside the windows' search range), or a periodic train (every shift of a period lines up as much),
    does not."""
    rng = np.random.default_rng(5)
    log = _train(n=120, seed=5)
    heard = log[rng.random(len(log)) < 0.7]
    mic = np.sort(np.concatenate([heard + rng.normal(20e6, 10e6, len(heard)), rng.uniform(0, log[-1], 200)]))
    s = support(mic, log)
    assert s.beyond_chance and s.matched >= 0.6 * len(heard) and s.chance < 0.3 * s.matched, s
    assert not support(mic, log + 0.7 * NS).beyond_chance
    periodic = np.arange(100) * 2.0 * NS
    assert not support(periodic, periodic[10:60]).beyond_chance  # every 2 s lines up as many
    assert not support(mic[:1], log).beyond_chance and not support(mic, log[:0]).beyond_chance


@pytest.mark.parametrize("seed", [5, 12])
def test_a_few_windows_that_found_an_offset_by_chance_tie_nothing(tmp_path, seed):
    """Before: a log of sounds the microphone never heard (240 s, tone bursts) was tied where 4-6 of its 60 windows
    found offsets on one line by chance, the whole recordings' events lining up nowhere (a log of speech 30 s off a
    recording in 0 dB babble: mapped 30 s wrong under a 24 ms sigma).  Now the windows' offset is asked of the two
    event trains, and lines up no more events than any other: refused, with why."""
    x, onsets = tone_bursts(16000, 240.0, seed=seed)
    sf.write(tmp_path / "mic.wav", x, 16000)
    other = np.sort(np.random.default_rng(100 + seed).uniform(1.0, 238.0, len(onsets)))
    (tmp_path / "log.csv").write_text("time,event\n" + "".join(f"{t:.6f},tone\n" for t in other))
    fa = FileAlignment([InputSpec([str(tmp_path / "mic.wav")]), InputSpec([str(tmp_path / "log.csv")])])
    with pytest.raises(AlignError, match=r"windows that found an offset \(of \d+\) are chance peaks: their offset "
                                         r"lines up \d+ of the recordings' events, as many as others do"):
        fa.gather()


def test_a_train_fed_in_pieces_of_any_size_finds_the_same_events():
    rate = 8000
    x, onsets = tone_bursts(rate, 60.0)
    t = (np.arange(len(x)) * (NS / rate)).astype(np.int64)
    got = []
    for piece in (997, 8000, 100_000):
        tr = EventTrain("audio", "marker")
        for a in range(0, len(x), piece):
            tr.add(t[a:a + piece], x[a:a + piece, None])
        got.append(tr.finish())
    for ev in got:
        assert len(ev) == len(onsets) and np.max(np.abs(ev - onsets * NS)) < 3e6


def test_a_live_train_has_the_events_of_the_samples_so_far_and_lets_old_ones_go():
    """``since``: the events up to the last sample fed (not only those of whole 16 s windows: a live tracker asks
    every few seconds); ``forget``: memory bounded."""
    rate = 8000
    x, onsets = tone_bursts(rate, 60.0)
    t = (np.arange(len(x)) * (NS / rate)).astype(np.int64)
    tr = EventTrain("audio", "marker")
    tr.add(t[:30 * rate], x[:30 * rate, None])
    got = tr.since(0)
    want = onsets[onsets < 29.9]
    assert len(got) == len(want) and np.max(np.abs(got - want * NS)) < 3e6  # 30 s, not 16
    tr.add(t[30 * rate:], x[30 * rate:, None])
    assert len(tr.since(0)) == len(onsets)
    tr.forget(40 * NS)
    left = tr.since(0)
    assert left.min() > 40 * NS - 16 * NS and np.sum(left >= 40 * NS) == np.sum(onsets >= 40)


def _files(tmp_path, offset_s, times=None):
    x, onsets = tone_bursts(16000, 120.0)
    sf.write(tmp_path / "mic.wav", x, 16000)
    logged = (onsets if times is None else times) * (1 + 40e-6) + offset_s
    (tmp_path / "log.csv").write_text("time,event\n" + "".join(f"{t:.6f},tone\n" for t in logged))
    return onsets, logged


def test_synchub_align_finds_a_log_whose_clock_started_far_away(tmp_path):
    onsets, logged = _files(tmp_path, -37.25)
    fa = FileAlignment([InputSpec([str(tmp_path / "mic.wav")]), InputSpec([str(tmp_path / "log.csv")])])
    fa.gather()
    link = fa.inputs[1].link
    assert "its clock is +37.2" in link.notes[0] and "--offset-s" in link.notes[0], link.notes
    mapped, _ = link.map(np.rint(logged * NS).astype(np.int64), np.zeros(len(logged), dtype=np.int64))
    assert np.max(np.abs(mapped - onsets * NS)) < 3e6


@pytest.mark.parametrize("ppm", [3000.0, -5000.0])
def test_synchub_align_ties_a_log_whose_clock_runs_off_by_thousands_of_ppm(tmp_path, ppm):
    """Before: refused beyond ~1000 ppm (a 16 s window's events smeared by 16+ ms, the whole recording's by
    most of a second in these 150 s), and the clock model took no line steeper than 4000 ppm.  Now the whole recording's rate is found,
    the windows search the stretched times, and the model's skew prior allows it."""
    x, onsets = tone_bursts(16000, 150.0, seed=3)
    sf.write(tmp_path / "mic.wav", x, 16000)
    logged = onsets * (1 + ppm * 1e-6) + 12.3
    (tmp_path / "log.csv").write_text("time,event\n" + "".join(f"{t:.6f},tone\n" for t in logged))
    fa = FileAlignment([InputSpec([str(tmp_path / "mic.wav")]), InputSpec([str(tmp_path / "log.csv")])])
    fa.gather()
    link = fa.inputs[1].link
    said = re.search(r"its clock runs about ([+-]\d+) ppm", link.notes[0])
    assert said and abs(float(said.group(1)) - ppm) <= 300, link.notes
    mapped, unc = link.map(np.rint(logged * NS).astype(np.int64), np.zeros(len(logged), dtype=np.int64))
    assert np.max(np.abs(mapped - onsets * NS)) < 3e6 and np.all(unc < 5e6)


def test_an_offset_given_is_searched_around_and_a_log_of_other_sounds_says_what_to_try(tmp_path):
    onsets, _ = _files(tmp_path, -37.25)
    wrong = FileAlignment([InputSpec([str(tmp_path / "mic.wav")]),
                           InputSpec([str(tmp_path / "log.csv")], InputOptions(offset_s=30.0))])
    with pytest.raises(AlignError) as e:  # told where to look (7 s off): no search of the whole recording
        wrong.gather()
    assert "whole recording" not in str(e.value)
    other = np.sort(np.random.default_rng(7).uniform(1.0, 110.0, len(onsets)))  # a log of sounds not heard
    _files(tmp_path, 0.0, times=other)
    fa = FileAlignment([InputSpec([str(tmp_path / "mic.wav")]), InputSpec([str(tmp_path / "log.csv")])])
    with pytest.raises(AlignError, match="no offset stands out over the whole recording"):
        fa.gather()


def test_windows_that_do_not_agree_on_one_offset_are_chance_peaks():
    """A few accepted windows (fewer than the robust judge's ``MIN_JUDGED``) 1.5-3 s apart, or on a line no clock
    drifts by, made a link before (a log of sounds the microphone never heard, mapped seconds off); now refused."""
    from synchub.agent.align.files.judge import incoherent
    from synchub.agent.core.evidence import OffsetEstimate

    def evs(offsets_ms, step_s=8.0):
        return [OffsetEstimate("log", int(k * step_s * NS), int(o * 1e6), 20_000_000, "hybrid")
                for k, o in enumerate(offsets_ms)]

    assert incoherent(evs([0.0, -1472.0, -1861.0, -2996.0])).startswith("the 4 windows that found an offset do not")
    assert "drift" in incoherent(evs([0.0, 300.0]))  # 37,500 ppm
    assert incoherent(evs([300.0, 300.4, 299.8, 300.9, 301.2])) == ""  # one offset, a drift of 30 ppm
    assert incoherent(evs([300.0, 330.0, 290.0, 310.0, 5.0])) == ""  # one window 300 ms off: the robust judge's
    assert incoherent(evs([300.0])) == ""


def test_a_log_of_dates_and_times_against_a_wav_that_has_none(tmp_path):
    """A log stamped with wall-clock dates (its first line 32 s into the recording, not at its start, as the files'
    "started together" prior assumes) is found, and the note says what its clock read at the WAV's first sample."""
    from datetime import datetime, timedelta, timezone

    onsets, _ = _files(tmp_path, 0.0)
    t0 = datetime(2026, 11, 28, 10, 15, 0, tzinfo=timezone.utc)
    (tmp_path / "log.csv").write_text("timestamp,event\n" + "".join(
        f"{(t0 + timedelta(seconds=float(t) + 30.0)).isoformat()},tone\n" for t in onsets))
    fa = FileAlignment([InputSpec([str(tmp_path / "mic.wav")]), InputSpec([str(tmp_path / "log.csv")])])
    fa.gather()
    note = fa.inputs[1].link.notes[0]
    assert note.startswith("its clock read 2026-11-28T10:15:30.0") or note.startswith(
        "its clock read 2026-11-28T10:15:29.99"), note
