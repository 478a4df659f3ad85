"""Real ptys end to end: SimRig devices read by SerialStreamDriver through pyserial, checked against the truth."""

import dataclasses
import time

import numpy as np
import pytest

from synchub.agent.core.evidence import Probe, TriggerEdge
from synchub.agent.core.options import StreamCommon
from synchub.drivers.base import DriverContext
from synchub.drivers.serial.port import SerialStreamDriver
from synchub.drivers.serial.protocol import SerialProtocol, SerialSettings
from synchub.drivers.sim.rig import SimRig
from synchub.drivers.sim.settings import DEFAULT_DEVICES, SimSettings


def _settings(drop_rate=0.01):
    devs = []
    for d in DEFAULT_DEVICES:
        if d.name == "imu0":
            d = dataclasses.replace(d, clock=dataclasses.replace(d.clock, drop_rate=drop_rate, drop_burst=2))
        devs.append(d)
    return SimSettings(seed=5, duration_s=60.0, device=tuple(devs), only=("imu0", "tlm0", "log0", "sync"))


def _driver(rig, name, fmt, rate, **kw):
    common = StreamCommon(name=name, type={"imu-bin": "imu", "tlm-nmea": "telemetry", "log-text": "text"}[fmt],
                          driver="serial", nominal_rate=rate,
                          channel_format="string" if fmt == "log-text" else "float32")
    settings = SerialSettings(port=f"sim:{name}", format=fmt, probe_interval_s=0.5, **kw)
    return SerialStreamDriver(common, settings, DriverContext(rig=rig))


