"""The generic serial formats as pure classes: CSV, regex, key=value lines and config-described binary frames,
turned into samples, gaps and problems by ``RecordStream``."""

import struct

import numpy as np
import pytest

from synchub.agent.config.loader import parse_config
from synchub.agent.core.options import StreamCommon
from synchub.agent.core.settings import ConfigError
from synchub.drivers.serial.binframes import CRC_NAMES, Checksum, FrameDecoder, FrameSettings, encode_frame
from synchub.drivers.serial.records import (
    NO_DEVICE_TIME,
    BadItem,
    Record,
    RecordStream,
    stream_info,
    time_to_ns,
)
from synchub.drivers.serial.textrecords import (
    CsvDecoder,
    CsvSettings,
    KeyValueDecoder,
    KeyValueSettings,
    RegexDecoder,
    RegexSettings,
)


class Sink:
    def __init__(self):
        self.chunks, self.gaps, self.problems, self.items, self.resets = [], [], [], [], []

    def samples(self, stream, data, device_ns, host_ns):
        self.chunks.append((data, np.asarray(device_ns), np.asarray(host_ns)))

    def gap(self, stream, count, cause, device_ns_from=0, device_ns_to=0, detail=""):
        self.gaps.append((count, cause, detail))

    def reset(self, stream, device_ns, previous_ns=0, detail=""):
        self.resets.append((device_ns, previous_ns, detail))

    def evidence(self, item):
        self.items.append(item)

    def problem(self, stream, reason, detail=""):
        self.problems.append((reason, detail))

    def values(self):
        return np.concatenate([np.asarray(c[0], dtype=float) for c in self.chunks]) if self.chunks else np.zeros((0,))

    def device(self):
        return np.concatenate([c[1] for c in self.chunks]) if self.chunks else np.zeros(0, np.int64)

    def texts(self):
        return [t for c in self.chunks for t in c[0]]


def run(decoder, settings, data: bytes, step: int = 0, host0: int = 10**12):
    """Feed ``data`` in pieces of ``step`` bytes (0: at once), each read 1 ms after the previous."""
    sink = Sink()
    rs = RecordStream("s", settings, settings.channel_names(), np.float64)
    pieces = [data] if not step else [data[i:i + step] for i in range(0, len(data), step)]
    for k, piece in enumerate(pieces):
        rs.handle(decoder.feed(piece), host0 + k * 1_000_000, sink)
    return sink, rs


CSV = b"t_ms,ax,ay\r\n100,0.5,-1\r\n110,0.6,-1.5\n120,0.7,-2\r130,0.8,-2.5\n"


@pytest.mark.parametrize("step", [0, 1, 3, 7])
def test_csv_with_a_header_line_gives_the_same_samples_in_any_split(step):
    s = CsvSettings(time="t_ms", time_unit="ms", channels=("ax", "ay"))
    sink, rs = run(CsvDecoder(s), s, CSV, step)
    assert sink.values().tolist() == [[0.5, -1], [0.6, -1.5], [0.7, -2], [0.8, -2.5]]
    assert sink.device().tolist() == [100_000_000, 110_000_000, 120_000_000, 130_000_000]
    assert ("header", "t_ms,ax,ay") in sink.problems and not sink.gaps and rs.stats.malformed == 0


def test_malformed_csv_lines_are_counted_gaps_and_never_stop_the_stream():
    s = CsvSettings(columns=("t", "x", "y"), time="t", time_unit="us")
    data = (b"1000,1,2\n" b"1010,1,\xff\xfe\n" b"1020,oops,2\n" b"1030,1,2,3\n" b"\x00\x01garbage\n"
            b"1040,\"4\",5\n" + b"9" * 2000 + b"\n" b"1050,6,7\n")
    sink, rs = run(CsvDecoder(s), s, data, 5)
    assert sink.values().tolist() == [[1, 2], [4, 5], [6, 7]]
    assert [g[:2] for g in sink.gaps] == [(1, "malformed")] * 5
    reasons = " ".join(p[1] for p in sink.problems)
    assert "not text" in reasons and "not a number" in reasons and "expected 3 fields, got 4" in reasons
    assert "control characters" in reasons and "line too long" in reasons
    assert rs.stats.malformed == 5 and rs.stats.dropped == 5


