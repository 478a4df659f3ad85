"""Generic formats end to end: bytes written to a real pty, read by the serial driver through pyserial."""

import os
import time

import numpy as np
import pytest
from test_generic_formats import Sink
from test_nmea import RECORDED, T0

from synchub.agent.core.evidence import TriggerEdge
from synchub.agent.core.options import StreamCommon
from synchub.drivers.serial.nmea import NmeaSettings
from synchub.drivers.serial.port import SerialSettings, SerialStreamDriver
from synchub.drivers.serial.textrecords import CsvSettings


class LockedSink(Sink):
    def __init__(self):
        import threading

        super().__init__()
        self.lock = threading.Lock()

    def samples(self, *a):
        with self.lock:
            super().samples(*a)


@pytest.fixture
def pty():
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def _run(port_pair, common, settings, chunks, wait_for):
    master, path = port_pair
    drv = SerialStreamDriver(common, settings)
    sink = LockedSink()
    drv.start(sink)
    try:
        time.sleep(0.3)  # pyserial flushes input right after opening
        for c in chunks:
            os.write(master, c)
            time.sleep(0.01)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not wait_for(sink):
            time.sleep(0.02)
    finally:
        drv.stop()
    os.set_blocking(master, False)
    try:
        written = os.read(master, 4096)
    except BlockingIOError:
        written = b""
    return sink, drv, written


def test_an_arduino_style_csv_stream_through_a_pty_with_malformed_lines(pty):
    common = StreamCommon(name="ard0", type="imu", driver="serial", nominal_rate=100.0)
    settings = SerialSettings(port=pty[1], format="csv", baudrate=115200,
                              csv=CsvSettings(time="ms", time_unit="ms", time_bits=32, channels=("ax", "ay")))
    lines = [b"ms,ax,ay\r\n"] + [f"{4294967000 + 10 * k},{k},{-k}\r\n".encode() for k in range(60)]
    lines[20] = b"4294967190,1,\r\n"[:9] + b"\xff\r\n"  # cut and garbled
    lines[30] = b"4294967290,x,y\r\n"
    sink, drv, written = _run(pty, common, settings, lines, lambda s: sum(len(c[1]) for c in s.chunks) >= 57)
    dev = sink.device()
    assert len(dev) == 58 and np.all(np.diff(dev) > 0)  # unwrapped across the millis() wrap
    assert [g[:2] for g in sink.gaps] == [(1, "malformed"), (1, "malformed")]
    assert drv.info.channel_labels == ("ax", "ay") and drv.info.quality_dict()["wire"] == "csv"
    assert written == b""  # a generic device is never pinged
    assert drv.health()["malformed"] == 2


def test_recorded_nmea_through_a_pty_gives_utc_samples_and_pps_seconds(pty):
    common = StreamCommon(name="gps0", type="telemetry", driver="serial", nominal_rate=1.0, trigger="pps0")
    settings = SerialSettings(port=pty[1], format="nmea", baudrate=9600, nmea=NmeaSettings())
    data = RECORDED.read_bytes().replace(b"\n", b"\r\n")
    data = data.replace(b"*72\r\n", b"*73\r\n")  # one bad checksum (the third epoch's GGA)
    sink, drv, _ = _run(pty, common, settings, [data[i:i + 64] for i in range(0, len(data), 64)],
                        lambda s: len(s.device()) >= 3)
    assert sink.device().tolist() == [T0, T0 + 10**9, T0 + 2 * 10**9]
    edges = [i for i in sink.items if isinstance(i, TriggerEdge)]
    assert [e.t_ns for e in edges] == sink.device().tolist() and all(e.clock == "device" for e in edges)
    assert [p for p in sink.problems if p[0] == "malformed"][0][1].startswith("checksum")
    info = drv.info
    assert info.channel_labels[:3] == ("lat", "lon", "alt") and info.channel_units[:3] == ("deg", "deg", "m")
    assert info.quality_dict()["device_clock"] == "utc"


