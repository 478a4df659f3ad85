"""Video files (``agent/formats/readers/media.py``): a webcam's MP4 or MKV, its audio and video tracks on the file's
presentation clock, written by FFmpeg (PyAV, ``bench/files/media_files.py``) as a camera writes them.  Before: "unsupported
file type" in ``synchub align`` and ``synchub inspect``."""

from __future__ import annotations

import numpy as np
import pytest

from synchub.agent.align.onsets import event_times, onsets
from synchub.agent.formats.readers.base import InputError
from synchub.agent.formats.readers.opening import open_input
from synchub.extras import message

av = pytest.importorskip("av", reason="PyAV (the video extra) reads and writes the test's video files")
from synchub.bench.files.media_files import write_clip  # noqa: E402  (needs av)

NS = 1_000_000_000
EVENTS = [1.0, 2.5, 4.2, 6.1, 7.3, 9.05]


def _read(path, **kw):
    r = open_input(path)
    out = {}
    for p in r.read(**kw):
        t, x = out.setdefault(p.stream, ([], []))
        t.append(p.device_ns)
        x.append(p.data)
    return r, {k: (np.concatenate(t), np.concatenate(x)) for k, (t, x) in out.items()}


@pytest.mark.parametrize("name,video", [("cam.mp4", "mpeg4"), ("cam.mkv", "libx264")])
def test_a_camera_file_s_tracks_on_its_presentation_clock(tmp_path, name, video):
    """Matroska keeps timestamps in ms: a 1024-sample AAC frame (21.33 ms) at a rounded pts overlapped the one
    before it, and the first version left 1407 of 2812 frames out as "not rising"; the sample clock carries them."""
    path = write_clip(tmp_path / name, EVENTS, 10.0, video=video)
    r, data = _read(path)
    assert [(s.key, s.info.type) for s in r.streams] == [("cam.video", "video"), ("cam.audio", "audio")]
    ta, xa = data["cam.audio"]
    assert xa.dtype == np.float32 and xa.shape[1] == 1 and 10.0 * 48000 <= len(ta) <= 10.05 * 48000
    assert np.all(np.abs(np.diff(ta) - NS / 48000) <= 1) and r.stats == {}  # every sample, on one clock
    q = r.streams[1].info.quality_dict()  # AAC: its sounds may start up to a short block (128 samples) early in it
    assert q["codec"] == "aac" and int(q["pre_echo_ns"]) == 128 * NS // 48000
    found = event_times(onsets("audio", ta, xa)) / NS
    assert np.max(np.abs(found - EVENTS)) < 1.5e-3  # 1 ms envelope blocks; the AAC priming is not sound
    tv, xv = data["cam.video"]
    assert xv.shape == (300, 24, 32) and xv.dtype == np.uint8 and np.all(np.diff(tv) > 0)
    lit = event_times(onsets("video", tv, xv)) / NS
    assert np.max(np.abs(lit - (np.array(EVENTS) - 0.5 / 30))) < 1.1 / 30  # between the last dark and first lit frame


def test_one_track_is_named_after_the_file(tmp_path):
    r, data = _read(write_clip(tmp_path / "voice.m4a", EVENTS, 10.0, video=None))
    assert [s.key for s in r.streams] == ["voice"] and r.streams[0].info.type == "audio"
    r, data = _read(write_clip(tmp_path / "silent.mp4", EVENTS, 10.0, audio=None))
    assert [s.key for s in r.streams] == ["silent"] and data["silent"][1].shape[1:] == (24, 32)


