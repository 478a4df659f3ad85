"""GPIO trigger back ends against fakes of gpiod 2.x and RPi.GPIO (no GPIO chip here) and a stand-in sim rig."""

from __future__ import annotations

import importlib
import sys
import threading
import time
from dataclasses import replace

import pytest
from support.paths import FAKES
from support.sinks import TriggerSink, wait_for

from synchub.agent.core.options import TriggerSettings
from synchub.drivers.gpio import make_trigger_input


def _load(monkeypatch, name):
    monkeypatch.syspath_prepend(str(FAKES))
    for mod in [m for m in sys.modules if m == name.split(".")[0] or m.startswith(name.split(".")[0] + ".")]:
        monkeypatch.delitem(sys.modules, mod)
    return importlib.import_module(name)


@pytest.fixture
def gpiod(monkeypatch):
    mod = _load(monkeypatch, "gpiod")
    mod._sim.reset()
    mod._sim.add_chip("/dev/gpiochip0", 32)
    yield mod
    mod._sim.reset()


def _settings(**kw):
    base = TriggerSettings(name="sync", backend="gpiod", chip="/dev/gpiochip0", line=17)
    return replace(base, **kw)


def test_gpiod_kernel_timestamps_widths_and_stream(gpiod):
    trig = make_trigger_input(_settings(edge="both"), module=gpiod)
    sink = TriggerSink()
    trig.start(sink)
    try:
        t0 = time.monotonic_ns()
        for k in range(5):
            gpiod._sim.drive("/dev/gpiochip0", 17, 1, t0 + k * 100_000_000)
            gpiod._sim.drive("/dev/gpiochip0", 17, 0, t0 + k * 100_000_000 + 10_000_000)
        assert wait_for(lambda: len(sink.ev) == 10)
    finally:
        trig.stop()
    rises = [e for e in sink.ev if e.polarity > 0]
    assert [e.t_ns for e in rises] == [t0 + k * 100_000_000 for k in range(5)]
    assert all(e.width_ns == 10_000_000 and e.clock == "ref" and e.source == "sync" for e in rises)
    assert [e.seq for e in rises] == [1, 3, 5, 7, 9]
    assert len(sink.got) == 10 and trig.info.type == "trigger"
    assert trig.info.quality_dict()["timestamp_source"] == "kernel"
    assert not gpiod._sim.CHIPS["/dev/gpiochip0"].requests  # released


def test_gpiod_rising_only_and_lost_events_counted(gpiod):
    trig = make_trigger_input(_settings(edge="rising"), module=gpiod)
    sink = TriggerSink()
    # a tiny kernel buffer: drive 40 pulses before the reader starts draining -> oldest events dropped
    trig.start(sink)
    trig._halt.set()
    trig._thread.join()
    t0 = time.monotonic_ns()
    for k in range(40):
        gpiod._sim.drive("/dev/gpiochip0", 17, 1, t0 + k * 1000)
        gpiod._sim.drive("/dev/gpiochip0", 17, 0, t0 + k * 1000 + 500)
    trig._halt.clear()
    trig._thread = threading.Thread(target=trig._run, daemon=True)
    trig._thread.start()
    assert wait_for(lambda: len(sink.ev) == 16)  # default buffer: 16 events per line
    # one more edge after the drain
    gpiod._sim.drive("/dev/gpiochip0", 17, 1, t0 + 10**6)
    assert wait_for(lambda: len(sink.ev) == 17)
    trig.stop()
    assert all(e.polarity == 1 and e.width_ns == 0 for e in sink.ev)
    assert trig.lost == 24 and sink.gaps and sink.gaps[0][1] == 24 and sink.gaps[0][2] == "device_drop"


@pytest.mark.parametrize("clock", ["realtime", "hte"])
def test_gpiod_event_clocks_mapped_to_monotonic(gpiod, clock):
    trig = make_trigger_input(_settings(event_clock=clock), module=gpiod)
    sink = TriggerSink()
    trig.start(sink)
    try:
        t = time.monotonic_ns() - 2_000_000
        gpiod._sim.drive("/dev/gpiochip0", 17, 1, t)
        assert wait_for(lambda: len(sink.ev) == 1)
    finally:
        trig.stop()
    assert abs(sink.ev[0].t_ns - t) < 5_000_000  # realtime offset read separately: within a few ms
    if clock == "hte":
        assert sink.ev[0].t_ns <= sink.ev[0].host_ns


