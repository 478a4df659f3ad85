"""Sync box host side: the frame codec (incl. a hypothesis fuzz of the parser) and the driver talking to the
real firmware in simavr through a pty, with reconnects."""

from __future__ import annotations

import os
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synchub.agent.core.evidence import Probe, TriggerEdge
from synchub.drivers.syncbox import protocol as P


# ---------------------------------------------------------------- codec
def test_crc_is_ccitt_false():
    assert P.crc16(b"123456789") == 0x29B1


def test_frame_round_trip_and_split_stream():
    frames = [P.encode_frame(0x81, i, struct.pack("<IIQ", i, 7 * i, 10**12 + i)) for i in range(5)]
    dec = P.FrameDecoder()
    stream = b"".join(frames)
    got = []
    for k in range(0, len(stream), 3):  # arbitrary read boundaries
        got += dec.feed(stream[k : k + 3])
    msgs = [P.parse(f) for f in got]
    assert [m.index for m in msgs] == list(range(5))
    assert msgs[3] == P.Pulse(seq=3, index=3, value=21, t=10**12 + 3)
    assert dec.rejected == {}


def test_decoder_counts_bad_frames_and_resyncs():
    good = P.encode_frame(0x87, 1, struct.pack("<HB", 9, 3))
    bad = bytearray(good)
    bad[3] ^= 1
    dec = P.FrameDecoder()
    out = dec.feed(b"\x05\x01\x00" + bytes(bad) + b"\xff" * 100 + b"\x00" + good)
    assert [P.parse(f) for f in out] == [P.Ack(seq=1, req_seq=9, cmd=3)]
    assert dec.rejected == {"bad cobs": 1, "bad crc": 1, "too long": 1}


def test_parse_rejects_wrong_payload_sizes():
    assert P.parse(P.Frame(P.MSG_PULSE, 0, b"\x00" * 15)) is None
    assert P.parse(P.Frame(P.MSG_VERSION, 0, b"\x00" * 3)) is None
    assert isinstance(P.parse(P.Frame(0xC0, 0, b"x")), P.Unknown)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_fuzz_parser_never_raises(chunks):
    dec = P.FrameDecoder()
    for c in chunks:
        for f in dec.feed(c):
            P.parse(f)  # may be None or Unknown, never an exception


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=50))
def test_fuzz_any_frame_round_trips(t, seq, payload):
    (f,) = P.FrameDecoder().feed(P.encode_frame(t, seq, payload))
    assert (f.type, f.seq, f.payload) == (t, seq, payload)


def test_config_builds_syncbox_settings_and_names_bad_keys():
    from synchub.agent.config.loader import parse_config
    from synchub.agent.core.settings import ConfigError

    table = {"name": "box", "type": "trigger", "driver": "syncbox", "port": "/dev/ttyACM0", "mode": "barcode",
             "bit_s": 0.01}
    cfg = parse_config({"stream": [table]}, "rig.toml")
    st = cfg.stream("box").driver
    assert (st.mode, st.bit_s, st.baud, st.port) == ("barcode", 0.01, 1_000_000, "/dev/ttyACM0")
    with pytest.raises(ConfigError, match=r"rig.toml: stream\[0\]\.mode: 'barcod' is not allowed.*'barcode'"):
        parse_config({"stream": [dict(table, mode="barcod")]}, "rig.toml")
    with pytest.raises(ConfigError, match="baud"):
        parse_config({"stream": [dict(table, baud=9600)]}, "rig.toml")


def test_limits_and_host_check_of_set():
    """The host computes the box's SET limits from its VERSION (f_cpu, prescaler, baud) and answers as the box
    would (the box itself is checked against this in tests/firmware/test_firmware.py)."""
    lim = P.limits()
    assert (lim.ticks_per_s, lim.min_gap, lim.min_period) == (16_000_000, 1024, 7360)
    assert P.limits(prescaler=8) == P.Limits(2_000_000, 128, 920)
    assert P.limits(baud=115_200).min_period == 63_889  # 4 ms: a PULSE frame takes 2 ms at 115200 baud
    assert P.check_config(P.MODE_PULSE, 7360, 1024, 0, lim) is None
    assert P.check_config(P.MODE_PULSE, 4000, 640, 0, lim) == (P.ERR_TIMING, P.LIM_WIDTH)
    assert P.check_config(P.MODE_PULSE, 2048, 1025, 0, lim) == (P.ERR_TIMING, P.LIM_GAP)
    assert P.check_config(P.MODE_PULSE, 100, 2000, 0, lim) == (P.ERR_TIMING, P.LIM_GAP)  # wider than the period
    assert P.check_config(P.MODE_BARCODE, 46_080, 0, 1023, lim) == (P.ERR_TIMING, P.LIM_BIT)
    assert P.check_config(P.MODE_BARCODE, 46_079, 0, 1024, lim) == (P.ERR_VALUE, P.LIM_PERIOD)
    assert P.check_config(P.MODE_HARP, 0, 0, 0, lim) is None
    assert P.check_config(7, 7360, 1024, 1024, lim) == (P.ERR_VALUE, P.LIM_MODE)
    assert P.explain_config(P.MODE_PULSE, 7359, 1024, 0, lim).startswith(
        "period 459.938 us (7359 ticks) is below the sync box's minimum of 460 us (7360 ticks)")
    assert P.Error(0, 1, P.ERR_TIMING, P.LIM_GAP).reason == "too fast for the sync box (pulse period - width)"