def test_foreign_torn_and_cut_files(tmp_path, caplog):
    (tmp_path / "junk.mkv").write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(InputError, match=r"junk\.mkv: not a media file FFmpeg can read"):
        open_input(tmp_path / "junk.mkv")
    whole = write_clip(tmp_path / "cam.mp4", EVENTS, 10.0).read_bytes()
    (tmp_path / "torn.mp4").write_bytes(whole[: len(whole) // 2])  # an MP4's index comes last: none
    with pytest.raises(InputError, match="not a media file FFmpeg can read") as e:
        open_input(tmp_path / "torn.mp4")
    assert "\n" not in str(e.value)
    whole = write_clip(tmp_path / "cam.mkv", EVENTS, 10.0, video="libx264").read_bytes()
    (tmp_path / "cut.mkv").write_bytes(whole[: int(len(whole) * 0.6)])  # Matroska reads up to the cut: said so
    r, data = _read(tmp_path / "cut.mkv")
    assert data["cut.audio"][0][-1] < 8 * NS
    assert r.stats.get("cut_short") == 1 and "cut short: its tracks end at" in caplog.text, r.stats
    assert "the rest of the recording is not in the file" in caplog.text
    assert "synchub[video]" in message("av")


def test_synchub_align_ties_a_camera_to_the_rig_s_microphone_by_its_sound(tmp_path):
    sf = pytest.importorskip("soundfile")
    from synchub.agent.align.files.engine import FileAlignment, InputSpec

    rng = np.random.default_rng(3)
    ev = np.cumsum(rng.uniform(1.0, 3.0, 40))
    ev = ev[ev < 58]
    write_clip(tmp_path / "cam.mp4", ev, 60.0)
    rate = 16000
    x = rng.normal(0, 0.01, rate * 65).astype(np.float32)
    k = np.arange(int(0.05 * rate))
    for t in ev:  # the rig's clock: 0.8 s ahead of the camera's, 60 ppm fast
        i = int(round((t * (1 + 60e-6) + 0.8) * rate))
        x[i:i + len(k)] += 0.4 * np.sin(2 * np.pi * 640.0 * k / rate)
    sf.write(tmp_path / "mic.wav", x, rate)
    fa = FileAlignment([InputSpec([str(tmp_path / "mic.wav")]), InputSpec([str(tmp_path / "cam.mp4")])])
    fa.gather()
    link = fa.inputs[1].link
    mapped, unc = link.map(np.rint(ev * NS).astype(np.int64), np.zeros(len(ev), dtype=np.int64))
    err_us = (mapped / NS - (ev * (1 + 60e-6) + 0.8)) * 1e6
    assert np.max(np.abs(err_us)) < 100.0, err_us  # the two microphones' waveforms: a fraction of a 16 kHz sample
    assert np.mean(np.abs(err_us) <= 2 * unc / 1e3) >= 0.9
    # its AAC track's pre-echo does not move two microphones' waveforms: not in the uncertainty, not warned of
    assert np.median(unc) < 1e6 and not any("lossy" in w for w in fa.warnings), (np.median(unc), fa.warnings)
    assert {tr.info.type for tr in fa.inputs[1].tracks.values()} == {"audio", "video"}  # the frames go with it


def test_a_silent_camera_ties_to_a_log_of_the_lamp_it_films(tmp_path):
    """No pair of a marker log and a video stream was in the file engine's list ("no stream pair the aligner
    knows"): a camera without sound filming the rig's lamp, and the log that switched it, could not be tied."""
    from synchub.agent.align.files.engine import FileAlignment, InputSpec

    ev = np.cumsum(np.random.default_rng(3).uniform(1.0, 3.0, 40))
    ev = ev[ev < 88]
    write_clip(tmp_path / "silent.mp4", ev, 90.0, audio=None)
    logged = ev * (1 - 40e-6) + 12.345  # the log's clock: 12 s off the camera's, 40 ppm slow
    (tmp_path / "leds.csv").write_text("time,event\n" + "".join(f"{t:.6f},LED on\n" for t in logged))
    fa = FileAlignment([InputSpec([str(tmp_path / "silent.mp4")]), InputSpec([str(tmp_path / "leds.csv")])])
    fa.gather()
    mapped, unc = fa.inputs[1].link.map(np.rint(logged * NS).astype(np.int64), np.zeros(len(ev), dtype=np.int64))
    err = np.abs(mapped - ev * NS)
    assert np.max(err) < NS / 30, err / 1e6  # within a frame (30 fps)
    assert np.mean(err <= 2 * unc) >= 0.9


def test_gaps_and_overlaps_in_an_audio_track_are_counted_and_said(tmp_path):
    """A camera that dropped a second of sound, then stamped a frame over the one before it: the samples after the
    gap start again at their frame's time (the gap is a gap, not squeezed out), the overlapping frame is left out;
    both counted and in the report's warnings (before: counted under sentences the report did not show)."""
    from fractions import Fraction

    from synchub.agent.align.files.report import input_warnings

    path = tmp_path / "dropout.mkv"
    rate, n = 48000, 1024
    starts = [0, 1024, 2048, 3072 + rate, 4096 + rate - 512, 5120 + rate, 6144 + rate]  # a 1 s gap; one frame over
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=rate)
        s.layout = "mono"
        for k in starts:
            f = av.AudioFrame.from_ndarray(np.zeros((1, n), dtype=np.int16), format="s16", layout="mono")
            f.sample_rate, f.pts, f.time_base = rate, k, Fraction(1, rate)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    r, data = _read(path)
    assert "pre_echo_ns" not in r.streams[0].info.quality_dict()  # PCM: lossless, no pre-echo
    t = data["dropout"][0]
    # two gaps: the lost second, and the hole the left-out frame leaves behind it
    assert r.stats.get("audio_gaps") == 2 and r.stats.get("audio_overlap") == 1, r.stats
    assert len(t) == 6 * n and np.all(np.diff(t) > 0)
    assert abs((t[3 * n] - t[3 * n - 1]) / NS - 1.0) < 0.01  # the second the camera lost stays a second
    w = input_warnings(str(path), r.stats)
    assert any("gaps in a video file's audio track" in x for x in w) and any("audio frames left out" in x for x in w)
