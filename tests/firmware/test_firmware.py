"""The sync box firmware, built with avr-gcc and run cycle by cycle in simavr (firmware/sim harness).

Cycle numbers are simulated AVR cycles (16 MHz, prescaler 1: one Timer1 tick = one cycle).  ``c0`` is the
cycle at which the device clock read 0; it is measured from the pulses (output pin vs reported time) and
then checked against the capture path, which is independent of it.
"""

from __future__ import annotations

import os
import time

import pytest

from synchub.drivers.syncbox import protocol as P
from synchub.drivers.syncbox.driver import SyncBoxClient, SyncBoxRefused, SyncBoxSettingsError
from synchub.firmware import harness, timing

pytestmark = pytest.mark.firmware

_missing = harness.tools_missing()
if _missing and os.geteuid() != 0:
    pytest.skip(f"AVR toolchain/simavr not installed ({_missing}); `make test` installs them as root",
                allow_module_level=True)

TPS = 16_000_000


@pytest.fixture(scope="module")
def elf():
    return harness.build()


def collect(client: SyncBoxClient, until, timeout=10.0):
    """Poll messages until ``until(msgs)``; return them."""
    msgs = []
    end = time.monotonic() + timeout
    while time.monotonic() < end and not until(msgs):
        msgs += [m for m, _ in client.poll()]
    return msgs


def start_pulses(box, mode=P.MODE_PULSE, period=16000, width=1600, bit=0):
    c = SyncBoxClient(box.port, timeout=5.0)
    c.hello()
    c.request(P.set_config, mode, period, width, bit)
    c.request(P.simple, P.CMD_START)
    return c


def c0_from(pulses, box, level=1):
    """Device-clock origin in cycles: exact output edge cycle minus the reported pulse time (the harness
    log may trail the UART by a few ms: wait for it)."""
    end = time.monotonic() + 3.0
    while True:
        exact = {e[2] for e in list(box.out_edges) if e[1] == level}
        offs = {x - pulses[0].t for x in exact if 0 <= x - pulses[0].t < 10_000_000}
        common = [o for o in offs if all(p.t + o in exact for p in pulses)]
        if common or time.monotonic() > end or box.finished:
            break
        time.sleep(0.05)
    assert common, f"no single offset explains all pulses: {sorted(offs)[:5]}"
    return min(common)  # periodic pulses fit many offsets; the first pulse sits on the earliest edge


def test_build_fits_atmega328p(elf):
    s = harness.sizes(elf)
    assert elf.with_suffix(".hex").exists()
    assert 0 < s["flash_bytes"] < 0.5 * s["flash_total"]
    assert 0 < s["ram_bytes"] < 0.75 * s["ram_total"]  # the rest is stack


def test_pulse_period_and_width_exact_to_the_cycle(elf):
    with harness.SimBox(elf, realtime=True) as box:
        c = start_pulses(box, period=16000, width=1600)
        msgs = collect(c, lambda m: sum(isinstance(x, P.Pulse) for x in m) >= 30)
        c.close()
        pulses = [m for m in msgs if isinstance(m, P.Pulse)]
        assert len(pulses) >= 30
        assert [p.index for p in pulses] == list(range(pulses[0].index, pulses[0].index + len(pulses)))
        assert all(b.t - a.t == 16000 for a, b in zip(pulses, pulses[1:], strict=False))
        c0 = c0_from(pulses, box)
        last_fall = pulses[-1].t + c0 + 1600  # the pin log may trail the UART: wait for it
        assert box.wait_for(lambda b: any(e[2] >= last_fall for e in b.out_edges), 3)
        edges = [e for e in box.out_edges if e[2] >= pulses[0].t + c0]
        rises = [e[2] for e in edges if e[1] == 1]
        falls = [e[2] for e in edges if e[1] == 0]
        n = min(len(rises), len(falls)) - 1
        assert n >= 29
        assert {b - a for a, b in zip(rises[:n], rises[1 : n + 1], strict=False)} == {16000}
        assert {f - r for r, f in zip(rises[:n], falls[:n], strict=False)} == {1600}
        # simavr handles timer events between instructions: the pin is seen at most a few cycles late
        assert all(0 <= e[0] - e[2] <= 4 for e in edges)


