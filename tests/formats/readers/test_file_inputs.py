"""CSV/TSV and audio inputs, the manifest: streams, exact times, streaming in bounded pieces, one-line errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from synchub.agent.align.files.report import input_warnings
from synchub.agent.formats.readers.audio_read import AudioInput, sample_times
from synchub.agent.formats.readers.base import InputError, InputOptions
from synchub.agent.formats.readers.manifest import load_manifest
from synchub.agent.formats.readers.opening import open_input
from synchub.agent.formats.readers.table_read import TableInput, seconds_to_ns

sf = pytest.importorskip("soundfile", reason="soundfile is in the bench extra")
NS = 1_000_000_000


def _pieces(inp):
    out = {}
    for p in inp.read():
        out.setdefault(p.stream, []).append(p)
    return out


def test_a_csv_with_channels_and_an_event_column_is_two_streams_with_exact_times(tmp_path):
    p = tmp_path / "rig.csv"
    p.write_text("# written by the rig\n\nTime;x;y;event\n1.000000001;1;2;start\n1.5;3;;\n"
                 "1700000000.123456789;5;6;stop\nnot a time;7;8;\n")
    t = TableInput(p)
    assert t.delimiter == ";" and [s.key for s in t.streams] == ["rig", "rig.event"]
    assert t.streams[0].info.channel_labels == ("x", "y") and t.streams[1].info.channel_format == "string"
    got = _pieces(t)
    num = got["rig"][0]
    assert num.device_ns.tolist() == [NS + 1, 1_500_000_000, 1_700_000_000_123_456_789]
    assert np.isnan(num.data[1, 1]) and num.data[2].tolist() == [5.0, 6.0]
    assert got["rig.event"][0].data == ["start", "stop"]
    assert t.stats == {"bad_time": 1}


def test_tsv_markers_only_is_one_stream_named_after_the_file(tmp_path):
    p = tmp_path / "events.tsv"
    p.write_text("timestamp\tlabel\n0.25\tcue\n2\tgo\n")
    t = open_input(p)
    assert [s.key for s in t.streams] == ["events"] and t.streams[0].info.type == "marker"


def test_a_long_table_is_read_in_bounded_batches(tmp_path):
    p = tmp_path / "long.csv"
    n = 20_000
    p.write_text("t,v\n" + "".join(f"{i / 1000:.3f},{i}\n" for i in range(n)))
    pieces = _pieces(TableInput(p))["long"]
    assert len(pieces) > 1 and max(x.n for x in pieces) <= 8192
    assert sum(x.n for x in pieces) == n and pieces[-1].seq + pieces[-1].n == n


@pytest.mark.parametrize("text,why", [
    ("a,b\n1,2\n", r"no time column: none is named time, timestamp, t, .*onset, with or without a unit \(time_ms; "
                   r"give it with --time-col, time_col in a manifest; columns: a, b\)"),
    ("1.5,tone\n2.5,tone\n", r"no column names: the first row is data \(1\.5, tone\); .*--time-col 0"),
    ("time,b\n", "no data rows after the header"),
    ("time\n1\n2\n", "no columns besides the time column"),
])
def test_bad_tables_are_one_line_errors(tmp_path, text, why):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(InputError, match=r"bad\.csv: " + why):
        open_input(p)


def test_time_column_by_name_and_seconds_parsing():
    assert seconds_to_ns("-0.5") == -500_000_000 and seconds_to_ns("1e-3") == 1_000_000
    assert seconds_to_ns(".25") == 250_000_000 and seconds_to_ns("x") is None and seconds_to_ns("") is None


def test_numbers_with_a_decimal_comma_read_as_numbers(tmp_path):
    """Excel's CSV in a German or French locale: ';' between the fields, ',' in the numbers.  Every row was skipped
    ("no time"), and a numeric column was read as text markers."""
    p = tmp_path / "protokoll.csv"
    p.write_bytes("\ufeffZeit;Ereignis;rt\r\n2,336505;Ton, links;0,41\r\n5,5;Ton;1\r\n-0,25;x;n/a\r\n".encode())
    t = TableInput(p, InputOptions(time_col="zeit"))
    got = _pieces(t)
    assert got["protokoll"][0].device_ns.tolist() == [2_336_505_000, 5_500_000_000, -250_000_000]
    assert got["protokoll"][0].data.ravel()[:2].tolist() == [0.41, 1.0]
    assert got["protokoll.Ereignis"][0].data == ["Ton, links", "Ton", "x"] and not t.stats
    dots = tmp_path / "dots.csv"  # a comma between the fields is never a decimal comma
    dots.write_text('time,event\n1.5,"2,5"\n')
    assert _pieces(TableInput(dots))["dots"][0].data == ["2,5"]


def test_a_table_without_column_names_reads_with_its_time_column_s_index(tmp_path):
    p = tmp_path / "serial.csv"
    p.write_text("1.5,tone,3\n2.25,tone,4\n")
    t = TableInput(p, InputOptions(time_col="0"))
    got = _pieces(t)
    assert [s.key for s in t.streams] == ["serial", "serial.c1"] and t.columns == ["c0", "c1", "c2"]
    assert got["serial.c1"][0].device_ns.tolist() == [1_500_000_000, 2_250_000_000]  # the first row is data


def test_a_time_column_s_unit_given_where_its_name_does_not_say_it(tmp_path):
    """An Arduino's millis() in a column named "time": read as seconds, 1000x too long; --time-unit ms."""
    p = tmp_path / "arduino.csv"
    p.write_text("time,event\n2336,tone\n5237.5,tone\n")
    assert _pieces(TableInput(p, InputOptions(time_unit="ms")))["arduino"][0].device_ns.tolist() == [
        2_336_000_000, 5_237_500_000]
    assert _pieces(TableInput(p))["arduino"][0].device_ns.tolist() == [2336 * NS, 5237_500_000_000]
    with pytest.raises(ValueError, match="unknown time_unit 'min'; allowed: s, ms, us, ns"):
        InputOptions(time_unit="min")