def test_gpiod_debounce_drops_glitches_and_corrects_stamp(gpiod):
    trig = make_trigger_input(_settings(debounce_us=1000), module=gpiod)
    assert trig.info.quality_dict()["timestamp_source"] == "kernel-debounced"
    sink = TriggerSink()
    trig.start(sink)
    try:
        t = time.monotonic_ns()
        gpiod._sim.drive("/dev/gpiochip0", 17, 1, t)  # glitch: back low after 200 us
        gpiod._sim.drive("/dev/gpiochip0", 17, 0, t + 200_000)
        gpiod._sim.drive("/dev/gpiochip0", 17, 1, t + 50_000_000)  # a real pulse
        gpiod._sim.settle("/dev/gpiochip0", t + 80_000_000)
        assert wait_for(lambda: len(sink.ev) == 1)
    finally:
        trig.stop()
    # reported one jiffy (4 ms) after the edge, minus the nominal 1 ms period: 3 ms late, and said so
    assert sink.ev[0].t_ns - (t + 50_000_000) == 3_000_000


def test_gpiod_missing_chip_and_busy_line(gpiod):
    trig = make_trigger_input(_settings(chip="/dev/gpiochip9"), module=gpiod)
    with pytest.raises(OSError):
        trig.start(TriggerSink())
    a = make_trigger_input(_settings(), module=gpiod)
    a.start(TriggerSink())
    try:
        with pytest.raises(OSError):
            make_trigger_input(_settings(name="other"), module=gpiod).start(TriggerSink())
    finally:
        a.stop()


def test_gpiod_v1_module_rejected():
    class V1:
        __name__ = "gpiod"
        line = None

    with pytest.raises(ImportError, match="2.1.3"):
        make_trigger_input(_settings(), module=V1())


def test_rpi_gpio_userspace_callbacks(monkeypatch):
    GPIO = _load(monkeypatch, "RPi.GPIO")
    s = _settings(backend="rpi-gpio", edge="both", line=4)
    trig = make_trigger_input(s, module=GPIO)
    assert trig.info.quality_dict()["timestamp_source"] == "userspace"
    sink = TriggerSink()
    trig.start(sink)
    try:
        before = time.monotonic_ns()
        GPIO._drive(4, 1)
        GPIO._wait_idle()
        GPIO._drive(4, 0)
        GPIO._wait_idle()
        assert wait_for(lambda: len(sink.ev) == 2)
    finally:
        trig.stop()
    rise, fall = sink.ev
    assert rise.polarity == 1 and fall.polarity == -1 and rise.t_ns >= before and rise.seq == -1
    assert rise.width_ns == fall.t_ns - rise.t_ns > 0
    assert GPIO.getmode() is None  # cleaned up


def test_rpi_gpio_rejects_board_mode_and_other_clocks(monkeypatch):
    GPIO = _load(monkeypatch, "RPi.GPIO")
    with pytest.raises(ValueError, match="monotonic"):
        make_trigger_input(_settings(backend="rpi-gpio", event_clock="realtime"), module=GPIO)
    GPIO.setmode(GPIO.BOARD)
    try:
        with pytest.raises(ValueError, match="BOARD"):
            make_trigger_input(_settings(backend="rpi-gpio"), module=GPIO).start(TriggerSink())
    finally:
        GPIO.cleanup()


class StandInRig:
    """The documented SimRig.subscribe_edges interface: callback(SimEdge-like) per edge."""

    def __init__(self):
        self.subs = {"sync": []}

    def subscribe_edges(self, trigger, callback):
        if trigger not in self.subs:
            raise LookupError(f"no sim trigger {trigger!r}")
        self.subs[trigger].append(callback)

    def unsubscribe_edges(self, trigger, callback):
        self.subs[trigger].remove(callback)

    def fire(self, t, pol, seq):
        from types import SimpleNamespace

        for cb in list(self.subs["sync"]):
            cb(SimpleNamespace(trigger="sync", t_ns=t, true_ns=t, polarity=pol, seqno=seq))


def test_sim_backend_filters_edges_and_counts_lost():
    rig = StandInRig()
    trig = make_trigger_input(_settings(backend="sim", edge="both"), rig=rig)
    sink = TriggerSink()
    trig.start(sink)
    rig.fire(1000, 1, 1)
    rig.fire(2000, -1, 2)
    rig.fire(5000, 1, 5)  # 3 and 4 lost
    trig.stop()
    assert not rig.subs["sync"]
    assert [(e.t_ns, e.polarity, e.width_ns) for e in sink.ev] == [(1000, 1, 1000), (2000, -1, 0), (5000, 1, 0)]
    assert trig.lost == 2
    rising = make_trigger_input(_settings(backend="sim", edge="rising"), rig=rig)
    sink2 = TriggerSink()
    rising.start(sink2)
    rig.fire(7000, -1, 6)
    rig.fire(8000, 1, 7)
    rising.stop()
    assert [e.t_ns for e in sink2.ev] == [8000]
    with pytest.raises(LookupError):
        make_trigger_input(_settings(backend="sim", name="nope"), rig=rig).start(TriggerSink())