@pytest.mark.timeout(60)
def test_serial_driver_reads_every_delivered_sample_of_the_rig(sink):
    rig = SimRig(_settings())
    drivers = [_driver(rig, "imu0", "imu-bin", 200.0), _driver(rig, "tlm0", "tlm-nmea", 10.0),
               _driver(rig, "log0", "log-text", 0.0)]
    rig.start()
    try:
        for d in drivers:
            d.start(sink)
        time.sleep(1.5)
        rig.inject("imu0", b"\x00\xa5\x5ajunk bytes\xa5")  # garbage between frames: counted, no sample lost
        rig.inject("tlm0", b"$TLM,garbage*00\r\n")
        time.sleep(0.5)
        rig.inject("imu0", corrupt=1)  # two damaged frames, apart: their samples are lost, counted as malformed
        time.sleep(0.5)
        rig.inject("imu0", corrupt=1)
        time.sleep(1.5)
    finally:
        rig.quiesce()  # devices fall silent, readers drain: a reader closed with bytes in flight loses them unseen
        for d in drivers:
            d.stop()
        rig.stop()
    truth = rig.truth()

    imu = truth.streams["imu0"]
    dev, host = sink.times("imu0")
    assert len(imu) > 700 and sink.count("imu0") == len(imu), "every delivered sample arrives, none extra"
    # seq order matches truth order: device times equal the truth's (the raw counter is us, truth is ns)
    np.testing.assert_array_equal(dev // 1000, imu.device_ns // 1000)
    # bytes never arrive before the sample was taken; the bound is loose (a loaded 2-core CI machine stalls)
    assert np.all(host >= imu.true_ns) and np.all(host - imu.true_ns < 1_000_000_000)
    gaps = [g for g in sink.gaps if g[0] == "imu0"]
    assert sum(g[1] for g in gaps if g[2] == "device_drop") == imu.dropped > 0
    assert sum(g[1] for g in gaps if g[2] == "malformed") == imu.corrupted == 2
    bad = [p for p in sink.problems if p[0] == "imu0" and p[1] == "malformed"]
    assert len(bad) == 3 and drivers[0].stats.malformed == 3
    # trigger edges stamped by the device, probes answered
    edges = [e for e in sink.items if isinstance(e, TriggerEdge) and e.source == "imu0"]
    assert len(edges) == len(imu.edge_true_ns) >= 6
    np.testing.assert_array_equal([e.t_ns // 1000 for e in edges], imu.edge_device_ns // 1000)
    probes = [e for e in sink.items if isinstance(e, Probe) and e.stream == "imu0"]
    assert len(probes) >= 6
    for pr in probes:
        assert pr.host_send_ns < pr.host_recv_ns

    tlm = truth.streams["tlm0"]
    assert sink.count("tlm0") == len(tlm) >= 30  # 10 Hz for ~4 s; a loaded machine starts late
    tdev, _ = sink.times("tlm0")
    np.testing.assert_array_equal(tdev // 1_000_000, tlm.device_ns // 1_000_000)
    assert ("tlm0", "malformed", "checksum: 15 bytes $TLM,garbage*00") in sink.problems
    values = np.concatenate([p[0] for p in sink.chunks["tlm0"]])
    assert values.shape == (len(tlm), 5) and values.dtype == np.float32

    log0 = truth.streams["log0"]
    assert sink.count("log0") == len(log0) >= 1
    texts = [t for p in sink.chunks["log0"] for t in p[0]]
    world_texts = dict(rig.world.log_messages())
    rel = log0.true_ns - truth.origin_ns
    assert texts == [world_texts[int(t)] for t in rel]


@pytest.mark.timeout(60)
def test_reconnect_after_the_host_closes_the_port(sink):
    rig = SimRig(_settings(drop_rate=0.0))
    drv = _driver(rig, "imu0", "imu-bin", 200.0, reconnect_s=0.3)
    rig.start()
    try:
        drv.start(sink)
        time.sleep(1.5)
        rig.unplug("imu0", 0.5)  # the pty goes away under the reader (as when a USB device is unplugged)
        time.sleep(2.0)
    finally:
        rig.quiesce()
        drv.stop()
        rig.stop()
    truth = rig.truth().streams["imu0"]
    assert drv.connects == 2
    assert sink.count("imu0") == len(truth)
    assert set(truth.conn.tolist()) == {0, 1}
    gaps = [g for g in sink.gaps if g[0] == "imu0"]
    k = int(np.argmax(truth.conn == 1))
    missed = round((truth.device_ns[k] - truth.device_ns[k - 1]) / 5_000_000) - 1  # samples taken while unplugged
    assert len(gaps) == 1 and gaps[0][2] == "disconnect" and gaps[0][1] == missed > 50
    assert truth.undelivered >= missed
    assert any(p[1] == "disconnect" for p in sink.problems) and any(p[1] == "reconnect" for p in sink.problems)


def test_unknown_sim_port_is_a_clear_error():
    rig = SimRig(_settings())
    try:
        with pytest.raises(LookupError, match="no serial sim device 'imu9'; allowed: imu0, tlm0, log0"):
            _driver(rig, "imu9", "imu-bin", 200.0)
        with pytest.raises(ValueError, match=r"needs the simulated rig"):
            SerialStreamDriver(StreamCommon(name="x", type="imu", driver="serial"),
                               SerialSettings(port="sim:imu0", format="imu-bin"))
    finally:
        rig.stop()


@pytest.mark.timeout(60)
def test_counter_wrap_and_clock_reset_through_the_driver(sink):
    devs = tuple(
        dataclasses.replace(d, triggers=(), clock=dataclasses.replace(d.clock, offset_s=4294.5, resets_at_s=(2.5,),
                                                                   drop_rate=0.0))
        for d in DEFAULT_DEVICES if d.name == "imu0"
    )  # the 32-bit us counter wraps ~0.47 s into the run, the clock resets at 2.5 s
    rig = SimRig(SimSettings(seed=6, duration_s=30.0, device=devs, only=("imu0",), trigger=()))
    drv = _driver(rig, "imu0", "imu-bin", 200.0)
    rig.start()
    try:
        drv.start(sink)
        time.sleep(4.0)
    finally:
        rig.quiesce()
        drv.stop()
        rig.stop()
    truth = rig.truth().streams["imu0"]
    dev, _ = sink.times("imu0")
    assert len(dev) == len(truth) > 600
    np.testing.assert_array_equal(dev // 1000, truth.device_ns // 1000)  # unwrapped across the wrap, restarted
    assert truth.device_ns.max() > 1 << 32 and drv.protocol.unwrapper.wraps == 1
    assert len(truth.resets_ns) == 1 and set(truth.segment.tolist()) == {0, 1}
    assert [g for g in sink.gaps if g[0] == "imu0"] == []  # a reset loses no sample
    (stream, new, before, _), = sink.resets
    assert stream == "imu0" and before > new and drv.stats.resets == 1


def test_driver_parsing_over_minutes_of_simulated_bytes(sink):
    """The serial protocol fed with 3 simulated minutes of imu0 bytes at their arrival times (no pty, no waiting):
    counter wrap, a reset, drops, garbage; every sample and every gap accounted for."""
    from synchub.drivers.sim.devices import SerialDevice
    from synchub.drivers.sim.settings import SimTrigger
    from synchub.drivers.sim.world import World

    spec = next(d for d in DEFAULT_DEVICES if d.name == "imu0")
    spec = dataclasses.replace(spec, clock=dataclasses.replace(spec.clock, offset_s=4250.0, resets_at_s=(100.0,),
                                                               drop_rate=0.002, drop_burst=3))
    origin = 10**12
    dev = SerialDevice(spec, World(200.0, seed=8), origin, seed=8, duration_s=200.0, triggers={"sync": SimTrigger()})
    rig = SimRig(_settings())
    drv = _driver(rig, "imu0", "imu-bin", 200.0)
    rig.stop()
    proto = SerialProtocol(drv.info, drv.common, drv.settings, sink, drv.stats)  # what the driver's thread feeds
    true, devns, n_garbage = [], [], 0
    for k, end in enumerate(range(40_000_000, 180 * 10**9, 40_000_000)):
        for p in dev.render_until(end):
            data = p.data
            if k % 500 == 7 and p.kind == "samples":
                data = b"\x13\x37garbage" + data
                n_garbage += 1
            proto.data_received(data, p.arrival_ns)
            if p.kind == "samples":
                true.append(p.true_ns)
                devns.append(p.device_ns)
    devns = np.concatenate(devns)
    got, host = sink.times("imu0")
    assert len(got) == len(devns) > 30_000
    np.testing.assert_array_equal(got // 1000, devns // 1000)
    assert proto.unwrapper.wraps == 1 and proto.unwrapper.resets == 1
    gaps = [g for g in sink.gaps if g[0] == "imu0"]
    assert [r[0] for r in sink.resets] == ["imu0"]
    assert sum(g[1] for g in gaps if g[2] == "device_drop") == dev.dropped > 10
    assert drv.stats.malformed == n_garbage > 0
    edges = [e for e in sink.items if isinstance(e, TriggerEdge)]
    assert len(edges) == 2 * 180


@pytest.mark.timeout(60)
def test_a_silent_reader_gets_the_stream_too(sink):
    """probe_interval_s = 0: the driver never writes; the sim device streams once the port has been open a moment."""
    rig = SimRig(_settings(drop_rate=0.0))
    drv = _driver(rig, "tlm0", "tlm-nmea", 10.0)
    drv = SerialStreamDriver(drv.common, dataclasses.replace(drv.settings, probe_interval_s=0.0),
                             DriverContext(rig=rig))
    rig.start()
    try:
        drv.start(sink)
        time.sleep(2.0)
    finally:
        rig.quiesce()
        drv.stop()
        rig.stop()
    truth = rig.truth().streams["tlm0"]
    assert rig.ports["tlm0"].host_bytes == 0 and drv.protocol.probes_sent == 0
    assert sink.count("tlm0") == len(truth) >= 12