def test_time_col_option(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("clock,v\n1,2\n")
    assert TableInput(p, InputOptions(time_col="Clock")).time_index == 0
    with pytest.raises(InputError, match="no column 'zz'"):
        TableInput(p, InputOptions(time_col="zz"))


def _bwf(path, rate, frames, time_ref):
    """A Broadcast Wave file: a bext chunk with its TimeReference, then 16-bit PCM."""
    bext = bytearray(602)
    struct.pack_into("<II", bext, 338, time_ref & 0xFFFFFFFF, time_ref >> 32)
    data = (np.arange(frames) % 100).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"bext" + struct.pack("<I", len(bext)) + bytes(bext)
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_audio_time_is_the_sample_clock_from_zero_or_the_bwf_time_reference(tmp_path):
    w = tmp_path / "mic.wav"
    sf.write(w, np.zeros((100_000, 2), np.float32), 44100)
    a = AudioInput(w)
    pieces = _pieces(a)["mic"]
    assert a.streams[0].info.channel_count == 2 and len(pieces) == 2
    assert pieces[1].device_ns[0] == sample_times(65536, 1, 44100)[0] == (65536 * NS) // 44100
    b = tmp_path / "field.wav"
    _bwf(b, 48000, 1000, time_ref=48000 * 3600 * 10)  # recorded at 10:00:00
    assert _pieces(AudioInput(b))["field"][0].device_ns[0] == 36000 * NS
    f = tmp_path / "x.flac"
    sf.write(f, np.zeros(500, np.float32), 8000)
    assert _pieces(open_input(f))["x"][0].device_ns[-1] == 499 * NS // 8000


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_samples_clipped_at_full_scale_are_counted_and_a_loud_peak_is_not(tmp_path, subtype, caplog):
    rate = 8000
    t = np.arange(4 * rate) / rate
    tone = 0.9 * np.sin(2 * np.pi * 440 * t)  # up to 0.9 of full scale: not clipped
    loud = tone.copy()
    loud[rate : 2 * rate] *= 4  # a second of it 12 dB too hot: flat tops at full scale
    for name, x, clipped in (("ok", tone, False), ("hot", np.clip(loud, -1, 1), True)):
        w = tmp_path / f"{name}.wav"
        sf.write(w, x.astype(np.float32), rate, subtype=subtype)
        a = AudioInput(w)
        _pieces(a)
        n = a.stats.get("clipped", 0)
        assert (n > 0.05 * len(x)) if clipped else n == 0, (name, n)
    _pieces(a)  # read again (the file engine's second pass): told once, as it was found
    told = [r for r in caplog.records if "clipped at full scale" in r.getMessage()]
    assert len(told) == 1 and "hot.wav" in told[0].getMessage()
    warned = input_warnings("hot.wav", a.stats)
    assert len(warned) == 1 and "clipped at full scale" in warned[0] and "\n" not in warned[0]


@pytest.mark.parametrize("sync", ["1", "ch1", "rec:1"])
def test_a_ttl_at_full_scale_on_the_channel_named_as_sync_is_not_a_clipped_microphone(tmp_path, sync, caplog):
    rate = 8000
    t = np.arange(4 * rate) / rate
    ttl = np.where((t % 1.0) < 0.5, 1.0, 0.0)  # a recorder's TTL input: full scale half the time
    x = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), ttl], axis=1).astype(np.float32)
    w = tmp_path / "rec.wav"
    sf.write(w, x, rate, subtype="PCM_16")
    plain = AudioInput(w)
    _pieces(plain)
    assert plain.stats.get("clipped", 0) > rate  # not said which channel is sync: counted (its samples are flat)
    caplog.clear()
    named = AudioInput(w, InputOptions(sync=sync))
    _pieces(named)
    assert named.stats == {} and not [r for r in caplog.records if "clipped" in r.getMessage()]


