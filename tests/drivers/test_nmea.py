"""NMEA 0183 through pynmea2: recorded sentences, bad checksums, epochs, dates, and the GPS PPS line pinning NMEA
times to UTC in the clock layer."""

import numpy as np
from support.paths import DATA

from synchub.agent.clock.layer import StreamClocks
from synchub.agent.clock.settings import ClockLayerConfig, StreamClockOptions
from synchub.agent.core.evidence import TriggerEdge
from synchub.agent.core.options import TriggerSettings
from synchub.agent.core.stream import StreamInfo
from synchub.drivers.serial.nmea import NmeaDecoder
from synchub.drivers.serial.records import BadItem, DeviceEdge, Lost, Note, Record

NS = 1_000_000_000
RECORDED = DATA / "nmea" / "noaa-sally-ride-2019.nmea"  # source: data/nmea/README.md
T0 = 1568663999 * NS  # 2019-09-16 19:59:59 UTC, the recording's first epoch


def _records(items):
    return [i for i in items if isinstance(i, Record)]


def test_a_recorded_ship_gps_gives_one_sample_per_epoch_at_its_utc_time_of_fix():
    data = RECORDED.read_bytes()
    for step in (len(data), 1, 17):
        dec = NmeaDecoder(rate_hz=1.0)
        items = [it for k in range(0, len(data), step) for it in dec.feed(data[k:k + step], 7)] + dec.flush()
        recs = _records(items)
        assert [r.fields["utc"] for r in recs] == [T0, T0 + NS, T0 + 2 * NS]
        first = recs[0].fields
        assert abs(first["lat"] - (18 + 13.38282955 / 60)) < 1e-9 and abs(first["lon"] - (126 + 6.12767097 / 60)) < 1e-9
        assert first["alt"] == 17.2 and first["fix_quality"] == 2 and first["satellites"] == 7 and first["hdop"] == 1.4
        assert abs(first["speed"] - 1.31 * 1852 / 3600) < 1e-12 and first["course"] == 262.13
        assert [i.t for i in items if isinstance(i, DeviceEdge)] == [T0, T0 + NS, T0 + 2 * NS]
        ignored = sorted(n.detail.split()[0] for n in items if isinstance(n, Note))
        assert ignored == ["GLL", "GSA", "GST", "GSV", "HDT", "VTG"]  # counted once per type, not malformed
        assert not [i for i in items if isinstance(i, (BadItem, Lost))]


def test_bad_checksums_are_counted_and_the_epoch_survives_on_its_other_sentences():
    lines = RECORDED.read_text().splitlines()
    bad = [ln[:-2] + ("00" if not ln.endswith("00") else "11") if "GGA" in ln else ln for ln in lines]
    bad[4] = bad[4].split("*")[0]  # ZDA without its checksum
    dec = NmeaDecoder(rate_hz=1.0)
    items = dec.feed(("\r\n".join(bad) + "\r\n").encode()) + dec.flush()
    errors = [i for i in items if isinstance(i, BadItem)]
    assert [e.reason for e in errors] == ["checksum"] * 4 and dec.bad == 4
    recs = _records(items)
    assert len(recs) == 3 and all("alt" not in r.fields for r in recs)  # GGA's fields are gone, RMC's are there
    assert all("lat" in r.fields and "speed" in r.fields for r in recs)


def test_missing_epochs_are_lost_samples_with_their_cause():
    lines = RECORDED.read_text().splitlines()
    keep = [ln for ln in lines if "195959" in ln or "200001" in ln]  # the 20:00:00 epoch never arrived
    dec = NmeaDecoder(rate_hz=1.0)
    items = dec.feed(("\n".join(keep) + "\n").encode()) + dec.flush()
    assert [(i.count, i.cause) for i in items if isinstance(i, Lost)] == [(1, "device_drop")]


def _gga(hhmmss: str, qual: int = 1) -> bytes:
    from synchub.drivers.serial.lines import nmea_checksum

    body = f"GPGGA,{hhmmss},4807.038,N,01131.000,E,{qual},08,0.9,545.4,M,46.9,M,,"
    return f"${body}*{nmea_checksum(body):02X}\r\n".encode()


def test_a_gga_only_receiver_takes_the_date_from_the_host_and_follows_midnight():
    hint = 1700000000 * NS  # 2023-11-14 22:13:20 UTC
    dec = NmeaDecoder(rate_hz=1.0, utc_hint=lambda: hint)
    items = dec.feed(_gga("235958") + _gga("235959") + _gga("000000") + _gga("000001", qual=0)) + dec.flush()
    day = hint - hint % (86400 * NS)
    assert [r.fields["utc"] for r in _records(items)] == [day + (86400 + k) * NS for k in (-2, -1, 0, 1)]
    # no fix (quality 0): the receiver's time is not trusted to announce a PPS second
    assert [i.t for i in items if isinstance(i, DeviceEdge)] == [day + (86400 + k) * NS for k in (-2, -1, 0)]


def test_without_any_date_an_epoch_is_a_counted_loss_not_a_guess():
    dec = NmeaDecoder(rate_hz=1.0)
    items = dec.feed(_gga("120000") + _gga("120001"))
    assert [(i.count, i.cause) for i in items if isinstance(i, Lost)] == [(1, "malformed")] * 2
    assert not _records(items)


def test_the_pps_edge_pairs_with_the_second_the_sentences_announce_for_the_stream_and_for_utc():
    """A GPS whose sentences come 180-420 ms after each PPS edge, on a host whose system clock is 3.7 s off (no
    coarse UTC): the GPS stream maps to the reference clock to the edges' microseconds, and UTC is numbered."""
    gps = StreamInfo("gps0", "telemetry", 1.0, 2, quality=(("device_clock", "utc"),))
    line = TriggerSettings(name="pps0", backend="gpiod", edge="rising", role="pps", period_s=1.0, min_width_us=50.0)
    clocks = StreamClocks({"gps0": gps}, ClockLayerConfig(triggers=(line,),
                                                          streams={"gps0": StreamClockOptions(trigger="pps0")}))
    rng = np.random.default_rng(3)
    mono0 = 5_000 * NS + 123_456_789
    utc0 = 1_700_000_000 * NS
    for k in range(30):
        pps = mono0 + k * NS + int(rng.normal(0, 1_000))
        clocks.feed(TriggerEdge("pps0", pps, "ref", 1, width_ns=100_000))
        host = pps + int(rng.uniform(0.18, 0.42) * NS)
        clocks.feed(TriggerEdge("gps0", utc0 + k * NS, "device", 1, host_ns=host))
        clocks.feed_arrivals("gps0", np.array([utc0 + k * NS]), np.array([host]))
    st = clocks.state()["gps0"]
    assert st["matcher"]["matched"] >= 28
    ref, unc, _ = clocks.clocks["gps0"].model.map(np.array([utc0 + 10 * NS]))
    assert abs(int(ref[0]) - (mono0 + 10 * NS)) < 5_000  # the PPS edge, not the sentence's arrival
    utc, _ = clocks.to_utc(np.array([mono0 + 20 * NS + 250_000_000]))
    assert abs(int(utc[0]) - (utc0 + 20 * NS + 250_000_000)) < 5_000
    assert clocks.utc_state()["source"] == "pps+nmea"