def test_a_harp_device_through_a_pty_is_a_stream_in_harp_time(pty):
    from synchub.drivers.serial.harp import EVENT, HarpSettings, encode_harp_message

    common = StreamCommon(name="harp0", type="other", driver="serial")
    settings = SerialSettings(port=pty[1], format="harp", baudrate=1_000_000,
                              harp=HarpSettings(register=44, channels=("x", "y")))
    msgs = [encode_harp_message(EVENT, 44, 0x82, (k, -k), seconds=77 + k // 4, micros32=(k % 4) * 7812)
            for k in range(40)]
    msgs[10] = msgs[10][:-1] + bytes([(msgs[10][-1] + 1) & 0xFF])  # bad checksum
    sink, drv, written = _run(pty, common, settings, [b"".join(msgs[i:i + 5]) for i in range(0, 40, 5)],
                              lambda s: len(s.device()) >= 39)
    dev = sink.device()
    assert len(dev) == 39 and dev[0] == 77 * 10**9 and dev[1] == 77 * 10**9 + 7812 * 32_000
    assert drv.info.quality_dict()["device_clock"] == "harp" and written == b""
    assert any(p[0] == "malformed" for p in sink.problems)


def test_a_csv_device_unplugged_and_back_is_a_disconnect_gap_counted_by_its_counter(tmp_path):
    link = tmp_path / "ttyACM"
    m1, s1 = os.openpty()
    link.symlink_to(os.ttyname(s1))
    common = StreamCommon(name="ard0", type="imu", driver="serial")
    settings = SerialSettings(port=str(link), format="csv", reconnect_s=0.1,
                              csv=CsvSettings(columns=("n", "v"), seq="n", channels=("v",)))
    drv = SerialStreamDriver(common, settings)
    sink = LockedSink()
    drv.start(sink)
    try:
        time.sleep(0.3)
        os.write(m1, b"".join(f"{k},{k}\n".encode() for k in range(10)))
        assert _wait_for(lambda: len(sink.device()) == 10)
        os.close(m1)
        os.close(s1)  # unplugged: the port reads fail
        m2, s2 = os.openpty()
        link.unlink()
        link.symlink_to(os.ttyname(s2))
        assert _wait_for(lambda: drv.connects >= 2)
        time.sleep(0.3)
        os.write(m2, b"".join(f"{k},{k}\n".encode() for k in range(15, 20)))
        assert _wait_for(lambda: len(sink.device()) == 15)
    finally:
        drv.stop()
    assert sink.values().ravel().tolist() == list(range(10)) + list(range(15, 20))
    assert [g[:2] for g in sink.gaps] == [(5, "disconnect")]
    assert ("disconnect" in [p[0] for p in sink.problems]) and ("reconnect" in [p[0] for p in sink.problems])
    os.close(m2)
    os.close(s2)


def _wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.02)
    return cond()


def test_a_behaviour_box_event_printed_late_through_a_pty_is_no_clock_reset(pty):
    """A box prints "ms,event" lines from its main loop and its lick handler: one lick line comes 0.3 s after a later
    trial line.  Through the serial driver and the agent's clock layer: no reset reported, one clock segment, the
    line counted out of time order and every event mapped on the one timeline."""
    from synchub.agent.clock.layer import StreamClocks

    common = StreamCommon(name="box0", type="other", driver="serial", channel_format="string")
    settings = SerialSettings(port=pty[1], format="csv", baudrate=115200,
                              csv=CsvSettings(columns=("ms", "ev"), time="ms", time_unit="ms", text="ev"))
    times = [5_000_000 + 250 * k for k in range(12)]
    order = list(range(12))
    order[6], order[7] = 7, 6  # the lick at line 6 printed after the trial line 7
    lines = [f"{times[k]},{'lick' if k == 6 else f'trial{k}'}\n".encode() for k in order]
    sink, drv, _ = _run(pty, common, settings, lines, lambda s: len(s.device()) >= 12)
    assert sink.resets == [] and drv.stats.resets == 0
    assert sink.device().tolist() == [times[k] * 1_000_000 for k in order]
    clocks = StreamClocks({"box0": drv.info})
    for _, dev, host in sink.chunks:
        clocks.feed_arrivals("box0", dev, host)
    state = clocks.state()["box0"]
    assert state["segments"] == 1 and state["rejected"] == {"arrival_out_of_order": 1}
