"""`synchub bench align --real-files --mic SPEC`: the corpus's microphone as a real one delivers it (a DC offset,
mains hum, a gain too low or clipped, 16-bit samples truncated by libsndfile, another rate, a room's reverberation,
Ogg Vorbis), each part doing what it says."""

import numpy as np
import pytest

from synchub.bench.align.mic import AS_RENDERED, parse, resample
from synchub.cli import main
from synchub.errors import UserError

RATE = 16000.0


def _tone(hz=1000.0, seconds=1.0, rate=RATE):
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t))[:, None]


def test_each_part_does_what_it_says_in_order():
    x = _tone()
    y, rate = parse("dc=0.2").apply(x, RATE)
    assert rate == RATE and np.allclose(y, x + 0.2)
    y, _ = parse("gain=-40").apply(x, RATE)
    assert np.allclose(y, x / 100)
    y, _ = parse("hum=0.01").apply(np.zeros((16000, 1)), RATE)
    spec = np.abs(np.fft.rfft(y[:, 0]))  # 1 Hz bins over one second
    assert spec.argmax() == 50 and spec[150] > 0.2 * spec[50] and spec[1000] < 1e-6 * spec[50]
    y, _ = parse("gain=-20+dc=0.1").apply(x, RATE)  # left to right: the offset is not scaled
    assert np.allclose(y, x / 10 + 0.1)
    assert AS_RENDERED.apply(x, RATE)[0].shape == x.shape and parse("").subtype == "FLOAT"


@pytest.mark.parametrize("to_hz", [8000.0, 44100.0, 48000.0])
def test_resampling_keeps_the_first_sample_s_time_and_the_tone(to_hz):
    """The WAV's first sample is its clock's zero (the bench's truth): a tone resampled is the same tone from it."""
    x = _tone(hz=440.0, seconds=2.0)
    y = resample(x, RATE, to_hz)
    assert len(y) == int(2.0 * to_hz)
    expect = _tone(hz=440.0, seconds=2.0, rate=to_hz)
    inner = slice(int(0.1 * to_hz), int(1.9 * to_hz))  # away from the ends, which touch
    assert np.max(np.abs(y[inner] - expect[inner])) < 1e-6


def test_pcm16_is_written_as_libsndfile_writes_it(tmp_path):
    sf = pytest.importorskip("soundfile", reason="soundfile is in the bench extra")
    mic = parse("gain=-40+pcm16+rate=44100")
    mic.write(tmp_path / "m.wav", _tone(), RATE)
    info = sf.info(tmp_path / "m.wav")
    assert info.subtype == "PCM_16" and info.samplerate == 44100 and info.frames == 44100


def test_clipping_and_a_room_do_what_they_say():
    x = _tone()
    y, _ = parse("clip=20").apply(x, RATE)  # 0.5 x 10 = 5 x full scale: a square wave at it
    assert np.max(np.abs(y)) == 1.0 and np.mean(np.abs(y) == 1.0) > 0.85  # |5 sin| >= 1: 87 % of the time
    click = np.zeros((16000, 1))
    click[1000] = 1.0
    y, _ = parse("reverb=0.5").apply(click, RATE)
    assert y.shape == click.shape and np.max(np.abs(y[:1000])) < 1e-9  # nothing before it
    assert abs(y[1000, 0] - 1.0) < 1e-9 and np.max(np.abs(y[1001:1080])) < 1e-9  # the direct sound, then 5 ms quiet
    tail = y[1080:, 0]
    assert abs(np.sum(tail * tail) - 1.0) < 0.05  # as much energy as the direct sound, ...
    e = np.array([np.sum(tail[k : k + 800] ** 2) for k in (0, 3200)])  # ... dying by 60 dB in 0.5 s: 24 dB in 0.2 s
    assert 10 * np.log10(e[0] / e[1]) == pytest.approx(24.0, abs=4.0)


def test_ogg_is_written_as_ogg_vorbis(tmp_path):
    sf = pytest.importorskip("soundfile", reason="soundfile is in the bench extra")
    mic = parse("gain=-6+ogg")
    assert mic.suffix == ".ogg"
    # five minutes, as the corpus's recordings: libvorbis overflowed its stack on it in one write (a crash)
    mic.write(tmp_path / "m.ogg", _tone(seconds=300.0), RATE)
    info = sf.info(tmp_path / "m.ogg")
    assert info.format == "OGG" and info.subtype == "VORBIS" and info.frames == 300 * 16000


@pytest.mark.parametrize("bad", ["dc=x", "hum", "rate=10", "gain=", "pcm24", "dc=nan", "reverb=0", "reverb=20",
                                 "clip=", "ogg=1", "ogg+pcm16"])
def test_a_spec_it_does_not_know_is_a_one_line_error(bad, capsys):
    with pytest.raises(UserError, match="--mic"):
        parse(bad)
    assert main(["bench", "align", "--real-files", "--mic", bad]) == 2
    err = capsys.readouterr().err
    assert "--mic" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