def test_csv_data_before_the_header_is_counted_and_a_new_header_is_followed():
    s = CsvSettings(time="ms", channels=("b",))
    sink, rs = run(CsvDecoder(s), s, b"5,6,7\nms,a,b\n1,2,3\nb,ms,a\n4,5,6\n")
    assert sink.values().tolist() == [[3], [4]]  # the second header put b first
    assert sink.device().tolist() == [1_000_000, 5_000_000]
    assert sink.gaps[0][:2] == (1, "malformed") and "no header yet" in sink.gaps[0][2]
    assert [p[0] for p in sink.problems if p[0].startswith("header")] == ["header", "header changed"]


def test_a_32_bit_millis_counter_wraps_through_the_one_unwrapper_and_a_reset_is_reported_as_a_reset():
    s = CsvSettings(columns=("ms", "v"), time="ms", time_unit="ms", time_bits=32)
    top = 2**32 - 10
    lines = [f"{(top + 10 * k) % 2**32},{k}\n".encode() for k in range(4)] + [b"1500,9\n"]
    sink, _ = run(CsvDecoder(s), s, b"".join(lines), step=len(lines[0]))
    dev = sink.device()
    assert np.diff(dev[:4]).tolist() == [10_000_000] * 3  # across the wrap
    # 1.5 s on (a bootloader's) 1 ms of host time after 20 ms: a restart
    assert sink.gaps == [] and len(sink.resets) == 1
    assert sink.resets[0][:2] == (1_500_000_000, int(dev[3]))
    assert dev[4] == 1_500_000_000


@pytest.mark.parametrize("unit", ["ms", "s"])
def test_a_line_printed_late_keeps_its_time_and_is_no_reset(unit):
    """An event logged from another handler comes after a later one: the driver keeps its time and reports no
    reset; the clock layer tells a late line from a clock that went back (``timeline.RESET_CONFIRM``)."""
    s = CsvSettings(columns=("t", "v"), time="t", time_unit=unit)
    times = [7_000_000 + 40 * k for k in range(8)]
    times[3], times[4] = times[4], times[3] - 300  # line 3 printed after line 4, 300 ms late
    text = [str(t) if unit == "ms" else f"{t // 1000}.{t % 1000:03d}" for t in times]
    lines = [f"{t},{k}\n".encode() for k, t in enumerate(text)]
    sink, rs = run(CsvDecoder(s), s, b"".join(lines), step=len(lines[0]))
    assert sink.resets == [] and rs.unwrapper.behind == 1
    assert sink.device().tolist() == [t * 1_000_000 for t in times]


def test_a_sample_counter_skip_is_a_device_drop_gap_of_that_many_samples():
    s = CsvSettings(columns=("n", "v"), seq="n", seq_bits=8)
    sink, _ = run(CsvDecoder(s), s, b"254,1\n255,2\n0,3\n3,4\nbad\n5,6\n")
    assert sink.values().ravel().tolist() == [1, 2, 3, 4, 6]
    assert [g[:2] for g in sink.gaps] == [(2, "device_drop"), (1, "malformed")]


def test_without_a_time_column_samples_carry_the_host_receive_time_and_the_metadata_says_so():
    s = CsvSettings(columns=("a", "b"))
    sink, _ = run(CsvDecoder(s), s, b"1,2\n3,4\n", step=4)
    assert sink.device().tolist() == [c for chunk in sink.chunks for c in chunk[2]]
    info = stream_info(StreamCommon(name="x", type="other", driver="serial"), s, s.channel_names(), "csv")
    assert info.quality_dict()["device_time"] == NO_DEVICE_TIME and info.channel_labels == ("a", "b")


def test_a_text_column_makes_a_marker_stream():
    s = CsvSettings(columns=("us", "event"), time="us", time_unit="us", text="event")
    sink, _ = run(CsvDecoder(s), s, b'12,"trial start, block 1"\n15,stim\n')
    assert sink.texts() == ["trial start, block 1", "stim"] and sink.device().tolist() == [12_000, 15_000]
    common = StreamCommon(name="m", type="marker", driver="serial", channel_format="string")
    assert stream_info(common, s, (), "csv").channel_format == "string"
    with pytest.raises(ValueError, match="channel_format"):
        stream_info(StreamCommon(name="m", type="marker", driver="serial"), s, (), "csv")