def test_capture_timestamps_exact_across_many_overflows(elf):
    with harness.SimBox(elf, realtime=True) as box:
        c = start_pulses(box, period=160000, width=1600)
        pulses = [m for m in collect(c, lambda m: sum(isinstance(x, P.Pulse) for x in m) >= 3)
                  if isinstance(m, P.Pulse)]
        c0 = c0_from(pulses[:3], box)
        now, _ = box.now()
        base = now + 1_600_000
        base -= (base - c0) % 65536  # an overflow of Timer1
        times = []
        for k in range(0, 240, 3):  # edges over ~240 overflows (1 s), some right on the overflow
            d = (-1, 0, 1, 2, 5000, 33000, 65535)[k % 7]
            times.append(base + k * 65536 + d)
        for i, t in enumerate(times):
            box.inject(t, (i + 1) % 2)
        edges = [m for m in collect(c, lambda m: sum(isinstance(x, P.Edge) for x in m) >= len(times), timeout=20)
                 if isinstance(m, P.Edge)]
        c.close()
    assert len(edges) == len(times)
    actual = [inj[1] for inj in box.injected]
    assert len(actual) == len(times)
    for e, cyc, i in zip(edges, actual, range(len(times)), strict=False):
        assert e.rising == ((i + 1) % 2 == 1)
        assert e.lost_after == 0
        assert abs(e.t + c0 - cyc) <= 1, (i, e.t + c0 - cyc)


def test_close_edges_reported_or_counted_lost(elf):
    with harness.SimBox(elf, realtime=True) as box:
        c = SyncBoxClient(box.port, timeout=5.0)
        c.hello()
        now, _ = box.now()
        gaps = (2, 10, 40, 100, 300, 2000)
        t = now + 1_600_000  # 100 ms ahead: the commands reach the simulation well before
        for g in gaps:
            box.inject(t, 1)
            box.inject(t + g, 0)
            t += 50_000
        msgs = collect(c, lambda m: sum(isinstance(x, P.Edge) for x in m) >= len(gaps) * 2
                       or sum(x.lost_after + 1 for x in m if isinstance(x, P.Edge)) >= len(gaps) * 2, timeout=10)
        st = c.status()
        c.close()
    assert all(0 <= cyc - sched <= 4 for sched, cyc, _, _ in box.injected)  # applied between instructions
    edges = [m for m in msgs if isinstance(m, P.Edge)]
    accounted = sum(1 + e.lost_after for e in edges)
    assert accounted == 2 * len(gaps)  # every edge is either timestamped or counted as lost
    assert st.lost_edges == sum(e.lost_after for e in edges)
    assert any(e.lost_after for e in edges)  # 2 cycles apart cannot both be captured
    assert edges[-1].lost_after == 0 and not edges[-1].rising  # 2000 cycles apart: both captured


def test_ping_pong_round_trip(elf):
    with harness.SimBox(elf, realtime=True) as box:
        c = SyncBoxClient(box.port, timeout=5.0)
        c.hello()
        last = 0
        for token in (1, 0xDEADBEEF, 7):
            pong, t_send, t_recv = c.ping(token)
            assert pong.token == token
            assert last < pong.t_rx <= pong.t_tx < pong.t_rx + 16_000  # replied within 1 ms of device time
            assert t_send < t_recv
            last = pong.t_tx
        cyc, _ = box.now()
        c.close()
    assert last < cyc  # device time is behind the simulation's cycle count (c0 > 0)


