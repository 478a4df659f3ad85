"""The ALSA capture driver against real subprocesses.  This machine has no sound card, so the "device" is a small
Python program started as the capture command: it writes a counting ramp as raw PCM to stdout at the real-time
pace, in pieces that split frames, and can die mid-stream like arecord when the USB microphone is unplugged."""

import shutil
import sys
import time

import numpy as np
import pytest
from support.paths import ROOT
from support.sinks import CaptureSink, run_capture

from synchub.agent.clock.model import ClockModel
from synchub.agent.config.loader import load_config
from synchub.agent.core.options import StreamCommon
from synchub.agent.core.stream import Chunk
from synchub.drivers.capture.alsa import AlsaCaptureDriver, AlsaSettings
from synchub.drivers.capture.base import SEGMENT_JUMP_NS
from synchub.drivers.registry import DRIVERS

# argv: rate channels format piece_bytes frames die_once_file ("" never dies) die_after_frames
DEVICE = r"""
import os, sys, time
import numpy as np
rate, ch, fmt, piece, frames, once, die_after = sys.argv[1:8]
rate, ch, piece, frames, die_after = int(rate), int(ch), int(piece), int(frames), int(die_after)
dtype = {"S16_LE": "<i2", "S32_LE": "<i4", "FLOAT_LE": "<f4"}[fmt]
dies = bool(once) and not os.path.exists(once)
if dies:
    open(once, "w").close()
    frames = die_after
ramp = (np.arange(frames * ch) % 30000).astype(dtype).tobytes()
sys.stderr.write("fake-device: capturing\n"); sys.stderr.flush()
t0 = time.monotonic()
fb = np.dtype(dtype).itemsize * ch
for at in range(0, len(ramp), piece):
    due = t0 + (at // fb) / rate
    wait = due - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    os.write(1, ramp[at:at + piece])
if dies:
    sys.stderr.write("arecord: pcm_read:2221: read error: No such device\n"); sys.stderr.flush()
    os.write(1, ramp[:fb - 1])  # a partial frame, then the device is gone
    sys.exit(1)
time.sleep(60)  # a healthy device keeps the stream open until it is stopped
"""


def common(rate=8000.0, fmt="int16", **kw):
    return StreamCommon(name="mic0", type="audio", driver="alsa", nominal_rate=rate, channel_format=fmt, **kw)


def device_settings(channels=1, sample_format="S16_LE", piece=333, frames=2000, once="", die_after=0, **kw):
    cmd = (sys.executable, "-c", DEVICE, "{rate}", "{channels}", "{format}", str(piece), str(frames), once,
           str(die_after))
    return AlsaSettings(device="fake", channels=channels, sample_format=sample_format, period_ms=10.0, command=cmd,
                        **kw)


def test_every_sample_once_in_order_with_contiguous_device_times():
    d = AlsaCaptureDriver(common(), device_settings(frames=2400))  # 0.3 s at 8 kHz
    assert d.argv[3:6] == ["8000", "1", "S16_LE"]
    sink = run_capture(d, 2400)
    data = np.concatenate([c[0] for c in sink.chunks])
    dev = np.concatenate([c[1] for c in sink.chunks])
    host = np.concatenate([c[2] for c in sink.chunks])
    assert data.dtype == np.int16 and data.shape == (2400, 1)
    assert np.array_equal(data[:, 0], np.arange(2400))  # each sample once, in order
    assert np.array_equal(dev, np.rint(np.arange(2400) * 125_000).astype(np.int64))  # 8 kHz: 125 us apart
    assert np.all(np.diff(host) >= 0)
    assert host[-1] - host[0] > 0.2e9  # paced: the device took ~0.3 s, the driver read it as it came
    assert len(sink.chunks) > 10  # period-sized reads, not one lump
    assert sink.gaps == [] and d.stats.samples == 2400
    q = d.info.quality_dict()
    assert q["timestamp_source"] == "sample-counter+period-arrival"
    assert d.info.nominal_srate == 8000.0 and d.info.channel_count == 1


def test_through_the_agent_hub_sequence_numbers_are_contiguous():
    from synchub.agent.pipeline.chunkqueue import BoundedQueue
    from synchub.agent.pipeline.hub import Hub

    d = AlsaCaptureDriver(common(), device_settings(frames=800))
    queue = BoundedQueue(1024)
    hub = Hub({"mic0": d.info}, queue)
    d.start(hub)
    end = time.monotonic() + 5
    while hub.stats["mic0"].samples < 800 and time.monotonic() < end:
        time.sleep(0.01)
    d.stop()
    chunks = []
    while (item := queue.get(0.0)) is not None:
        assert isinstance(item, Chunk)
        chunks.append(item)
    assert sum(c.n for c in chunks) == 800
    assert [c.seq for c in chunks] == list(np.cumsum([0] + [c.n for c in chunks[:-1]]))
    assert np.array_equal(np.concatenate([c.data for c in chunks])[:, 0], np.arange(800))