def test_factory_unknown_backend():
    with pytest.raises(ValueError, match="allowed"):
        make_trigger_input(replace(_settings(), backend="pigpio"))


def test_gpio_stream_driver_from_config(gpiod):
    from synchub.agent.config.loader import parse_config
    from synchub.drivers.gpio.stream import GpioStreamDriver

    cfg = parse_config({"stream": [{"name": "line5", "type": "trigger", "driver": "gpio", "line": 5},
                                   {"name": "imu0", "type": "imu", "driver": "gpio", "line": 6, "trigger": "line5"}]})
    s = cfg.stream("line5")
    drv = GpioStreamDriver(s.common, s.driver, None, module=gpiod)
    sink = TriggerSink()
    drv.start(sink)
    try:
        t = time.monotonic_ns()
        gpiod._sim.drive("/dev/gpiochip0", 5, 1, t)
        gpiod._sim.drive("/dev/gpiochip0", 5, 0, t + 1000)
        assert wait_for(lambda: len(sink.got) == 2 and len(sink.ev) == 2)
    finally:
        drv.stop()
    assert drv.info.type == "trigger" and sink.got[0][0] == "line5" and int(sink.got[0][2][0]) == t
    assert sink.ev[0].source == "line5" and sink.ev[0].width_ns == 1000 and drv.health()["samples"] == 2


def test_barcode_output_looped_back_into_a_gpiod_input(gpiod):
    from synchub.agent.clock.barcode import BarcodeDecoder
    from synchub.drivers.gpio.output import PulseOutput

    gpiod._sim.wire("/dev/gpiochip0", 3, 17)
    trig = make_trigger_input(_settings(edge="both"), module=gpiod)
    sink = TriggerSink()
    trig.start(sink)
    out = PulseOutput("/dev/gpiochip0", 3, period_s=0.7, barcode_bit_ms=15.0, module=gpiod)
    out.start()

    def decode():
        dec = BarcodeDecoder(15_000_000, tolerance=0.3)
        edges = [(e.t_ns, 1 if e.polarity > 0 else 0) for e in sorted(list(sink.ev), key=lambda e: e.t_ns)]
        return dec, dec.feed(edges, now_ns=out.emitted[-1][0] + 40 * 15_000_000)  # the line stays LOW after

    try:
        # at least 3 codes; on a loaded machine, more until two decode (late userspace edges spoil some frames)
        assert wait_for(lambda: len(out.emitted) >= 3 and len(decode()[1]) >= 2, timeout=20.0)
    finally:
        out.stop()
        trig.stop()
    dec, codes = decode()
    sched = dict((k, t) for t, k in out.emitted)
    # userspace-timed edges on a loaded machine may come late: such a frame is rejected and counted, never
    # decoded to a wrong value
    assert len(codes) >= 2 and len(codes) + dec.malformed >= len(out.emitted) - 1, (codes, dec.reasons, out.late_ns)
    values = [v for _, v in codes]
    assert values == sorted(values) and all(v in sched for v in values)
    assert all(abs(t - sched[v]) < 3_000_000 for t, v in codes)
    with pytest.raises(ValueError):
        PulseOutput("/dev/gpiochip0", 3, period_s=0.1, barcode_bit_ms=30.0, module=gpiod)


def test_agent_start_with_a_busy_trigger_line_is_one_clear_error(gpiod):
    import tomllib

    from synchub.agent.config.loader import parse_config
    from synchub.agent.pipeline.runtime import Agent, AgentError

    config = parse_config(tomllib.loads('[agent]\nname = "t"\ncollector = ["tcp://127.0.0.1:1"]\n'
                                        '[[trigger]]\nname = "sync"\nbackend = "gpiod"\nchip = "/dev/gpiochip0"\n'
                                        'line = 17\n'), "<test>")

    class Outlet:
        meta: list = []

        def send_chunk(self, chunk): ...

        def send_gap(self, gap): ...

        def send_meta(self, stream, meta):
            self.meta.append(stream)

    held = gpiod.request_lines("/dev/gpiochip0", consumer="other", config={17: None})  # another program has it
    outlet = Outlet()
    agent = Agent(config, outlet=outlet)
    with pytest.raises(AgentError, match="trigger 'sync': cannot start: .*busy"):
        agent.start()
    agent.stop()  # what had started stops and is flushed
    assert not agent.shipper.is_alive() and outlet.meta == ["_agent"]
    held.release()