def test_garbage_and_truncated_frames_get_errors_and_box_keeps_running(elf):
    with harness.SimBox(elf, realtime=True) as box:
        c = SyncBoxClient(box.port, timeout=5.0)
        c.hello()
        good = P.ping(5, 99)
        bad_crc = bytearray(P.encode_frame(P.CMD_PING, 6, b"\x01\x02\x03\x04"))
        bad_crc[2] ^= 0x40
        for junk in (b"\x13\x37garbage\xff\x00",  # not COBS
                     good[: len(good) // 2] + b"\x00",  # truncated
                     bytes(bad_crc),
                     P.encode_frame(0x42, 7),  # unknown command
                     P.encode_frame(P.CMD_PING, 8, b"\x01"),  # wrong length
                     bytes(range(1, 200)) + b"\x00",  # too long
                     P.set_config(9, 9, 100, 100, 100)):  # out of range (no mode 9)
            c.ser.write(junk)
            time.sleep(0.01)  # one at a time (a sustained flood may also overrun: see the next test)
        msgs = collect(c, lambda m: sum(isinstance(x, P.Error) for x in m) >= 7, timeout=5)
        errors = [m for m in msgs if isinstance(m, P.Error)]
        codes = [e.code for e in errors]
        assert len(errors) == 7, codes
        assert P.ERRORS[5] in [e.reason for e in errors]
        assert {e.req_seq for e in errors if e.code in (5, 6, 7)} == {7, 8, 9}
        assert set(codes) >= {1, 5, 6, 7} and ({2, 3} & set(codes)) and 4 in codes
        pong, _, _ = c.ping(1234)  # still alive and answering
        assert pong.token == 1234
        assert c.status().rx_errors == 7
        c.close()


def test_barcode_decoded_from_simulated_pin(elf):
    from synchub.agent.clock.barcode import BarcodeDecoder

    bit = 16000  # 1 ms
    with harness.SimBox(elf, realtime=False, backpressure=True) as box:  # waits for a slow host
        c = start_pulses(box, mode=P.MODE_BARCODE, period=50 * bit, width=0, bit=bit)
        c.request(P.simple, P.CMD_STOP)
        c.request(P.simple, P.CMD_RESET)
        c.request(P.simple, P.CMD_START)
        def after_reset(msgs):
            ps = [m for m in msgs if isinstance(m, P.Pulse)]
            zero = [i for i, p in enumerate(ps) if p.index == 0]
            return ps[zero[-1]:] if zero else []

        pulses = after_reset(collect(c, lambda m: len(after_reset(m)) >= 7, timeout=20))
        c.request(P.simple, P.CMD_STOP)
        c.close()
    pulses = pulses[:6]
    assert [p.index - pulses[0].index for p in pulses] == list(range(6))
    assert [p.value - pulses[0].value for p in pulses] == list(range(6))  # the barcode counter counts up
    assert all(p.value == p.index for p in pulses), [(p.index, p.value, p.seq) for p in pulses]
    c0 = c0_from(pulses, box)
    first, last = pulses[0].t + c0, pulses[-1].t + c0 + 36 * bit
    edges = [(e[2] * 125 // 2, e[1]) for e in box.out_edges if first <= e[2] <= last]  # cycles -> ns
    dec = BarcodeDecoder(bit_ns=1_000_000)
    got = dec.feed(edges) + dec.flush()
    assert [v for _, v in got][:6] == [p.value for p in pulses]
    assert [t for t, _ in got][:6] == [(p.t + c0) * 125 // 2 for p in pulses]


def test_harp_code_decoded_from_simulated_pin(elf):
    from synchub.agent.clock.barcode import HarpDecoder

    with harness.SimBox(elf, realtime=False, backpressure=True) as box:  # waits for a slow host
        c = start_pulses(box, mode=P.MODE_HARP, period=0, width=0, bit=0)
        pulses = [m for m in collect(c, lambda m: sum(isinstance(x, P.Pulse) for x in m) >= 4, timeout=30)
                  if isinstance(m, P.Pulse)]
        c.close()
    pulses = pulses[:3]
    assert all(p.t == p.value * TPS for p in pulses)  # on the device's whole seconds
    c0 = c0_from(pulses, box, level=0)
    edges = [(e[2] * 125 // 2, e[1]) for e in box.out_edges if pulses[0].t + c0 <= e[2]]
    dec = HarpDecoder(baud=1000)
    got = dec.feed(edges) + dec.flush()
    assert [(t, s) for t, s in got][:3] == [((p.t + c0) * 125 // 2, p.value) for p in pulses]


def test_flood_of_garbage_is_survived_and_counted(elf):
    with harness.SimBox(elf, realtime=True) as box:
        c = SyncBoxClient(box.port, timeout=5.0)
        c.hello()
        rnd = bytes((i * 73 + 11) % 256 for i in range(20_000))  # 200 ms of back-to-back bytes at 1 Mbaud
        c.ser.write(rnd)
        time.sleep(0.4)
        c.poll()
        pong, _, _ = c.ping(77)
        assert pong.token == 77
        st = c.status()
        assert st.rx_errors > 0 and not st.running
        c.close()


def test_115200_baud_build(tmp_path):
    """The UART rate is a build option; the box reports it and works at it."""
    elf = harness.build({"BAUD": "115200UL"}, build_dir=tmp_path / "b115200")
    with harness.SimBox(elf, realtime=True) as box:
        c = SyncBoxClient(box.port, baud=115_200, timeout=5.0)
        v = c.hello()
        assert v.baud == 115_200 and v.ticks_per_s == TPS
        pong, _, _ = c.ping(5)
        assert pong.token == 5
        # a code's PULSE frame (2 ms at this rate) may use half of the link: periods from 4 ms
        lim = P.limits(v.f_cpu, v.prescaler, v.baud)
        assert lim.min_period == 63_889
        c.request(P.set_config, P.MODE_PULSE, lim.min_period, lim.min_gap, 0)
        with pytest.raises(SyncBoxRefused, match=r"\(period\)"):
            c.request(P.set_config, P.MODE_BARCODE, lim.min_period - 1, 0, 1024)
        c.close()


def test_timestamps_across_the_32_bit_tick_boundary(elf):
    """Interrupt handlers keep 32-bit times and the main loop extends them: edges on both sides of tick 2^32
    (268 s of device time, reached in about a second of fast simulation) keep exact 64-bit timestamps."""
    # paced while the host talks to the board, however loaded the machine; flat out once every edge is set
    with harness.SimBox(elf, realtime=True) as box:
        c = SyncBoxClient(box.port, timeout=5.0)
        c.hello()
        now, _ = box.now()
        box.inject(now + 160_000, 1)  # 10 ms ahead
        box.inject(now + 161_000, 0)
        first = [m for m in collect(c, lambda m: sum(isinstance(x, P.Edge) for x in m) >= 2) if isinstance(m, P.Edge)]
        assert box.wait_for(lambda b: len(b.injected) >= 2, 5)
        c0 = box.injected[0][1] - first[0].t
        b = c0 + (1 << 32)  # tick 2^32; also a Timer1 overflow.  Edges on and next to overflows around it:
        targets = [b - 2 * 65_536 - 1, b - 65_536, b, b + 65_536 + 1, b + 2 * 65_536, b + 3_000_000]
        for i, t in enumerate(targets):
            box.inject(t, (i + 1) % 2)
        assert box.now()[0] < targets[0] - 16_000_000, "simulation ran past 2^32 ticks before the edges were set"
        box.pace(False)
        edges = [m for m in collect(c, lambda m: sum(isinstance(x, P.Edge) for x in m) >= len(targets), timeout=30)
                 if isinstance(m, P.Edge)]
        assert box.wait_for(lambda b: len(b.injected) >= 2 + len(targets), 5)
        c.close()
    applied = [inj[1] for inj in box.injected[2:]]
    assert [e.t + c0 for e in edges] == applied
    assert edges[1].t < 1 << 32 <= edges[2].t


def test_watchdog_armed_at_250_ms(elf):
    with harness.SimBox(elf, realtime=True) as box:
        c = SyncBoxClient(box.port, timeout=5.0)
        c.hello()
        wdtcsr = box.peek(0x60)
        c.close()
    assert wdtcsr & 0x08  # WDE: a hang resets the chip
    assert (wdtcsr & 0x27) == 0x04  # WDP2 only: 250 ms


def test_prescaler_8_build_pulses_exact(tmp_path):
    """0.5 us ticks (T1_PRESCALER=8): same exactness, in units of 8 cycles."""
    elf = harness.build({"T1_PRESCALER": "8"}, build_dir=tmp_path / "p8")
    with harness.SimBox(elf, realtime=True) as box:
        c = SyncBoxClient(box.port, timeout=5.0)
        v = c.hello()
        assert v.prescaler == 8 and v.ticks_per_s == TPS // 8
        lim = P.limits(v.f_cpu, v.prescaler, v.baud)
        assert (lim.min_gap, lim.min_period) == (128, 920)  # the same 64 us and 460 us in 0.5 us ticks
        for width, code in ((127, 10), (128, None)):
            got = None
            try:
                c.request(P.set_config, P.MODE_PULSE, 2000, width, 0)
            except SyncBoxRefused as exc:
                got = exc.error.code
            assert got == code
        c.request(P.set_config, P.MODE_PULSE, 2000, 200, 0)  # 1 ms period, 100 us wide
        c.request(P.simple, P.CMD_START)
        pulses = [m for m in collect(c, lambda m: sum(isinstance(x, P.Pulse) for x in m) >= 10) if isinstance(m, P.Pulse)]
        c.close()
    rises = sorted(e[2] for e in box.out_edges if e[1] == 1)
    falls = sorted(e[2] for e in box.out_edges if e[1] == 0 and e[2] > rises[0])
    offs = {r - 8 * pulses[0].t for r in rises}
    c0 = min(o for o in offs if all(8 * p.t + o in set(rises) for p in pulses))
    assert [8 * p.t + c0 for p in pulses] == rises[: len(pulses)]
    assert {f - r for r, f in zip(rises[:9], falls[:9], strict=True)} == {1600}


# ---------------------------------------------------------------- SET limits (PROTOCOL.md, "SET limits")
def test_set_refuses_exactly_what_the_box_cannot_meet(elf):
    """At each limit SET is accepted, one tick past it refused with ERROR 10 naming the limit; the host's
    check (drivers/syncbox/protocol.py) agrees with the box on settings around every limit."""
    import random

    with harness.SimBox(elf, realtime=False) as box:
        c = SyncBoxClient(box.port, timeout=5.0)
        v = c.hello()
        lim = P.limits(v.f_cpu, v.prescaler, v.baud)
        g, mp = lim.min_gap, lim.min_period
        assert (g, mp) == (1024, 7360)  # 64 us between edges, 460 us per code at 1 Mbaud

        def device(mode, period, width, bit):
            try:
                c.request(P.set_config, mode, period, width, bit)
                return None
            except SyncBoxRefused as exc:
                return exc.error.code, exc.error.detail

        at_limit = [(P.MODE_PULSE, mp, g, 0), (P.MODE_PULSE, mp, mp - g, 0),
                    (P.MODE_BARCODE, 45 * g, 0, g), (P.MODE_HARP, 0, 0, 0)]
        for s in at_limit:
            assert device(*s) is None, s
        outside = {(P.MODE_PULSE, mp, g - 1, 0): (10, P.LIM_WIDTH),
                   (P.MODE_PULSE, mp, mp - g + 1, 0): (10, P.LIM_GAP),
                   (P.MODE_PULSE, mp - 1, g, 0): (10, P.LIM_PERIOD),
                   (P.MODE_PULSE, 4000, 640, 0): (10, P.LIM_WIDTH),  # the settings that used to run late
                   (P.MODE_PULSE, 1280, 1024, 0): (10, P.LIM_GAP),
                   (P.MODE_BARCODE, 45 * g, 0, g - 1): (10, P.LIM_BIT),
                   (P.MODE_BARCODE, 45 * g - 1, 0, g): (7, P.LIM_PERIOD),
                   (P.MODE_PULSE, 1 << 31, g, 0): (7, P.LIM_PERIOD),
                   (3, mp, g, g): (7, P.LIM_MODE)}
        for s, want in outside.items():
            assert device(*s) == want == P.check_config(*s, lim), s
        rng = random.Random(7)
        for _ in range(40):  # around the limits: the host predicts every answer
            mode = rng.choice((P.MODE_PULSE, P.MODE_BARCODE))
            period = rng.choice((mp, 45 * g, rng.randint(mp - 3, 50 * g))) + rng.randint(-2, 2)
            width = rng.choice((g, period - g, rng.randint(0, period))) + rng.randint(-2, 2)
            bit = rng.choice((g, period // 45)) + rng.randint(-2, 2)
            assert device(mode, period, width, bit) == P.check_config(mode, period, width, bit, lim)
        with pytest.raises(SyncBoxRefused, match=r"too fast for the sync box \(pulse width\)"):
            c.request(P.set_config, P.MODE_PULSE, 16_000, 640, 0)
        with pytest.raises(SyncBoxSettingsError, match=r"pulse width 40 us \(640 ticks\) is below .* 64 us"):
            c.configure("pulse", 0.001, 0.00004, 0.0)
        c.close()


@pytest.mark.parametrize("mode,period,width,bit", [
    (P.MODE_PULSE, 7360, 1024, 0),  # shortest period, shortest pulse
    (P.MODE_PULSE, 7360, 7360 - 1024, 0),  # shortest period, shortest gap between pulses
    (P.MODE_BARCODE, 45 * 1024, 0, 1024),  # shortest bit and barcode period
], ids=["pulse-width", "pulse-gap", "barcode"])
def test_output_at_the_limits_every_edge_on_its_tick_under_load(elf, mode, period, width, bit):
    """Input edges timed to keep the capture handler busy when output edges are due (some in pairs) and ping
    traffic: every edge of every code exactly on its tick, every code reported once, nothing late or dropped."""
    run = timing.run_output(mode, period, width, bit, sim_s=0.2, elf=elf)
    s = run.summary()
    assert run.ok, (s, run.off_tick[:5])
    assert run.codes >= 0.15 * 16e6 / period and run.inputs > 0.2 * run.edges / 4
    assert run.tx_dropped == run.ev_dropped == run.lost_frames == 0


def test_stop_and_start_continue_the_pulse_index(elf):
    """STOP between pulses, STOP during a pulse (cut short: it keeps its index), STOP twice, START twice, STOP
    before the first pulse of a START: the pulses on the pin carry indices 0, 1, 2 ... once each, no gap."""
    period, width = 160_000, 80_000  # 10 ms, 5 ms wide
    with harness.SimBox(elf, realtime=False) as box:
        c = SyncBoxClient(box.port, timeout=5.0)
        c.hello()
        c.request(P.set_config, P.MODE_PULSE, period, width, 0)
        c.request(P.simple, P.CMD_RESET)
        msgs = []
        c.on_message = lambda m, _ns: msgs.append(m)
        box.hold(1)  # from here on the fast simulation only runs as far as the host lets it
        assert box.wait_for(lambda b: False, 0.05) is False
        held = box.now()[0]

        def at(cycle, *cmds):
            """Hold the (fast) simulation at ``cycle``, send the commands (taken within ~0.1 ms), let it run
            30 ms more while the ACKs come back."""
            box.hold(cycle)
            box.wait_cycle(cycle)
            seqs = [c._next_seq() for _ in cmds]
            c.ser.write(b"".join(b"\x00" + P.simple(s, cmd) for s, cmd in zip(seqs, cmds, strict=True)))
            time.sleep(0.01)  # the harness takes the bytes before it runs on
            box.hold(cycle + 480_000)  # 30 ms more
            n = len(pulses())
            acks = collect(c, lambda m: {a.req_seq for a in m if isinstance(a, P.Ack)} >= set(seqs)
                           and (cmds[-1] != P.CMD_START or any(isinstance(x, P.Pulse) for x in m)))
            msgs.extend(acks)
            assert len(pulses()) > n or cmds[-1] != P.CMD_START  # the new train's grid is known
            return cycle + 480_000

        def pulses():
            return [m for m in msgs if isinstance(m, P.Pulse)]

        end = at(held + 160_000, P.CMD_START)
        c0 = c0_from(pulses()[:2], box)

        def next_rise(after):  # the next rising edge of the current train after cycle ``after``
            last = c0 + pulses()[-1].t
            return last + -(-(after - last) // period) * period

        rise = next_rise(end)
        end = at(rise + width + 16_000, P.CMD_STOP)  # between pulses
        end = at(end, P.CMD_START)
        rise = next_rise(end)
        end = at(rise + 16_000, P.CMD_STOP)  # 1 ms into a pulse: cut short
        end = at(end, P.CMD_START)
        rise = next_rise(end)
        end = at(rise + width + 16_000, P.CMD_STOP, P.CMD_STOP)
        end = at(end, P.CMD_START, P.CMD_START)  # the second restarts within the first's 1 ms lead
        # START during a pulse restarts (cutting it short), STOP before the new train's first pulse
        end = at(next_rise(end) + 1_000, P.CMD_START, P.CMD_STOP)
        end = at(end, P.CMD_START)
        end = at(next_rise(end) + width + 16_000, P.CMD_STOP)
        box.hold(0)
        c.close()
    got = pulses()
    assert [p.index for p in got] == list(range(len(got))) and len(got) >= 12
    edges = sorted((e[2], e[1]) for e in box.out_edges)
    rises = [x for x, lv in edges if lv == 1]
    assert rises == [c0 + p.t for p in got]  # each pulse on the pin is reported once, with its own index
    falls = [x for x, lv in edges if lv == 0 and x > rises[0]]  # (the log starts with the pin's level at boot)
    widths = [f - r for r, f in zip(rises, falls, strict=True)]
    cut = [w for w in widths if w != width]
    assert len(cut) == 2 and 16_000 <= cut[0] < 24_000 and cut[1] < 16_000, widths  # STOP, START: ended early


def test_reset_while_running_restarts_the_index_at_the_next_start(elf):
    with harness.SimBox(elf, realtime=True) as box:
        c = start_pulses(box, period=16_000, width=1_600)
        assert collect(c, lambda m: sum(isinstance(x, P.Pulse) for x in m) >= 3)
        c.request(P.simple, P.CMD_RESET)  # the running train keeps counting ...
        c.request(P.simple, P.CMD_STOP)
        c.request(P.simple, P.CMD_START)  # ... the next START begins at 0
        msgs = []
        c.on_message = lambda m, _ns: msgs.append(m)
        msgs += collect(c, lambda m: sum(isinstance(x, P.Pulse) for x in m) >= 3)
        c.close()
    after = [m.index for m in msgs if isinstance(m, P.Pulse)]
    assert after[-3:] == [after[-3], after[-3] + 1, after[-3] + 2] and 0 in after
    assert after[after.index(0):][:3] == [0, 1, 2]


def test_input_flood_is_counted_and_never_starves_the_watchdog(elf):
    """16 kHz of input edges for 0.4 s, longer than the 250 ms watchdog (the link carries about 4 kHz of EDGE
    frames): the box keeps running (firmware 1.0 was reset), and every edge is sent, or counted as an event or
    frame dropped."""
    with harness.SimBox(elf, realtime=True) as box:
        c = SyncBoxClient(box.port, timeout=5.0)
        c.hello()
        now, _ = box.now()
        n = 6400
        for i in range(n):
            box.inject(now + 1_600_000 + 1000 * i, (i + 1) % 2)
        msgs = collect(c, lambda m: False, timeout=0.5)
        box.wait_cycle(now + 1_600_000 + 1000 * n + 160_000)
        msgs += collect(c, lambda m: False, timeout=0.2)
        st = c.status()
        c.close()
    assert not any(isinstance(m, P.Status) and m.req_seq == P.SEQ_NONE for m in msgs)  # no reboot
    assert st.reset_cause == 1 and st.edges + st.lost_edges == n
    sent = sum(isinstance(m, P.Edge) for m in msgs)
    assert sent + st.ev_dropped + st.tx_dropped == st.edges and st.ev_dropped + st.tx_dropped > 0