def test_a_wav_of_zero_length_and_a_text_file_named_wav_are_one_line_errors(tmp_path):
    z = tmp_path / "zero.wav"
    sf.write(z, np.zeros(0, np.float32), 16000)
    with pytest.raises(InputError, match=r"zero\.wav: no audio samples \(0 frames\)"):
        open_input(z)
    t = tmp_path / "text.wav"
    t.write_text("hello")
    with pytest.raises(InputError, match=r"text\.wav: not a readable audio file"):
        open_input(t)


def test_an_unknown_extension_and_a_bad_format_option(tmp_path):
    p = tmp_path / "x.dat"
    p.write_bytes(b"\x00")
    with pytest.raises(InputError, match="unsupported file type"):
        open_input(p)
    with pytest.raises(ValueError, match="unknown format 'foo'"):
        InputOptions(format="foo")


def test_manifest(tmp_path):
    m = tmp_path / "in.toml"
    m.write_text('reference = "mic"\nout = "o.xdf"\n[[input]]\npath = "a.xdf"\n[[input]]\npath = "mic.wav"\n'
                 'sync_kind = "click"\n[[input]]\npaths = ["/abs/p1.mcap", "p2.mcap"]\n')
    got = load_manifest(m)
    assert got.reference == "mic" and got.out == str(tmp_path / "o.xdf")
    assert got.inputs[1] == ([str(tmp_path / "mic.wav")], InputOptions(sync_kind="click"))
    assert got.inputs[2][0] == ["/abs/p1.mcap", str(tmp_path / "p2.mcap")]
    m.write_text('[[input]]\npath = "a.xdf"\nsync_kin = "x"\n')
    with pytest.raises(InputError, match=r"in\.toml: input 1: unknown option\(s\) sync_kin"):
        load_manifest(m)
    m.write_text("[[input]\n")
    with pytest.raises(InputError, match="not a TOML manifest"):
        load_manifest(m)