def test_frames_split_across_reads_are_reassembled():
    # stereo S32_LE: 8-byte frames written in 333-byte pieces, so most reads end inside a frame
    d = AlsaCaptureDriver(common(fmt="float32"), device_settings(channels=2, sample_format="S32_LE", frames=1600))
    sink = run_capture(d, 1600)
    data = np.concatenate([c[0] for c in sink.chunks])
    assert d.split_reads > 10  # the case under test really happened
    assert data.dtype == np.float32 and data.shape == (1600, 2)
    want = (np.arange(3200) % 30000).reshape(1600, 2) / 2**31
    assert np.allclose(data, want, rtol=0, atol=1e-12)
    dev = np.concatenate([c[1] for c in sink.chunks])
    assert np.all(np.diff(dev) == 125_000)
    assert sink.problems == []


def test_program_dying_gives_disconnect_gap_restart_and_new_segment(tmp_path, caplog):
    d = AlsaCaptureDriver(common(), device_settings(frames=4000, once=str(tmp_path / "died"), die_after=1200,
                                                    restart_s=0.2))
    with caplog.at_level("INFO", logger="synchub.alsa"):
        sink = run_capture(d, 1200 + 1600)
    assert d.starts == 2 and d.exits == 1
    reasons = [r for r, _ in sink.problems]
    assert reasons.count("disconnect") == 1 and reasons.count("malformed") == 1  # the partial frame
    disconnect = next(detail for r, detail in sink.problems if r == "disconnect")
    assert "exit status 1" in disconnect and "No such device" in disconnect
    assert any("capture from fake stopped" in r.message for r in caplog.records)

    data = np.concatenate([c[0] for c in sink.chunks])[:, 0]
    dev = np.concatenate([c[1] for c in sink.chunks])
    host = np.concatenate([c[2] for c in sink.chunks])
    assert np.array_equal(data[:1200], np.arange(1200))  # every sample the first run gave
    assert np.array_equal(data[1200:], np.arange(len(data) - 1200))  # the restarted run from its first sample

    (lost, cause, d_from, d_to, detail, at), = sink.gaps
    (r_from, r_to, _, at2), = sink.resets
    assert cause == "disconnect"
    assert at == at2 == 1200  # both recorded before the first sample of the new run
    assert d_from == r_from == dev[1199] and d_to == r_to == dev[1200]
    outage_s = (host[1200] - host[1199]) / 1e9
    assert 0.2 <= outage_s < 2.0
    # the lost count is the outage (less what the first new read covers) at 8 kHz
    first_new = sum(len(c[0]) for c in sink.chunks if c[2][0] == host[1200])
    assert abs(lost - (outage_s * 8000 - first_new)) < 2
    assert "estimated" in detail
    # the counter continues: device time only increases, contiguous within each segment
    assert np.all(np.diff(dev[:1200]) == 125_000) and np.all(np.diff(dev[1200:]) == 125_000)
    assert dev[1200] - dev[1199] > SEGMENT_JUMP_NS
    assert d.stats.resets == 1 and d.stats.dropped == lost

    # the real clock model starts a new segment there (it reads device/host times, not gap records)
    model = ClockModel("mic0", nominal_period_ns=125_000)
    segs = np.concatenate([model.add_arrivals(c[1], c[2]) for c in sink.chunks])
    assert len(model.segments) == 2 and model.resets == 1
    assert np.all(segs[:1200] == 0) and np.all(segs[1200:] == 1)


UNPLUGGED = r"""
import os, sys, time
marker, mode = sys.argv[1:3]
if os.path.exists(marker):  # unplugged for good: every later run fails at once, like arecord with no device
    sys.stderr.write("arecord: main:831: audio open error: No such file or directory\n")
    sys.exit(1)
open(marker, "w").close()
for i in range(8):  # 0.08 s of 8 kHz S16_LE mono, then the device dies (exit) or hangs (stall)
    os.write(1, bytes(160)); time.sleep(0.01)
if mode == "stall":
    time.sleep(60)
sys.exit(1)
"""


