"""The neural path out of its depth (``align.disagreement``): a run of windows where a confident classical result and
the neural one disagree, the classical ones on one line, hands the pair to the classical correlation alone: in the
pure rule, the window aligner's abstention, ``synchub align``'s aligner link and the live tracker.

The case that found it: tone bursts in a microphone's WAV and a marker log of "tone" lines.  The neural path put
every window ~110 ms late (a sound unlike the encoders' training) while the onset correlation found each tone within
2 ms, and the hybrid abstained in every window: ``synchub align`` refused the log (at 8, 16 and 44.1 kHz)."""

from __future__ import annotations

import numpy as np
import pytest
from support.live_align import chunks, feed
from support.signals import tone_bursts

from synchub.agent.align.aligner import AlignResult
from synchub.agent.align.disagreement import DISAGREE, DisagreementRun, disagreed
from synchub.agent.align.files.engine import AlignError, FileAlignment, InputOptions, InputSpec
from synchub.agent.align.tracker import AlignmentTracker, calibrated_settings
from synchub.agent.align.window import load_runners, sigma_table
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.core.units import NS

sf = pytest.importorskip("soundfile")

W = 16 * NS


def _window(t_s: float, offset_ms: float, ok: bool = False, reason: str = DISAGREE + " by 110 ms (9.0 sigma)"):
    return AlignResult(ok, int(offset_ms * 1e6), 2_000_000, 12.0, int(t_s * NS), "hybrid", "" if ok else reason)


def test_a_consistent_run_over_two_window_lengths_decides():
    run = DisagreementRun(W)
    for k in range(9):  # centres 0..32 s: the run spans two windows' length only at the ninth
        decided = run.add(_window(4.0 * k, 300.0 + 0.05 * k))  # 300 ms, drifting 12.5 ppm
        assert decided == (k == 8), k
    assert "9 windows" in run.note() and "classical alone" in run.note()


def test_classical_offsets_off_one_line_a_fused_window_or_other_reasons_do_not_decide():
    rng = np.random.default_rng(1)
    run = DisagreementRun(W)
    for k in range(20):  # look-alike lags: the classical results jump between windows
        assert not run.add(_window(4.0 * k, 300.0 + rng.choice([-250.0, 0.0, 250.0])))
    run = DisagreementRun(W)
    for k in range(20):  # every third window fused where the neural path said (110 ms off): the run starts again
        assert not run.add(_window(4.0 * k, 190.0 if k % 3 == 2 else 300.0, ok=k % 3 == 2))
    run = DisagreementRun(W)
    for k in range(20):  # abstentions for other reasons count for nothing
        assert not run.add(_window(4.0 * k, 300.0, reason="classical: low confidence (PSR 3.1 < 8.0)"))
    assert not disagreed(_window(0.0, 0.0, ok=True))


def test_answers_of_the_neural_candidate_alone_neither_end_nor_extend_a_run():
    """Before, any window the hybrid answered ended the run, also one the neural candidate answered alone where the
    onsets abstained (too few matched events): a microphone that heard a fifth of a tone log had one between
    every two disagreements, and the log was mapped by the neural path, 110 ms late."""
    from dataclasses import replace

    run = DisagreementRun(W)
    decided = []
    for k in range(17):
        w = _window(2.0 * k, 300.0) if k % 2 == 0 else replace(_window(2.0 * k, 190.0, ok=True), neural_only=True)
        decided.append(run.add(w))
    assert decided[-1] and not decided[0] and "9 windows, none the onsets confirmed" in run.note()
    run = DisagreementRun(W)  # one the onsets confirmed where the neural candidate said still ends it ...
    assert not any(run.add(_window(2.0 * k, 190.0 if k % 2 else 300.0, ok=k % 2 == 1)) for k in range(17))
    run = DisagreementRun(W)  # ... one they confirmed on the classical line does not (live, a fifth heard)
    assert [run.add(_window(2.0 * k, 300.1 if k % 2 else 300.0, ok=k % 2 == 1)) for k in range(17)][-1]


def test_an_answer_of_the_neural_candidate_alone_moved_onto_the_arrival_bound_is_still_its_alone():
    """Live, an estimate over the arrival bound within 3 sigma is moved onto it (``apply_arrival_bound``); it was
    rebuilt without ``neural_only``, so a tone's late neural answer clamped there ended the run like a confirmed one."""
    from dataclasses import replace

    from synchub.agent.align.aligner import apply_arrival_bound

    late = replace(_window(2.0, 410.0, ok=True), neural_only=True, sigma_ns=40_000_000)
    moved = apply_arrival_bound(late, 300_000_000)
    assert moved.offset_ns == 300_000_000 and moved.neural_only and moved.sigma_ns >= 40_000_000
    run = DisagreementRun(W)
    for k in range(10):  # centres over 36 s: two windows' length
        run.add(_window(4.0 * k, 300.0))
        run.add(moved)
    assert run.decided