@pytest.mark.parametrize("keys,message", [
    ({"mode": "pulse", "width_s": 0.00005}, r"pulse width 50 us \(800 ticks\) is below the sync box's minimum of 64 us"),
    ({"mode": "pulse", "period_s": 0.001, "width_s": 0.00095}, r"pulse period - width 50 us"),
    ({"mode": "pulse", "period_s": 0.0004, "width_s": 0.0001}, r"period 400 us .* minimum of 460 us"),
    ({"mode": "barcode", "period_s": 0.01, "bit_s": 0.00005}, r"barcode bit 50 us"),
    ({"mode": "pulse", "period_s": 0.002, "width_s": 0.0001, "baud": 115_200}, r"period 2000 us .* minimum of 3993"),
    ({"mode": "barcode", "period_s": 0.01, "bit_s": 0.001}, r"shorter than 45 bits"),
])
def test_config_refuses_output_settings_the_box_cannot_meet(keys, message):
    from synchub.agent.config.loader import parse_config
    from synchub.agent.core.settings import ConfigError

    table = {"name": "box", "type": "trigger", "driver": "syncbox", "port": "/dev/ttyACM0", **keys}
    with pytest.raises(ConfigError, match=r"rig.toml: stream\[0\].*" + message):
        parse_config({"stream": [table]}, "rig.toml")
    fine = dict(table, period_s=1.0, width_s=0.001, bit_s=0.01)
    assert parse_config({"stream": [fine]}, "rig.toml").stream("box").driver.period_s == 1.0
    harp = dict(table, mode="harp", period_s=0.001, width_s=0.00095)  # harp ignores period and width
    assert parse_config({"stream": [harp]}, "rig.toml").stream("box").driver.mode == "harp"


def test_client_counts_sequence_gaps_and_bad_frames_on_a_pty():
    """Frames written into a real pty by hand: a missing device frame number and a corrupted frame are
    counted, a reboot (boot STATUS, numbering from 0) is not a gap."""
    import pty

    from synchub.drivers.syncbox.driver import SyncBoxClient

    master, slave = pty.openpty()
    try:
        c = SyncBoxClient(os.ttyname(slave))
        pulse = struct.pack("<IIQ", 1, 0, 123)
        boot = struct.pack("<HBBBIIIHHHHQIII", P.SEQ_NONE, 0, 0, 1, *([0] * 3), *([0] * 4), 9, 0, 0, 0)
        bad = bytearray(P.encode_frame(P.MSG_PULSE, 4, pulse))
        bad[5] ^= 0x10
        os.write(master, P.encode_frame(P.MSG_PULSE, 0, pulse) + P.encode_frame(P.MSG_PULSE, 1, pulse)
                 + P.encode_frame(P.MSG_PULSE, 3, pulse) + bytes(bad) + P.encode_frame(P.MSG_STATUS, 0, boot)
                 + P.encode_frame(P.MSG_PULSE, 1, pulse))
        got = []
        end = time.monotonic() + 2
        while time.monotonic() < end and len(got) < 5:
            got += c.poll()
        assert [type(m).__name__ for m, _ in got] == ["Pulse", "Pulse", "Pulse", "Status", "Pulse"]
        assert c.lost_frames == 1
        assert c.decoder.rejected == {"bad crc": 1}
        c.close()
    finally:
        os.close(master)
        os.close(slave)


# ---------------------------------------------------------------- driver against the simulated box
from synchub.firmware import harness  # noqa: E402

_missing = harness.tools_missing()
needs_box = pytest.mark.skipif(bool(_missing) and os.geteuid() != 0,
                               reason=f"AVR toolchain/simavr not installed ({_missing})")