def test_a_bids_events_tsv_reads_its_onsets_and_n_a_as_no_value(tmp_path):
    """BIDS ``*_events.tsv`` (onset in seconds, ``n/a`` for no value): before 2026-11-28 "no time column", and
    ``n/a`` made a numeric column text."""
    p = tmp_path / "sub-01_task-x_events.tsv"
    p.write_text("onset\tduration\ttrial_type\tresponse_time\n1.2300\t0.5\tgo\t0.432\n3.1\t0.5\tstop\tn/a\n"
                 "5.0\tn/a\tn/a\t0.512\n")
    inp = open_input(p)
    assert [s.key for s in inp.streams] == ["sub-01_task-x_events", "sub-01_task-x_events.trial_type"]
    assert inp.streams[0].info.channel_labels == ("duration", "response_time")
    got = _pieces(inp)
    num = got["sub-01_task-x_events"][0]
    assert num.device_ns.tolist() == [1_230_000_000, 3_100_000_000, 5_000_000_000]
    np.testing.assert_array_equal(num.data, [[0.5, 0.432], [0.5, np.nan], [np.nan, 0.512]])
    marks = got["sub-01_task-x_events.trial_type"][0]
    assert marks.data == ["go", "stop"] and inp.stats == {}


def test_mne_annotations_as_text_and_as_csv_read_as_a_marker_stream(tmp_path):
    """What ``mne.Annotations.save`` writes: a text file whose column names are a comment above rows of numbers,
    and a CSV whose onsets are dates and times (pandas'; UTC when no zone is given)."""
    mne = pytest.importorskip("mne", reason="MNE writes the annotation file users bring")
    txt = tmp_path / "run-annot.txt"
    mne.Annotations([1.23, 3.1], [0.5, 0.0], ["tone_on", "LED on"]).save(txt, overwrite=True)
    inp = open_input(txt)
    got = _pieces(inp)
    assert got["run-annot.description"][0].data == ["tone_on", "LED on"]
    assert got["run-annot.description"][0].device_ns.tolist() == [1_230_000_000, 3_100_000_000]
    csv_ = tmp_path / "run-annot.csv"
    csv_.write_text("onset,duration,description\n2026-11-28 09:00:01.230000,0.5,tone_on\n"
                    "2026-11-28T09:00:03.100000+00:00,0.0,LED on\n")
    got = _pieces(open_input(csv_))["run-annot.description"][0]
    t0 = 1_795_856_400 * NS  # 2026-11-28 09:00:00 UTC
    assert got.device_ns.tolist() == [t0 + 1_230_000_000, t0 + 3_100_000_000]
    bare = tmp_path / "bare.csv"
    bare.write_text("1.0,2.0\n3.0,4.0\n")  # numbers and no names anywhere: still one line
    with pytest.raises(InputError, match="no column names: the first row is data"):
        open_input(bare)


@pytest.mark.parametrize("header,cell,ns,opt", [
    ("time_ms", "1500.5", 1_500_500_000, ""), ("t (us)", "1000001", 1_000_001_000, ""),
    ("Time [ms]", "5", 5_000_000, ""), ("stamp_ns", "123", 123, "stamp_ns"), ("ms", "20", 20_000_000, "ms"),
    ("seconds", "2.5", 2_500_000_000, ""), ("timestamp", "1.000000001", 1_000_000_001, ""),
])
def test_a_time_column_named_with_its_unit_is_read_in_that_unit(tmp_path, header, cell, ns, opt):
    """An Arduino's "time_ms": before 2026-11-28 "no time column", and named with --time-col its milliseconds were
    read as seconds (every time 1000x too large, the log's alignment lost)."""
    p = tmp_path / "log.csv"
    p.write_text(f"{header},event\n{cell},tone_on\n")
    got = next(iter(open_input(p, InputOptions(time_col=opt)).read()))
    assert got.device_ns.tolist() == [ns]


