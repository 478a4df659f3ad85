"""Simulated rig pieces: [sim] settings and their errors, chunked sampling, pure device models, capture driver,
truth save/load, and `synchub sim` as a real process."""

import dataclasses
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from synchub.agent.config.loader import parse_config
from synchub.agent.core.options import StreamCommon
from synchub.agent.core.settings import ConfigError
from synchub.agent.core.units import NS
from synchub.drivers.base import DriverContext
from synchub.drivers.serial import frames as F
from synchub.drivers.serial import lines as L
from synchub.drivers.serial import protocol as P
from synchub.drivers.sim.capture import SimCaptureDriver, SimCaptureSettings
from synchub.drivers.sim.clocks import ClockSpec, DeviceClock
from synchub.drivers.sim.devices import CaptureDevice, SampleSchedule, SerialDevice, trigger_edges
from synchub.drivers.sim.rig import SimRig
from synchub.drivers.sim.settings import DEFAULT_DEVICES, SimSettings, SimTrigger
from synchub.drivers.sim.truth import Truth
from synchub.drivers.sim.world import World


# ---- settings
@pytest.mark.parametrize(
    "table,match",
    [
        ({"sed": 1}, r"<t>: sim.sed: unknown key \(did you mean 'seed'\?\)"),
        ({"world": {"tap_rte": 1.0}}, r"sim.world.tap_rte: unknown key \(did you mean 'tap_rate'\?\)"),
        ({"device": [{"name": "a", "modality": "gps"}]}, r"sim.device\[0\].modality: 'gps' is not allowed"),
        ({"device": [{"name": "a", "modality": "imu", "rate_hz": 100, "clock": {"drift_pmm": 1}}]},
         r"sim.device\[0\].clock.drift_pmm: unknown key \(did you mean 'drift_ppm'\?\)"),
        ({"device": [{"name": "a", "modality": "imu"}]}, r"sim: device 'a': rate_hz must be > 0"),
        ({"device": [{"name": "a", "modality": "imu", "rate_hz": 10, "triggers": ["nope"]}]},
         r"no sim trigger named 'nope'; allowed: sync"),
        ({"only": ["imu1"]}, r"only: no sim device or trigger named imu1; allowed: imu0, tlm0"),
        ({"duration_s": 0}, r"sim.duration_s: 0.0 is too small; allowed: >= 1.0"),
        ({"device": [{"name": "m", "modality": "audio", "rate_hz": 8000, "wire": "imu-bin"}]},
         r"audio devices use wire = 'capture'"),
        ({"unplug": [{"device": "mic0", "at_s": 1, "for_s": 1}]},
         r"unplug: no serial sim device named 'mic0'; allowed: imu0, tlm0, log0"),
        ({"only": ["imu0"], "unplug": [{"device": "tlm0", "at_s": 1, "for_s": 1}]},
         r"unplug: no serial sim device named 'tlm0'; allowed: imu0"),
        ({"unplug": [{"device": "imu0", "at_s": 1, "for_s": 0}]}, r"sim.unplug\[0\].for_s: 0.0 is too small"),
    ],
)
def test_sim_config_errors_name_file_key_and_allowed(table, match):
    with pytest.raises(ConfigError, match=match):
        parse_config({"sim": table}, "<t>")


def test_sim_defaults_are_the_standard_rig():
    cfg = parse_config({"sim": {"seed": 3, "only": ["imu0", "sync"]}}, "<t>")
    assert [d.name for d in cfg.sim.devices] == ["imu0"] and [t.name for t in cfg.sim.triggers] == ["sync"]
    full = SimSettings()
    assert [d.name for d in full.devices] == ["imu0", "tlm0", "log0", "mic0", "cam0"]
    imu = full.find("imu0")
    assert imu.clock.counter_bits == 32 and imu.clock.latency_kind == "usb-buffer" and imu.triggers == ("sync",)
    custom = parse_config({"sim": {"device": [{"name": "i", "modality": "imu", "rate_hz": 50.0,
                                               "clock": {"drift_ppm": 100.0}}]}}, "<t>").sim
    assert custom.devices[0].clock.drift_ppm == 100.0 and custom.devices[0].wire_format == "imu-bin"


