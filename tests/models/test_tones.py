"""Steady tones (mains hum, a whine) found and taken out of a microphone's window before its onsets are
(``synchub.models.tones``), and what is not a steady tone left alone."""

import numpy as np
import pytest

from synchub.agent.align import onsets
from synchub.agent.align.onsets import audio_onsets, event_times
from synchub.models.tones import steady_lines, without_steady_lines

SR = 16_000


def _bursts(seconds=10.0, sr=SR, seed=1, n=12):
    """Decaying noise bursts (80 ms) at known times over a quiet noise floor: (samples, burst times s)."""
    rng = np.random.default_rng(seed)
    x = 0.003 * rng.standard_normal(int(seconds * sr))
    at = np.sort(rng.choice(np.arange(0.3, seconds - 0.5, 0.35), n, replace=False))
    k = np.arange(int(0.08 * sr))
    for t in at:
        i = int(t * sr)
        x[i : i + len(k)] += 0.05 * rng.standard_normal(len(k)) * np.exp(-k / (0.02 * sr))
    return x, at


def _hum(n, amp, f=50.03, sr=SR, wander=0.0):
    """Mains hum with its third harmonic at a third; ``wander``: its frequency swept that far (Hz) over the window."""
    t = np.arange(n) / sr
    phase = 2 * np.pi * (f * t + 0.5 * wander * t * t / t[-1])
    return amp * (np.sin(phase + 0.3) + np.sin(3 * phase) / 3)


def _events(x, sr=SR):
    t = (np.arange(len(x)) * (1e9 / sr)).astype(np.int64)
    o = audio_onsets(t, x)
    return o, event_times(o) / 1e9


def _nearest_ms(ev, at):
    return np.array([1e3 * np.min(np.abs(ev - a)) for a in at])


@pytest.mark.parametrize("amp", [0.01, 0.316])
def test_mains_hum_leaves_the_sounds_onsets_where_they_were(amp):
    """Hum at -40 and -10 dBFS: the 1 ms RMS swung with it a hundred times a second; at -10 dBFS every window
    was a "flat signal" (no onset above that swing).  Taken out, the bursts' onsets are where they are without."""
    x, at = _bursts()
    _, clean = _events(x)
    o, ev = _events(x + _hum(len(x), amp))
    assert o.ok and o.notes["steady_tones_hz"] == pytest.approx([50.0, 150.1], abs=0.1)
    assert len(ev) == len(clean)
    assert np.max(np.abs(ev - clean)) < 0.5e-3
    assert np.median(_nearest_ms(ev, at)) < 1.0


def test_hum_hides_the_sounds_without_its_removal():
    """The case above fails without the removal: the swing of a -10 dBFS hum is above every burst's rise."""
    x, _ = _bursts()
    t = (np.arange(len(x)) * (1e9 / SR)).astype(np.int64)
    env_t, env = onsets.audio_envelope(t, x + _hum(len(x), 0.316))
    hold = onsets._hold(env_t)
    assert not np.any(onsets.novelty(env, hold) > 0)


def test_a_wandering_hum_on_one_channel_of_a_48_khz_recorder_is_taken_out_of_that_channel():
    """60 Hz whose frequency drifts by 0.1 Hz over the window, on the left channel only, 48 kHz: the left's
    hum power drops by over 20 dB, the right channel (no hum) is untouched."""
    sr = 48_000
    x, _ = _bursts(sr=sr)
    stereo = np.stack([x + _hum(len(x), 0.1, f=59.97, sr=sr, wander=0.1), x[::-1].copy()], axis=1)
    y, lines = without_steady_lines(stereo, sr)
    assert lines and abs(lines[0] - 60.0) < 0.2
    hum = _hum(len(x), 0.1, f=59.97, sr=sr, wander=0.1)
    left = y[:, 0] - x
    assert np.mean(left[sr:-sr] ** 2) < 0.01 * np.mean(hum**2)
    assert np.allclose(y[:, 1], stereo[:, 1], atol=2e-4)


def test_a_train_of_beeps_in_every_part_of_the_window_is_not_a_steady_tone():
    """A 1 kHz beep every half second (one in every part of the window, so its line is in every part's spectrum)
    falls to nothing between beeps: it is the events, not a tone to take out."""
    x, _ = _bursts(n=0)
    t = np.arange(len(x)) / SR
    beeps = np.arange(0.2, 9.8, 0.5)
    on = np.zeros(len(x), dtype=bool)
    for b in beeps:
        on |= (t >= b) & (t < b + 0.1)
    x = x + 0.05 * on * np.sin(2 * np.pi * 1000.0 * t)
    assert steady_lines(x, SR) == []
    y, lines = without_steady_lines(x, SR)
    assert y is x and lines == []
    _, ev = _events(x)
    assert np.median(_nearest_ms(ev, beeps)) < 1.5


def test_a_tone_that_starts_within_the_window_is_not_taken_out():
    """A tone on from 4 s to the end of a 10 s window (an alarm that went off): not in every part, so it stays."""
    x, _ = _bursts(n=0)
    t = np.arange(len(x)) / SR
    assert steady_lines(x + 0.1 * (t >= 4.0) * np.sin(2 * np.pi * 440.0 * t), SR) == []


def test_windows_without_tones_or_too_short_come_back_as_they_were():
    x, _ = _bursts()
    assert without_steady_lines(x, SR)[0] is x
    short = x[: SR] + _hum(SR, 0.3)  # 1 s: too short to tell a tone from its neighbours
    assert steady_lines(short, SR) == []
    assert steady_lines(np.full(len(x), np.nan), SR) == []
    assert steady_lines(np.zeros(len(x)), SR) == []