@pytest.mark.parametrize("encoding,bom", [("utf-8", b"\xef\xbb\xbf"), ("cp1252", b""), ("utf-16-le", b"\xff\xfe")])
def test_tables_saved_by_excel_read_whatever_their_encoding(tmp_path, encoding, bom):
    """Excel's "CSV UTF-8" starts with a BOM (before 2026-11-28: "no time column", the BOM glued to the first
    name), its plain CSV on Western systems is Windows-1252 ("not a text file (not UTF-8)" at the first accented
    letter), its "Unicode text" UTF-16 ("it holds NUL bytes")."""
    p = tmp_path / "résultats.csv"
    delim = "\t" if encoding.startswith("utf-16") else ";"
    text = f"Time{delim}Réponse{delim}x\r\n1.5{delim}tone_on é{delim}2\r\n2.5{delim}bip{delim}3\r\n"
    p.write_bytes(bom + text.encode(encoding))
    inp = open_input(p)
    got = _pieces(inp)
    marks = got["résultats.Réponse"][0]
    assert marks.data == ["tone_on é", "bip"] and marks.device_ns.tolist() == [1_500_000_000, 2_500_000_000]
    assert got["résultats"][0].data.ravel().tolist() == [2.0, 3.0]


def test_review_cases_of_the_foreign_table_changes(tmp_path):
    """Found by a review: a header with numbers among its names under a comment about the file is still the header;
    a Greek mu names microseconds too (it was a traceback); dates read alike on every Python (Z, any fraction, not a
    date alone); a column whose times change form part way is counted, not read half as seconds since 1970."""
    p = tmp_path / "a.csv"
    p.write_text("# subject 3, session 2, rig A\ntime,1,2\n0.0,5,6\n0.5,7,8\n")
    inp = open_input(p)
    assert inp.columns == ["time", "1", "2"] and sum(x.n for x in inp.read()) == 2
    p.write_text("t (\u03bcs),x\n1500,1\n")
    assert next(iter(open_input(p).read())).device_ns.tolist() == [1_500_000]
    p.write_text("time,x\n2026-11-28T09:00:01.5Z,1\n2026-11-28 09:00:01.123456789,2\n2026-11-28,3\n")
    inp = open_input(p)
    got = next(iter(inp.read()))
    t0 = 1_795_856_401 * NS
    assert got.device_ns.tolist() == [t0 + 500_000_000, t0 + 123_456_789] and inp.stats == {"bad_time": 1}
    p.write_text("time,x\n1.5,1\n2026-11-28 09:00:01,2\n2.5,3\n")
    inp = open_input(p)
    assert next(iter(inp.read())).device_ns.tolist() == [1_500_000_000, 2_500_000_000]
    assert inp.stats == {"time_in_another_form": 1}


@pytest.mark.parametrize("tail, rows", [("6.1", 3), ("6.125,tone", 4)])
def test_a_table_cut_inside_its_last_row(tmp_path, caplog, tail, rows):
    """A logger stopped while it wrote its last row: '6.125,tone' cut to '6.1' was left out without a word (its
    marker cell empty); on a numeric table it would read as a row at 6.1 s.  The last row without a line end and
    with fewer fields than the header is left out, said and counted; a whole one without its line end is read."""
    p = tmp_path / "log.csv"
    p.write_text("time,event\n1.0,tone\n2.5,tone\n4.25,tone\n" + tail)
    r = open_input(p)
    got = [x for piece in r.read() for x in piece.device_ns]
    assert len(got) == rows
    assert ("cut_last_row" in r.stats) == (rows == 3)
    assert ("its last row has 1 of 2 fields and no line end" in caplog.text) == (rows == 3)