# ---- chunked sampling
def test_sample_schedule_chunks_equal_regular_samples_across_a_reset():
    spec = ClockSpec(offset_s=5.0, drift_ppm=80.0, random_walk_ppm=2.0, resets_at_s=(3.3,), reset_offset_s=0.7)
    clock = DeviceClock(spec, 10.0, seed=4, origin_ns=123_456_789)
    true, dev, seg = clock.regular_samples(200.0)
    sched = SampleSchedule(clock, 200.0)
    rng = np.random.default_rng(0)
    parts, t = [], 0
    while t < 10 * NS:
        t = min(10 * NS, t + int(rng.integers(1, 90)) * 1_000_000)
        parts.append(sched.until(t))
    got = [np.concatenate([p[i] for p in parts]) for i in range(4)]
    np.testing.assert_array_equal(got[0], true)
    np.testing.assert_array_equal(got[1], dev)
    np.testing.assert_array_equal(got[2], seg)
    k = int(np.argmax(seg == 1))
    assert got[3][k] == 0 and got[3][k - 1] == k - 1  # the sample counter restarts with the clock


# ---- pure device models
def _dev(name, **clock):
    d = next(x for x in DEFAULT_DEVICES if x.name == name)
    return dataclasses.replace(d, clock=dataclasses.replace(d.clock, **clock)) if clock else d