def test_times_in_seconds_are_converted_exactly_not_through_a_float():
    assert time_to_ns("1700000000.123456789", "s") == 1_700_000_000_123_456_789
    assert time_to_ns("0.000001", "ms") == 1 and time_to_ns(7, "us") == 7_000
    assert time_to_ns("3", "ticks", 32768.0) == round(3e9 / 32768)
    for bad in ("", "x", "nan", "inf"):
        with pytest.raises(ValueError):
            time_to_ns(bad, "s")


def test_regex_with_named_groups_a_t_group_is_the_device_time():
    s = RegexSettings(pattern=r"T=(?P<t>\d+) temp=(?P<temp>-?[\d.]+)C rh=(?P<rh>[\d.]+)%", time_unit="ms")
    assert s.channel_names() == ("temp", "rh") and s.time == "t"
    sink, rs = run(RegexDecoder(s), s, b"T=5 temp=21.5C rh=40%\nT=6 temp=?C rh=1%\nhello\nT=7 temp=-1C rh=2%\n", 2)
    assert sink.values().tolist() == [[21.5, 40], [-1, 2]] and sink.device().tolist() == [5_000_000, 7_000_000]
    assert "no match" in " ".join(p[1] for p in sink.problems) and rs.stats.malformed == 2
    no_t = RegexSettings(pattern=r"(?P<v>\d+)")
    assert no_t.time == ""  # no device time: the host receive time
    with pytest.raises(ValueError, match="no named groups"):
        RegexSettings(pattern=r"\d+")
    with pytest.raises(ValueError, match="regular expression"):
        RegexSettings(pattern=r"(?P<v>\d+")


def test_key_value_lines_missing_keys_are_nan_and_unknown_keys_are_counted_once():
    s = KeyValueSettings(time="t", time_unit="us", channels=("ax", "ay"))
    data = b"t=1 ax=0.1 ay=0.2\nt:2, ax:0.3; ay:0.4 extra=9\nt=3 ax=0.5\nt=4 extra=1 ax=1 ay=2\nnonsense\n"
    sink, rs = run(KeyValueDecoder(s), s, data, 3)
    v = sink.values()
    assert v[:2].tolist() == [[0.1, 0.2], [0.3, 0.4]] and v[2, 0] == 0.5 and np.isnan(v[2, 1])
    assert sink.device().tolist() == [1000, 2000, 3000, 4000]
    reasons = [p[0] for p in sink.problems]
    assert reasons.count("unknown key") == 1 and reasons.count("missing key") == 1 and rs.stats.malformed == 1


# ---------------------------------------------------------------------------------------------- binary frames
def _frames_settings(**kw):
    base = dict(struct="<IHhhh", fields=("us", "n", "x", "y", "z"), time="us", time_unit="us", time_bits=32,
                seq="n", seq_bits=16, scale=(0.5, 0.5, 0.5))
    base.update(kw)
    return FrameSettings(**base)


@pytest.mark.parametrize("framing,sync,crc", [("cobs", "", "crc16-ibm-3740"), ("length", "A55A", "crc32"),
                                              ("length", "", "sum8"), ("cobs", "", "crc8-ccitt")])