def wait(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def elf():
    return harness.build()


@needs_box
def test_driver_reports_pulses_edges_probes_and_reconnects(elf, tmp_path, sink):
    from synchub.agent.core.options import StreamCommon
    from synchub.drivers.syncbox.driver import SyncBoxDriver, SyncBoxSettings

    link = str(tmp_path / "syncbox-tty")
    box = harness.SimBox(elf, realtime=True, link=link)
    box.start()
    drv = SyncBoxDriver(StreamCommon(name="box", type="trigger", driver="syncbox"), SyncBoxSettings(port=link, mode="pulse", period_s=0.01,
                                                             width_s=0.001, ping_interval_s=0.05,
                                                             reconnect_s=0.1))
    drv.start(sink)
    try:
        assert wait(lambda: len(sink.of(TriggerEdge)) >= 20 and len(sink.of(Probe)) >= 5)
        cyc, _ = box.now()
        for k in range(4):
            box.inject(cyc + 800_000 + 40_000 * k, (k + 1) % 2)
        assert wait(lambda: sum(1 for e in sink.of(TriggerEdge) if e.width_ns == 0) >= 4)
        pulses = [e for e in sink.of(TriggerEdge) if e.width_ns]
        assert all(e.source == "box" and e.clock == "device" and e.width_ns == 1_000_000 for e in pulses)
        assert all(b.t_ns - a.t_ns == 10_000_000 for a, b in zip(pulses, pulses[1:], strict=False))
        edges = [e for e in sink.of(TriggerEdge) if e.width_ns == 0]
        assert [e.polarity for e in edges[:4]] == [1, -1, 1, -1]
        assert box.wait_for(lambda b: len(b.injected) >= 4, 5)
        applied = [inj[1] for inj in box.injected[-4:]]  # cycles (simavr applies them between instructions)
        got = [b.t_ns - a.t_ns for a, b in zip(edges[:4], edges[1:4], strict=False)]
        want = [(b - a) * 62.5 for a, b in zip(applied, applied[1:], strict=False)]
        assert all(abs(g - w) <= 1 for g, w in zip(got, want, strict=True)), (got, want)  # ns rounding only
        for p in sink.of(Probe):
            assert p.host_send_ns < p.host_recv_ns
        assert sink.count("box") >= 24
        # reset button (same as a watchdog reset): the box reboots with its clock at 0; the driver sees the
        # boot announcement, says so, and configures it again
        n_before = len(sink.of(TriggerEdge))
        box.reset()
        assert wait(lambda: "sync box reset" in sink.reasons(), 5)
        assert wait(lambda: len(sink.of(TriggerEdge)) >= n_before + 5, 5)
        after = sink.of(TriggerEdge)[-1]
        assert after.t_ns < pulses[-1].t_ns and after.seq < pulses[-1].seq  # new clock, counters restarted
        assert drv.health()["device_resets"] == 1
        # unplug: the simulated board goes away, then comes back on the same path (a fresh boot)
        box.stop()
        assert wait(lambda: "sync box disconnected" in sink.reasons(), 5)
        n_before = len(sink.of(TriggerEdge))
        box = harness.SimBox(elf, realtime=True, link=link)
        box.start()
        assert wait(lambda: len(sink.of(TriggerEdge)) >= n_before + 5, 10)
        assert drv.health()["reconnects"] >= 1 and drv.connected.is_set()
    finally:
        drv.stop()
        box.stop()


@needs_box
def test_probes_and_captured_edges_map_onto_host_clock(elf):
    """Edges injected at known host times, mapped through probes + ClockModel land within milliseconds of the
    truth (units, signs and offsets are right; a wiring mistake is off by seconds).  The pty and the real-time
    pacing of the simulation dominate the error; bench/firmware.py measures it."""
    from synchub.agent.clock.model import ClockModel
    from synchub.drivers.syncbox.driver import SyncBoxClient

    with harness.SimBox(elf, realtime=True) as box:
        c = SyncBoxClient(box.port, timeout=5.0)
        c.hello()
        model = ClockModel(name="box")
        for k in range(40):
            p = c.probe("box", k)
            model.add_probe(p.host_send_ns, p.device_ns, p.host_recv_ns)
            time.sleep(0.01)
        cyc, _ = box.now()
        for k in range(6):
            box.inject(cyc + 1_600_000 + 160_000 * k, (k + 1) % 2)
        msgs = []
        end = time.monotonic() + 5
        while time.monotonic() < end and sum(isinstance(m, P.Edge) for m in msgs) < 6:
            msgs += [m for m, _ in c.poll()]
        c.close()
        assert box.wait_for(lambda b: len(b.injected) >= 6, 5)
    edges = [m for m in msgs if isinstance(m, P.Edge)]
    assert len(edges) == 6
    import numpy as np

    ref, unc, _ = model.map(np.array([c.ticks_to_ns(e.t) for e in edges], dtype=np.int64))
    truth = np.array([inj[3] for inj in box.injected[:6]], dtype=np.int64)
    err = np.abs(ref - truth)
    assert err.max() < 20_000_000, err