def _tone_signal(heard: float, others: float, seed: int = 3, rate: int = 16000):
    """300 s of 50 ms tone bursts of which the microphone hears the share ``heard`` (the rest far under its noise),
    among ``others`` times as many clicks and knocks: (samples, onsets s)."""
    rng = np.random.default_rng(seed)
    onsets = np.cumsum(rng.uniform(1.0, 3.0, 300))
    onsets = onsets[onsets < 298.0]
    x = rng.normal(0.0, 0.01, 300 * rate)
    n = int(0.05 * rate)
    amp = np.where(rng.random(len(onsets)) < heard, 0.5, 0.004)
    for t, a in zip(onsets, amp, strict=True):
        x[int(t * rate):int(t * rate) + n] += a * np.sin(2 * np.pi * 640.0 * np.arange(n) / rate)
    m = int(0.03 * rate)
    for t in rng.uniform(1.0, 299.0, int(others * len(onsets))):
        x[int(t * rate):int(t * rate) + m] += 0.4 * rng.normal(0.0, 1.0, m) * np.exp(-np.arange(m) / (0.005 * rate))
    return x.astype(np.float32), onsets


def _tone_log(tmp_path, heard: float, others: float, ahead_s: float = 0.4):
    """``_tone_signal`` as a WAV and a log of the tones on a clock ``ahead_s`` ahead, 60 ppm fast."""
    x, onsets = _tone_signal(heard, others)
    sf.write(tmp_path / "mic.wav", x, 16000)
    logged = onsets * (1 + 60e-6) + ahead_s
    (tmp_path / "log.csv").write_text("time,event\n" + "".join(f"{t:.6f},tone\n" for t in logged))
    return onsets, logged


@pytest.mark.parametrize("heard, others, ahead_s", [(0.2, 0.0, 0.4), (1.0, 5.0, 0.4), (0.2, 0.0, 2.1)])
def test_a_tone_log_the_microphone_heard_a_fifth_of_or_among_other_sounds(tmp_path, heard, others, ahead_s):
    """Before: mapped 110 ms late (the neural path's bias on tones) under a 56-60 ms sigma: windows the neural
    candidate answered alone broke every run of disagreements, and the classical link, with fewer windows than
    the hybrid's (most of them the neural candidate's alone), was not used; with the log 2.1 s ahead the classical
    link searched +-2 s around the files' prior, not where its estimates had agreed, and found nothing (refused)."""
    onsets, logged = _tone_log(tmp_path, heard, others, ahead_s)
    fa = FileAlignment([InputSpec([str(tmp_path / "mic.wav")]), InputSpec([str(tmp_path / "log.csv")])])
    fa.gather()
    link = fa.inputs[1].link
    assert link.method == "classical" and "not trained on signals like these" in link.notes[0], link.notes
    dev = np.rint(logged * NS).astype(np.int64)
    mapped, unc = link.map(dev, np.zeros(len(dev), dtype=np.int64))
    assert np.max(np.abs(mapped - np.rint(onsets * NS))) < 3e6 and np.all(unc < 5e6)


@pytest.mark.parametrize("heard, others", [(0.2, 0.0), (1.0, 5.0)])
def test_live_a_tone_log_the_microphone_heard_a_fifth_of_or_among_other_sounds(heard, others):
    """Live, the windows the onsets confirmed on the classical line ended every run too (a fifth heard: 16 of 18
    estimates 100-129 ms late, between the right ones)."""
    x, onsets = _tone_signal(heard, others)
    t = (np.arange(len(x)) * (NS / 16000)).astype(np.int64)
    dev = np.rint(onsets * NS).astype(np.int64) + 5 * NS  # the log's clock 5 s ahead
    host = np.rint(onsets * NS).astype(np.int64) + np.random.default_rng(4).integers(2_000_000, 9_000_000, len(dev))
    log = [Chunk("log", i, np.array(["tone"], dtype=object), dev[i:i + 1], host[i:i + 1]) for i in range(len(dev))]
    table = sigma_table(False)
    tr = AlignmentTracker("mic", "log", StreamInfo("mic", "audio", 16000.0, 1),
                          StreamInfo("log", "marker", 0.0, 1, "string"), load_runners(["audio", "text"]),
                          settings=calibrated_settings(table, False), table=table)
    out = feed(tr, "mic", chunks("mic", x[:, None], t, t, ref=t), "log", log)
    assert tr.stats()["method"] == "classical", tr.stats()
    late = [e for e in out if e.device_ns > dev[-1] - 100 * NS]  # the last 100 s
    assert late and all(abs(e.offset_ns + 5 * NS) < 3e6 for e in late), [e.offset_ns + 5 * NS for e in late]