def test_binary_frames_described_in_config_decode_in_any_split_and_resync_after_garbage(framing, sync, crc):
    s = _frames_settings(framing=framing, sync=sync, crc=crc)
    good = [encode_frame(s, ((2**32 - 20 + 10 * k) % 2**32, k, k, -k, 2 * k)) for k in range(6)]
    corrupt = bytearray(good[3])
    corrupt[len(corrupt) // 2] ^= 0x40
    data = good[0] + good[1] + b"\x13\x37\x00\xa5" + good[2] + bytes(corrupt) + good[4] + good[5]
    sink, rs = run(FrameDecoder(s), s, data, step=5)
    # COBS: junk after the last zero byte joins the next frame, which is lost with it
    kept = (0, 1, 4, 5) if framing == "cobs" else (0, 1, 2, 4, 5)
    assert sink.values().tolist() == [[k / 2, -k / 2, k] for k in kept]
    assert np.diff(sink.device()).tolist() == [10_000 * (b - a) for a, b in zip(kept[:-1], kept[1:], strict=True)]
    assert [g[:2] for g in sink.gaps] == [(6 - len(kept), "malformed")]  # the sample counter names the frames
    assert rs.stats.malformed >= 1


def test_the_crc_catalogue_is_the_crc_package_s_and_checks_its_check_values():
    check = b"123456789"
    assert Checksum("crc16-ibm-3740").value(check) == 0x29B1  # CRC-16/CCITT-FALSE
    assert Checksum("crc16-modbus").value(check) == 0x4B37
    assert Checksum("crc32").value(check) == 0xCBF43926
    assert Checksum("sum8").value(b"\x01\x02\xff") == 0x02 and Checksum("xor8").value(b"\x01\x03") == 0x02
    assert {"none", "crc8-ccitt", "crc64"} <= set(CRC_NAMES)


def test_frame_settings_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="unpacks 5 values but fields names 4"):
        _frames_settings(fields=("us", "n", "x", "y"))
    with pytest.raises(ValueError, match="time_bits"):
        _frames_settings(time_bits=0)
    with pytest.raises(ValueError, match="not a struct format"):
        _frames_settings(struct="<Q?k")
    with pytest.raises(ValueError, match="sync is for framing = 'length'"):
        _frames_settings(sync="AA")


def test_a_frame_record_holds_the_unpacked_values():
    s = _frames_settings(framing="length", sync="", crc="none", scale=())
    items = FrameDecoder(s).feed(encode_frame(s, (1, 2, 3, 4, 5)))
    assert items == [Record({"us": 1, "n": 2, "x": 3, "y": 4, "z": 5})]
    assert struct.calcsize(s.byte_struct) == 12
    assert FrameDecoder(s).feed(b"\x0c" + bytes(3))[0:0] == []  # incomplete: waits
    assert all(isinstance(i, BadItem) for i in FrameDecoder(s).feed(b"\x05" * 40))


# ---------------------------------------------------------------------------------------------- config
def _cfg(extra: str, fmt: str = "csv") -> dict:
    import tomllib

    return tomllib.loads(f"""
[[stream]]
name = "a"
type = "imu"
driver = "serial"
port = "/dev/null"
format = "{fmt}"
{extra}
""")


def test_format_tables_are_validated_with_did_you_mean_errors():
    cfg = parse_config(_cfg('[stream.csv]\ncolumns = ["ms", "x"]\ntime = "ms"'), "t.toml")
    assert cfg.streams[0].driver.csv.columns == ("ms", "x")
    with pytest.raises(ConfigError, match=r"t.toml: stream\[0\].csv.colums: unknown key \(did you mean 'columns'"):
        parse_config(_cfg('[stream.csv]\ncolums = ["ms", "x"]'), "t.toml")
    with pytest.raises(ConfigError, match=r"stream\[0\].csv.time_unit: 'sec' is not allowed \(did you mean 's'"):
        parse_config(_cfg('[stream.csv]\ncolumns = ["ms"]\ntime = "ms"\ntime_unit = "sec"'), "t.toml")
    with pytest.raises(ConfigError, match=r"only for format = 'regex'"):
        parse_config(_cfg('[stream.regex]\npattern = "(?P<v>.)"'), "t.toml")
    with pytest.raises(ConfigError, match=r"format 'regex' needs a \[stream.regex\] table"):
        parse_config(_cfg("", "regex"), "t.toml")
    with pytest.raises(ConfigError, match=r"'frame' is not allowed \(did you mean 'frames'"):
        parse_config(_cfg("", "frame"), "t.toml")
    with pytest.raises(ConfigError, match=r"stream\[0\].frames.crc: 'crc16-modbos' is not allowed \(did you mean "
                                          r"'crc16-modbus'"):
        parse_config(_cfg('[stream.frames]\nstruct = "<I"\nfields = ["v"]\ncrc = "crc16-modbos"', "frames"), "t.toml")
