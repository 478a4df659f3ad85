"""Harp: the real clock-synchronization signal (100 kbaud, last byte 672 us before the second it announces) from
line edges, and Harp binary device messages as a stream in Harp time.  Signals and messages are synthesized
exactly as harp-tech/protocol's SynchronizationClock.md and BinaryProtocol-8bit.md specify."""

import numpy as np
import pytest

from synchub.agent.clock.barcode import HarpDecoder, encode_harp
from synchub.agent.clock.harp_clock import (
    CLOCK_OFFSET_NS,
    HarpClockDecoder,
    encode_harp_clock,
    harp_clock_bytes,
)
from synchub.agent.clock.layer import StreamClocks
from synchub.agent.clock.settings import ClockLayerConfig, StreamClockOptions
from synchub.agent.core.evidence import TriggerEdge
from synchub.agent.core.options import TriggerSettings
from synchub.agent.core.stream import StreamInfo
from synchub.drivers.serial.harp import (
    EVENT,
    READ,
    HarpMessageDecoder,
    HarpSettings,
    encode_harp_message,
    harp_time_ns,
)
from synchub.drivers.serial.records import BadItem, Note, Record

NS = 1_000_000_000


def test_the_packet_encodes_the_previous_second_and_its_last_byte_starts_672_us_before_the_next():
    assert harp_clock_bytes(0x01020305) == bytes([0xAA, 0xAF, 0x04, 0x03, 0x02, 0x01])
    edges = encode_harp_clock(7, 7 * NS)
    starts = [t for t, lvl in edges if lvl == 0]
    assert max(starts) == 7 * NS - CLOCK_OFFSET_NS  # the sixth byte's start bit (its value 0x00: one long low)
    assert min(t for t, _ in edges) == 6 * NS + 500_000
    assert all((t - (7 * NS - CLOCK_OFFSET_NS)) % 10_000 == 0 for t, _ in edges if t > 7 * NS - CLOCK_OFFSET_NS)


@pytest.mark.parametrize("ppm,jitter_ns", [(0.0, 0), (80.0, 1500)])
def test_the_harp_clock_decodes_to_its_seconds_on_the_clock_that_stamped_the_edges(ppm, jitter_ns):
    rng = np.random.default_rng(1)
    truth, edges = [], []
    for s in range(1_700_000_000, 1_700_000_020):
        at = int((s - 1_700_000_000) * NS * (1 + ppm * 1e-6)) + 5 * NS + 777
        truth.append((at, s))
        edges += [(t + int(rng.integers(-jitter_ns, jitter_ns + 1)), lvl) for t, lvl in encode_harp_clock(s, at)]
    dec = HarpClockDecoder()
    got = []
    for k in range(0, len(edges), 13):  # any split of the edge stream
        got += dec.feed(edges[k:k + 13])
    got += dec.feed([], now_ns=edges[-1][0] + NS)
    assert [v for _, v in got] == [s for _, s in truth]
    err = np.array([t for t, _ in got]) - np.array([t for t, _ in truth])
    assert np.abs(err).max() <= jitter_ns + 1 and dec.malformed == 0