@pytest.mark.parametrize("rate", [8000, 44100])
def test_synchub_align_ties_a_tone_log_the_encoders_never_heard(tmp_path, rate):
    x, onsets = tone_bursts(rate, 120.0)
    sf.write(tmp_path / "mic.wav", x, rate)
    offset_s, drift = 0.3127, 80e-6  # the log's clock: ahead, and fast
    logged = onsets * (1.0 + drift) + offset_s
    (tmp_path / "log.csv").write_text("time,event\n" + "".join(f"{t:.6f},tone\n" for t in logged))
    fa = FileAlignment([InputSpec([str(tmp_path / "mic.wav")]), InputSpec([str(tmp_path / "log.csv")])])
    fa.gather()  # before: AlignError, every window "neural and classical disagree by ~110 ms"
    link = fa.inputs[1].link
    assert link.method == "classical" and "not trained on signals like these" in link.notes[0], link.notes
    dev = np.rint(logged * NS).astype(np.int64)
    mapped, unc = link.map(dev, np.zeros(len(dev), dtype=np.int64))
    err = (mapped - np.rint(onsets * NS)) / 1e6
    assert np.max(np.abs(err)) < 3.0, err  # the onset correlation's own accuracy (1 ms envelope blocks)
    assert np.all(unc < 5e6)


def test_the_live_tracker_goes_on_with_the_classical_correlation():
    rate = 16000
    x, onsets = tone_bursts(rate, 90.0, seed=2)
    t_mic = (np.arange(len(x)) * (NS / rate)).astype(np.int64)
    offset_ns = 312_700_000
    dev = np.rint(onsets * NS).astype(np.int64) + offset_ns  # the log's device clock: ref = device - offset
    host = dev - offset_ns + 20_000_000  # each line arrives 20 ms after the tone on the reference clock
    mic = StreamInfo("mic", "audio", float(rate), 1)
    log = StreamInfo("log", "marker", 0.0, 1)
    table = sigma_table(False)
    tr = AlignmentTracker("mic", "log", mic, log, runners=load_runners({"audio", "text"}),
                          settings=calibrated_settings(table, False), table=table)
    lines = np.array(["tone"] * len(dev), dtype=object)
    est = feed(tr, "mic", chunks("mic", x[:, None], t_mic, t_mic, ref=t_mic),
               "log", chunks("log", lines, dev, host, every=4.0))
    st = tr.stats()
    assert st["method"] == "classical" and any("not trained on signals like these" in r for r in st["reasons"]), st
    assert len(est) >= 5 and {e.source for e in est} == {"classical"}, st
    for e in est:
        assert abs(e.offset_ns + offset_ns) < 3_000_000, (e, st)


def test_a_pilot_log_too_short_to_decide_says_how_to_decide(tmp_path):
    """Ten tones in 20 s (a pilot run): the windows disagree, too few to make a run of two window lengths, and the
    refusal gave no way out; it names --align classical, which ties the log by its onsets."""
    x, onsets = tone_bursts(16000, 60.0, seed=3)
    sf.write(tmp_path / "mic.wav", x, 16000)
    logged = onsets[:10] + 0.3127
    (tmp_path / "log.csv").write_text("time,event\n" + "".join(f"{t:.6f},tone\n" for t in logged))
    specs = [InputSpec([str(tmp_path / "mic.wav")]), InputSpec([str(tmp_path / "log.csv")])]
    with pytest.raises(AlignError, match=r"disagree.*--align classical \(the onsets alone\) or --align neural"):
        FileAlignment(specs).gather()
    specs[1] = InputSpec([str(tmp_path / "log.csv")], InputOptions(align="classical"))
    fa = FileAlignment(specs)
    fa.gather()
    dev = np.rint(logged * NS).astype(np.int64)
    mapped, _ = fa.inputs[1].link.map(dev, np.zeros(len(dev), dtype=np.int64))
    assert np.max(np.abs(mapped - np.rint(onsets[:10] * NS))) < 3e6


def test_a_stereo_recorder_s_ttl_channel_is_not_heard_by_the_aligner(tmp_path):
    """A recorder with the microphone on one side and a rig's 1 Hz TTL on the other, named as the sync channel
    (--sync 1): the aligner heard the pulses with the tones (every window's onsets the pulses' edges), and a tone
    log was mapped ~104 ms late (the neural path alone, 57 ms sigma).  The sync channel is left out of what the
    aligner hears."""
    rate = 16000
    x, onsets = tone_bursts(rate, 120.0)
    ttl = np.where(np.arange(len(x)) % rate < 0.01 * rate, 0.8, 0.0).astype(np.float32)
    sf.write(tmp_path / "rec.wav", np.stack([x, ttl], 1), rate)
    logged = onsets * (1 + 80e-6) + 0.3127
    (tmp_path / "log.csv").write_text("time,event\n" + "".join(f"{t:.6f},tone\n" for t in logged))
    fa = FileAlignment([InputSpec([str(tmp_path / "rec.wav")], InputOptions(sync="1", sync_kind="ttl")),
                        InputSpec([str(tmp_path / "log.csv")])])
    fa.gather()
    dev = np.rint(logged * NS).astype(np.int64)
    mapped, unc = fa.inputs[1].link.map(dev, np.zeros(len(dev), dtype=np.int64))
    assert np.max(np.abs(mapped - np.rint(onsets * NS))) < 3e6 and np.all(unc < 5e6)