@pytest.mark.parametrize("mode", ["exit", "stall"])
def test_device_gone_until_stop_records_the_loss(tmp_path, mode):
    cmd = (sys.executable, "-c", UNPLUGGED, str(tmp_path / "plugged"), mode)
    d = AlsaCaptureDriver(common(), AlsaSettings(device="fake", period_ms=10.0, restart_s=0.05, command=cmd))
    d.stall_s = 0.3  # (3 s by default) a hung device is killed and restarted
    sink = CaptureSink()
    d.start(sink)
    sink.wait(640)
    end = time.monotonic() + 5
    while d.starts < 3 and time.monotonic() < end:  # the device is gone: the driver keeps restarting the program
        time.sleep(0.01)
    time.sleep(0.2)
    t_stop = time.monotonic_ns()
    d.stop()
    assert sink.n() == 640 and d.starts >= 3  # restarted and kept trying
    assert [r for r, _ in sink.problems] == ["disconnect"]  # logged once per outage, not once per retry
    detail = sink.problems[0][1]
    assert ("no data for 0.3 s" if mode == "stall" else "exit status 1") in detail
    (lost, cause, d_from, d_to, _, at), = sink.gaps
    assert cause == "disconnect" and at == 640 and d_to == 0
    assert d_from == 639 * 125_000
    host_last = sink.chunks[-1][2][-1]
    assert abs(lost - (t_stop - host_last) * 8000 / 1e9) < 0.25 * 8000  # the outage until stop, at 8 kHz


def test_overrun_lines_on_stderr_are_counted_problems():
    script = ("import os, sys, time\n"
              "os.write(1, bytes(320))\n"
              "sys.stderr.write('overrun!!! (at least 12.345 ms long)\\n'); sys.stderr.flush()\n"
              "os.write(1, bytes(320)); time.sleep(60)\n")
    d = AlsaCaptureDriver(common(), AlsaSettings(device="fake", period_ms=10.0, command=(sys.executable, "-c", script)))
    sink = CaptureSink()
    d.start(sink)
    sink.wait(320)
    end = time.monotonic() + 5
    while d.overruns == 0 and time.monotonic() < end:
        time.sleep(0.01)
    d.stop()
    assert d.overruns == 1 and ("overrun", "overrun!!! (at least 12.345 ms long)") in sink.problems
    assert d.stats.reasons["overrun"] == 1 and d.health()["overruns"] == 1


def test_missing_program_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no arecord on this PATH, whether or not the machine has one
    with pytest.raises(FileNotFoundError, match="alsa-utils"):
        AlsaCaptureDriver(common(), AlsaSettings(device="hw:1,0"))
    with pytest.raises(FileNotFoundError, match="no-such-capture"):
        AlsaCaptureDriver(common(), AlsaSettings(command=("no-such-capture", "-D", "{device}")))


def test_settings_errors_name_the_problem():
    with pytest.raises(ValueError, match="nominal_rate"):
        AlsaCaptureDriver(common(rate=0.0), device_settings())
    with pytest.raises(ValueError, match="does not match"):
        AlsaCaptureDriver(common(), device_settings(rate=16000))
    with pytest.raises(ValueError, match="channel_format"):
        AlsaCaptureDriver(common(fmt="int16"), device_settings(sample_format="S32_LE"))


def test_default_command_is_arecord_with_the_settings():
    from synchub.drivers.capture.alsa import capture_command

    argv = capture_command(AlsaSettings(device="plughw:CARD=Device", channels=2, period_ms=20.0), 48000)
    assert argv == ["arecord", "-q", "-D", "plughw:CARD=Device", "-t", "raw", "-f", "S16_LE", "-r", "48000",
                    "-c", "2", "-F", "20000"]


def test_field_pi_example_loads():
    config = load_config(ROOT / "examples" / "field-pi.toml")
    mic = config.stream("mic0")
    assert "alsa" in DRIVERS and isinstance(mic.driver, AlsaSettings)
    assert mic.driver.device == "hw:CARD=Device,DEV=0" and mic.driver.sample_format == "S16_LE"
    assert mic.common.nominal_rate == 16000.0


@pytest.mark.skipif(shutil.which("arecord") is None,
                    reason="arecord (alsa-utils) is not installed on this machine; nothing to capture from")
def test_real_arecord_null_device():
    d = AlsaCaptureDriver(common(rate=8000.0), AlsaSettings(device="null", period_ms=10.0))
    sink = run_capture(d, 800, timeout=5.0)
    dev = np.concatenate([c[1] for c in sink.chunks])
    assert np.all(np.diff(dev) == 125_000)