def test_broken_bytes_and_packets_are_counted_and_the_next_second_decodes():
    good = encode_harp_clock(100, 100 * NS)
    bad_stop = [(t, lvl) for t, lvl in encode_harp_clock(101, 101 * NS)]
    last_start = max(t for t, lvl in bad_stop if lvl == 0)
    bad_stop = [(t, lvl) for t, lvl in bad_stop if t < last_start] + [(last_start, 0), (last_start + 100_000, 1)]
    missing = [(t, lvl) for t, lvl in encode_harp_clock(102, 102 * NS) if t < 102 * NS - 2 * NS // 1000]
    glitch = encode_harp_clock(103, 103 * NS)
    t2, lvl2 = glitch[2]
    glitch = glitch[:3] + [(t2 + 5_000, 1 - lvl2), (t2 + 6_000, lvl2)] + glitch[3:]  # a 1 us spike mid-bit
    after = encode_harp_clock(104, 104 * NS) + encode_harp_clock(105, 105 * NS)
    dec = HarpClockDecoder()
    got = dec.feed(good + bad_stop + missing + glitch + after, now_ns=106 * NS)
    assert [v for _, v in got] == [100, 104, 105]
    assert dec.malformed >= 3 and {"bad_stop_bit", "off_grid"} <= set(dec.reasons), dec.reasons


def test_synchub_s_own_1_kbaud_harp_style_code_still_decodes():
    dec = HarpDecoder()
    assert dec.feed(encode_harp(42, 3 * NS), now_ns=4 * NS) == [(3 * NS, 42)]


def _settings(**kw):
    return HarpSettings(register=44, channels=("a", "b", "c"), **kw)


def test_harp_messages_become_records_in_harp_time_and_bad_bytes_are_counted():
    s = _settings()
    ev = [encode_harp_message(EVENT, 44, 0x82, (k, -k, 2 * k), seconds=1000 + k, micros32=k * 1000)
          for k in range(4)]
    corrupt = bytearray(ev[2])
    corrupt[-1] ^= 0xFF  # bad checksum
    other = encode_harp_message(EVENT, 33, 0x01, (1,), seconds=5)
    untimed = encode_harp_message(EVENT, 44, 0x82, (1, 2, 3))
    reply = encode_harp_message(READ, 44, 0x82, (1, 2, 3), seconds=9)
    data = b"\x00\xffjunk" + ev[0] + other + ev[1] + bytes(corrupt) + untimed + reply + ev[3]
    dec = HarpMessageDecoder(s)
    items = [it for k in range(0, len(data), 7) for it in dec.feed(data[k:k + 7])]
    recs = [i for i in items if isinstance(i, Record)]
    assert [r.fields["harp_time"] for r in recs] == [harp_time_ns(1000 + k, k * 1000) for k in (0, 1, 3)]
    assert [(r.fields["a"], r.fields["b"], r.fields["c"]) for r in recs] == [(0, 0, 0), (1, -1, 2), (3, -3, 6)]
    assert harp_time_ns(1001, 1000) == 1001 * NS + 32_000_000
    notes = sorted(n.reason for n in items if isinstance(n, Note))
    assert notes == ["no timestamp", "other register", "other register"]  # read replies are not recorded
    assert sum(b.nbytes for b in items if isinstance(b, BadItem)) >= len(corrupt) + 6


def test_extended_length_float_payloads_and_a_wrong_element_count():
    s = HarpSettings(register=7, channels=tuple(f"v{k}" for k in range(70)))
    msg = encode_harp_message(EVENT, 7, 0x44, [k / 4 for k in range(70)], seconds=3, micros32=5)
    assert msg[1] == 255  # 70 floats: the extended length
    items = HarpMessageDecoder(s).feed(msg)
    assert items[0].fields["v69"] == 69 / 4 and items[0].fields["harp_time"] == 3 * NS + 160_000
    short = HarpMessageDecoder(_settings()).feed(encode_harp_message(EVENT, 44, 0x82, (1, 2), seconds=1))
    assert isinstance(short[0], BadItem) and short[0].reason == "expected 3 values, got 2" and short[0].lost == 1


def test_a_harp_device_stream_is_pinned_to_the_reference_clock_by_the_harp_clock_line():
    """The host reads the Harp clock on a GPIO line (kernel stamps, 2 us jitter); the Harp device's messages carry
    Harp time: its clock model maps Harp time to the reference clock from the decoded seconds alone."""
    info = StreamInfo("harp0", "other", 0.0, 3, quality=(("device_clock", "harp"),))
    line = TriggerSettings(name="hclk", backend="gpiod", edge="both", role="harp-clock", period_s=1.0)
    clocks = StreamClocks({"harp0": info}, ClockLayerConfig(triggers=(line,),
                                                            streams={"harp0": StreamClockOptions(trigger="hclk")}))
    rng = np.random.default_rng(2)
    mono0 = 8_000 * NS + 4321
    for k in range(20):
        for t, lvl in encode_harp_clock(500 + k, mono0 + int(k * NS * (1 + 30e-6))):
            clocks.feed(TriggerEdge("hclk", t + int(rng.integers(-1500, 1501)), "ref", 1 if lvl else -1))
    ref, unc, _ = clocks.clocks["harp0"].model.map(np.array([510 * NS + NS // 2]))
    assert abs(int(ref[0]) - (mono0 + int(10.5 * NS * (1 + 30e-6)))) < 5_000 and unc[0] < 10_000