def test_serial_device_bytes_decode_to_its_truth():
    world = World(20.0, seed=2)
    dev = SerialDevice(_dev("imu0", drop_rate=0.02, resets_at_s=(7.0,)), world, 10**12, seed=1, duration_s=20.0,
                       triggers={"sync": SimTrigger()})
    packets = []
    for end in range(37_000_000, 12 * NS, 37_000_000):
        packets += dev.render_until(end)
    arrivals = [p.arrival_ns for p in packets]
    assert arrivals == sorted(arrivals)
    dec = F.ImuDecoder()
    items = dec.feed(b"".join(p.data for p in packets))
    assert dec.errors == 0
    samples = [i for i in items if isinstance(i, F.ImuSample)]
    true = np.concatenate([p.true_ns for p in packets if p.kind == "samples"])
    devns = np.concatenate([p.device_ns for p in packets if p.kind == "samples"])
    assert len(samples) == len(true) and dev.dropped > 0
    np.testing.assert_array_equal([s.tick for s in samples], (devns // 1000) % (1 << 32))
    for p in packets:
        if p.kind == "samples":
            assert np.all(p.arrival_ns >= p.true_ns + 1_000_000)  # usb latency lower bound
    counters = np.array([s.counter for s in samples])
    assert np.sum((np.diff(counters) & 0xFFFF) - 1 > 0) > 0  # drops show as counter jumps
    assert np.any(np.diff(devns) < 0)  # the reset at 7 s
    edges = [i for i in items if isinstance(i, F.EdgeFrame)]
    assert [e.level for e in edges[:4]] == [1, 0, 1, 0] and len(edges) == 2 * 12
    # pong: the device stamps the ping on its own clock
    p = dev.pong(77, 10**12 + 5 * NS)
    (pong,) = F.ImuDecoder().feed(p.data)
    assert pong.token == 77 and pong.tick == (p.extra[2] // 1000) % (1 << 32)
    assert abs(p.extra[2] - int(dev.clock.to_device(np.array([10**12 + 5 * NS]))[0])) < 1000


def test_text_devices_render_their_formats():
    world = World(30.0, seed=3)
    tlm = SerialDevice(_dev("tlm0"), world, 0, seed=1, duration_s=30.0)
    items = L.TlmDecoder(5).feed(b"".join(p.data for p in tlm.render_until(10 * NS)))
    assert len(items) == 100 and all(isinstance(i, L.TlmSample) for i in items)
    assert [i.seq for i in items] == list(range(100))
    log = SerialDevice(_dev("log0"), world, 0, seed=1, duration_s=30.0)
    lines = L.LogDecoder().feed(b"".join(p.data for p in log.render_until(30 * NS)))
    assert [ln.message for ln in lines] == [m for _, m in world.log_messages()]
    assert {ln.level for ln in lines} <= {"INFO", "WARN"}


def test_capture_device_periods():
    world = World(10.0, seed=1)
    mic = CaptureDevice(_dev("mic0", resets_at_s=(4.0,)), world, 0, seed=1, duration_s=10.0)
    periods = []
    for end in range(25_000_000, 10 * NS, 25_000_000):
        periods += mic.render_until(end)
    assert all(len(p.true_ns) == 320 and p.data.dtype == np.int16 for p in periods)
    assert [p.index for p in periods] == list(range(len(periods)))
    d = np.concatenate([p.device_ns for p in periods])
    seg = np.concatenate([p.segment for p in periods])
    assert set(np.unique(np.diff(d[seg == 0]))) == {62_500}
    assert all(p.delivery_ns > p.true_ns[-1] for p in periods)
    n = sum(len(p.true_ns) for p in periods)
    assert abs(n + mic.dropped - 16000 * (10 - 0.025)) < 400


def test_trigger_edges_chunked():
    t = SimTrigger(period_s=0.5, width_s=0.1, phase_s=0.2)
    whole = trigger_edges(t, 0, 3 * NS, 0)
    parts = trigger_edges(t, 0, 1_250_000_000, 0) + trigger_edges(t, 1_250_000_000, 3 * NS, 0)
    assert whole == parts and whole[:3] == [(200_000_000, 1), (300_000_000, -1), (700_000_000, 1)]


# ---- in-process rig: capture driver and trigger edges
@pytest.mark.timeout(60)
def test_capture_driver_and_trigger_edges_match_truth(sink, tmp_path):
    rig = SimRig(SimSettings(seed=4, duration_s=30.0, only=("mic0", "cam0", "sync"),
                             trigger=(SimTrigger(period_s=0.25, width_s=0.01, phase_s=0.1),)))
    edges = []
    ctx = DriverContext(rig=rig)
    mic = SimCaptureDriver(StreamCommon(name="mic0", type="audio", driver="sim", nominal_rate=16000.0),
                           SimCaptureSettings(device="mic0"), ctx)
    cam = SimCaptureDriver(StreamCommon(name="cam0", type="video", driver="sim", nominal_rate=30.0,
                                        channel_format="uint8"), SimCaptureSettings(device="cam0"), ctx)
    assert cam.info.shape == (24, 32) and mic.info.channel_count == 1
    rig.subscribe_edges("sync", edges.append)
    rig.start()
    try:
        mic.start(sink)
        cam.start(sink)
        time.sleep(2.0)
    finally:
        mic.stop()
        cam.stop()
        rig.stop()
    truth = rig.truth()
    for name in ("mic0", "cam0"):
        dev, host = sink.times(name)
        st = truth.streams[name]
        assert len(st) == len(dev) > 0
        np.testing.assert_array_equal(dev, st.device_ns)
        assert np.all(host >= st.true_ns)
    assert len(truth.streams["cam0"]) >= 45
    frames = np.concatenate([c[0] for c in sink.chunks["cam0"]])
    assert frames.shape[1:] == (24, 32) and frames.dtype == np.uint8
    trig = truth.triggers["sync"]
    assert len(edges) == len(trig.t_ns) >= 14
    stamps = np.array([e.t_ns for e in edges])
    assert np.all((stamps - trig.t_ns >= 1_000) & (stamps - trig.t_ns <= 5_000))
    assert [e.seqno for e in edges] == list(range(1, len(edges) + 1))
    assert [e.polarity for e in edges[:2]] == [1, -1]
    # truth round trip
    path = tmp_path / "truth.npz"
    truth.save(path)
    back = Truth.load(path)
    assert back.origin_ns == truth.origin_ns and set(back.streams) == set(truth.streams)
    np.testing.assert_array_equal(back.streams["mic0"].true_ns, truth.streams["mic0"].true_ns)
    np.testing.assert_array_equal(back.triggers["sync"].t_ns, trig.t_ns)
    assert back.streams["cam0"].clock["drift_ppm"] == 50.0


def test_capture_driver_errors():
    with pytest.raises(ValueError, match=r"add a \[sim\] table"):
        SimCaptureDriver(StreamCommon(name="m", type="audio", driver="sim"), SimCaptureSettings(device="mic0"))
    rig = SimRig(SimSettings(duration_s=10.0, only=("mic0",)))
    with pytest.raises(LookupError, match="no capture sim device 'mic1'; allowed: mic0"):
        SimCaptureDriver(StreamCommon(name="m", type="audio", driver="sim"), SimCaptureSettings(device="mic1"),
                         DriverContext(rig=rig))
    with pytest.raises(ValueError, match="does not match sim device"):
        SimCaptureDriver(StreamCommon(name="m", type="audio", driver="sim", nominal_rate=8000.0),
                         SimCaptureSettings(device="mic0"), DriverContext(rig=rig))


# ---- `synchub sim` as a real process
@pytest.mark.timeout(60)
def test_synchub_sim_cli_serves_ptys_and_saves_truth(tmp_path):
    import serial

    cfg = tmp_path / "sim.toml"
    cfg.write_text('[sim]\nseed = 2\nduration_s = 60.0\nonly = ["imu0", "tlm0", "sync"]\n')
    links, truth_path = tmp_path / "links", tmp_path / "truth.npz"
    proc = subprocess.Popen([sys.executable, "-m", "synchub.cli", "sim", "--config", str(cfg), "--links",
                             str(links), "--truth", str(truth_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        lines = [proc.stdout.readline().split("\t") for _ in range(3)]
        assert [ln[0] for ln in lines] == ["imu0", "tlm0", "sync"]
        assert os.path.realpath(links / "imu0") == lines[0][1]
        ser = serial.Serial(str(links / "imu0"), 115200, timeout=0.1)
        ser.write(P.encode_ping("imu-bin", 9))
        dec, items, end = F.ImuDecoder(), [], time.monotonic() + 1.5
        while time.monotonic() < end:
            items += dec.feed(ser.read(4096))
        ser.close()
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "truth saved" in err and not (links / "imu0").exists()
    truth = Truth.load(truth_path)
    samples = [i for i in items if isinstance(i, F.ImuSample)]
    assert len(samples) == len(truth.streams["imu0"]) > 200
    assert [i.token for i in items if isinstance(i, F.Pong)] == [9]
    assert len(truth.streams["tlm0"]) == 0 and truth.streams["tlm0"].undelivered > 0  # nobody read tlm0


def test_synchub_sim_cli_config_errors(tmp_path, capsys):
    from synchub.cli import main

    cfg = tmp_path / "bad.toml"
    cfg.write_text("[sim]\nsed = 2\n")
    assert main(["sim", "--config", str(cfg)]) == 2
    assert "sim.sed: unknown key (did you mean 'seed'?)" in capsys.readouterr().err
    cfg.write_text("[agent]\nname = 'x'\n")
    assert main(["sim", "--config", str(cfg)]) == 2
    assert "no [sim] table" in capsys.readouterr().err


def test_barcode_trigger_edges_decode():
    from synchub.agent.clock.barcode import BarcodeDecoder

    t = SimTrigger(mode="barcode", period_s=1.0, bit_s=0.01, phase_s=0.3)
    edges = []
    for lo in range(0, 5 * NS, 130_000_000):  # chunk edges cut through barcodes
        edges += trigger_edges(t, lo, lo + 130_000_000, 7 * NS)
    assert edges == trigger_edges(t, 0, 65 * 130_000_000, 7 * NS)[: len(edges)]
    decoded = BarcodeDecoder(10_000_000).feed([(tt, 1 if p > 0 else 0) for tt, p in edges])
    assert [v for _, v in decoded][:4] == [0, 1, 2, 3]  # the last one completes only with a later edge
    assert decoded[0][0] == 7 * NS + 300_000_000
    with pytest.raises(ConfigError, match="a barcode needs period_s >= 45 \\* bit_s"):
        parse_config({"sim": {"trigger": [{"name": "bc", "mode": "barcode", "period_s": 0.2, "bit_s": 0.01}]}}, "<t>")


# ---- device clocks: per-reset restart values, jumps, reboot downtime, bimodal latency
def test_device_clock_resets_jump_restart_and_reboot():
    spec = ClockSpec(offset_s=100.0, drift_ppm=50.0, resets_at_s=(10.0, 20.0, 30.0), reset_jump_s=(3600.0, -5.0, 0.5),
                     reset_downtime_s=2.0)
    clk = DeviceClock(spec, 40, 1)
    t = (np.array([9.999999, 10.0, 19.999999, 20.0, 29.999999, 30.0]) * NS).astype(np.int64)
    d = clk.to_device(t)
    jumps = (d[1::2] - d[0::2]) / NS
    assert np.allclose(jumps, [3600.0, -5.0, 0.5], atol=1e-5)  # the clock keeps its value and jumps by this much
    true, dev, seg = clk.regular_samples(10.0)
    assert np.array_equal(clk.to_true(dev, seg), true)
    gaps = np.diff(true)[np.diff(seg) != 0] / NS
    assert len(gaps) == 3 and np.all((gaps >= 2.0) & (gaps < 2.2))  # silent while it reboots
    assert not clk.up(np.array([11 * NS]))[0] and clk.up(np.array([12 * NS]))[0]
    to = DeviceClock(ClockSpec(resets_at_s=(5.0, 9.0), reset_to_s=(1000.0, 3.0)), 12, 2)
    assert np.allclose(to.to_device(np.array([5 * NS, 9 * NS])) / NS, [1000.0, 3.0])
    with pytest.raises(ValueError, match="one per reset"):
        ClockSpec(resets_at_s=(1.0,), reset_jump_s=(1.0, 2.0))


def test_bimodal_latency_is_mostly_fast_sometimes_slow():
    clk = DeviceClock(ClockSpec(latency_kind="bimodal", latency_min_ms=1.5, latency_max_ms=2.5, slow_latency_ms=30.0,
                                slow_fraction=0.1), 100, 3)
    t = (np.arange(0, 100, 0.5) * NS).astype(np.int64)  # 0.5 s apart: no transfer waits behind a slow one
    lat = (clk.arrivals(t) - t) / 1e6
    slow = lat > 20
    assert 0.06 < slow.mean() < 0.14 and np.all((lat[~slow] >= 1.5) & (lat[~slow] <= 2.5))
    assert np.all((lat[slow] >= 30.0) & (lat[slow] <= 31.0))


def test_a_trigger_train_can_stop_and_resume_on_every_pin_at_once():
    """``stop_s``/``resume_s``: the trigger box switched off and on (the GPIO line and the devices' pins alike, as
    both read ``trigger_edges``)."""
    origin = 5 * NS
    t = SimTrigger(period_s=1.0, phase_s=0.5, stop_s=3.0, resume_s=6.0)
    rises = [(e - origin) / NS for e, p in trigger_edges(t, 0, 9 * NS, origin) if p > 0]
    assert rises == [0.5, 1.5, 2.5, 6.5, 7.5, 8.5]
    always = SimTrigger(period_s=1.0, phase_s=0.5)
    assert len(trigger_edges(always, 0, 9 * NS, origin)) == 18
    never_back = SimTrigger(period_s=1.0, phase_s=0.5, stop_s=3.0)
    assert [(e - origin) / NS for e, p in trigger_edges(never_back, 0, 9 * NS, origin) if p > 0] == [0.5, 1.5, 2.5]
    with pytest.raises(ValueError, match="resume_s must come after stop_s"):
        SimTrigger(stop_s=5.0, resume_s=2.0)
