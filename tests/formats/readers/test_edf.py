"""EDF+, BDF and EDF+D recordings as edfio (MNE's EDF writer) writes them: read by ``synchub align``/``inspect`` as
streams per sampling rate and a marker stream of the annotations, checked against what MNE reads from the same
files; a BDF's trigger channel keeps its code; the faults of such files are one line."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from synchub.agent.formats.readers.base import InputError
from synchub.agent.formats.readers.edf_read import EdfInput
from synchub.agent.formats.readers.opening import open_input

edfio = pytest.importorskip("edfio", reason="edfio (writes the test recordings) is in the dev extra")
mne = pytest.importorskip("mne", reason="MNE (reads them back to compare) is in the dev extra")

NS = 1_000_000_000
START = int(datetime.datetime(2024, 1, 2, 12, 0, 1, tzinfo=datetime.timezone.utc).timestamp()) * NS


def _read(path):
    r = open_input(path)
    out: dict[str, list] = {}
    for p in r.read():
        out.setdefault(p.stream, []).append(p)
    cat = {}
    for k, ps in out.items():
        t = np.concatenate([p.device_ns for p in ps])
        cat[k] = (t, [x for p in ps for x in p.data] if isinstance(ps[0].data, list) else
                  np.concatenate([p.data for p in ps]))
    return r, cat


def _edf(tmp_path, seconds=300, name="x.edf"):
    rng = np.random.default_rng(0)
    sigs = [edfio.EdfSignal(rng.normal(0, 50, 256 * seconds), 256, label=lab, physical_dimension="uV",
                            physical_range=(-500, 500)) for lab in ("Fp1", "Cz")]
    sigs.append(edfio.EdfSignal(rng.normal(0, 1, 32 * seconds), 32, label="Resp", physical_range=(-10, 10)))
    notes = [edfio.EdfAnnotation(1.5, None, "Stim 1"), edfio.EdfAnnotation(200.25, 0.5, "Lights off")]
    edf = edfio.Edf(sigs, starttime=datetime.time(12, 0, 1), annotations=notes,
                    recording=edfio.Recording(startdate=datetime.date(2024, 1, 2)))
    edf.write(tmp_path / name)
    return tmp_path / name


def test_signals_per_rate_and_annotations_read_as_mne_reads_them(tmp_path):
    path = _edf(tmp_path)
    r, got = _read(path)
    assert [(s.key, s.info.nominal_srate, s.info.channel_labels) for s in r.streams] == [
        ("x", 256.0, ("Fp1", "Cz")), ("x-32Hz", 32.0, ("Resp",)), ("x-annotations", 0.0, ("annotation",))]
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    t, x = got["x"]
    assert np.allclose(x.T, raw.get_data(picks=["Fp1", "Cz"]) * 1e6, atol=1e-3)
    assert len(t) == 256 * 300 and np.array_equal(t - START, np.arange(len(t)) * NS // 256)
    t32, resp = got["x-32Hz"]
    assert np.array_equal(t32 - START, np.arange(32 * 300) * NS // 32)
    assert np.allclose(resp[:, 0], edfio.read_edf(path).signals[2].data, atol=1e-6)  # MNE resamples it to 256 Hz
    ta, text = got["x-annotations"]
    assert text == list(raw.annotations.description) == ["Stim 1", "Lights off"]
    assert np.allclose((ta - START) / NS, raw.annotations.onset)


def test_a_bdf_trigger_channel_keeps_its_code(tmp_path):
    """BioSemi's Status channel: the trigger code in its low 16 bits, the box's state bits above (CMS in range,
    battery): read as the code alone, as pulses are found in it."""
    rng = np.random.default_rng(1)
    code = np.zeros(2048 * 10)
    for s in range(1, 10):
        code[s * 2048: s * 2048 + 20] = s
    status = code + (1 << 20)
    sigs = [edfio.BdfSignal(rng.normal(0, 50, 2048 * 10), 2048, label="A1", physical_dimension="uV",
                            physical_range=(-262144, 262143)),
            edfio.BdfSignal(status, 2048, label="Status", physical_range=(-8388608, 8388607),
                            digital_range=(-8388608, 8388607))]
    edfio.Bdf(sigs, starttime=datetime.time(9, 30, 0)).write(tmp_path / "b.bdf")
    r, got = _read(tmp_path / "b.bdf")
    assert r.bdf and r.streams[0].info.channel_labels == ("A1", "Status")
    _, x = got["b"]
    assert np.array_equal(x[:, 1], code)
    raw = mne.io.read_raw_bdf(tmp_path / "b.bdf", preload=True, verbose="error")
    assert np.allclose(x[:, 0], raw.get_data(picks=["A1"])[0] * 1e6, atol=0.05)


def test_edf_plus_d_records_start_where_their_time_keeping_says(tmp_path):
    """EDF+D (discontinuous: a recording paused): each record's first annotation list stamps its start; the last
    record, stamped 99 s in instead of 299, starts there, after its gap."""
    path = _edf(tmp_path)
    b = bytearray(path.read_bytes())
    b[192:197] = b"EDF+D"
    at = b.rfind(b"+299\x14\x14\x00")
    assert at > 0
    b[at:at + 7] = b"+399\x14\x14\x00"
    path.write_bytes(bytes(b))
    _, got = _read(path)
    t, _ = got["x"]
    assert t[-256] - START == 399 * NS and t[-257] - START == 299 * NS - NS // 256
    assert np.all(np.diff(t[:-256]) > 0)


def test_a_time_keeping_list_that_carries_an_annotation_still_times_its_record(tmp_path):
    """The spec: only a record's first list's first text is empty; more texts may follow it ("+399 \\x14\\x14Resumed"):
    the record starts at 399 s and "Resumed" is an annotation there."""
    path = _edf(tmp_path)
    b = bytearray(path.read_bytes())
    b[192:197] = b"EDF+D"
    at = b.rfind(b"+299\x14\x14\x00")
    assert bytes(b[at + 7: at + 15]) == bytes(8)  # room for the text
    b[at:at + 15] = b"+399\x14\x14Resumed\x14\x00"
    path.write_bytes(bytes(b))
    _, got = _read(path)
    assert got["x"][0][-256] - START == 399 * NS
    ta, text = got["x-annotations"]
    assert text == ["Stim 1", "Lights off", "Resumed"] and ta[-1] - START == 399 * NS


def test_the_year_comes_from_the_edf_plus_recording_field(tmp_path):
    """EDF+ writes the four-digit year in the recording field ("Startdate 02-JAN-2024"); the header's two-digit
    field may be "yy" (after 2084)."""
    path = _edf(tmp_path)
    b = bytearray(path.read_bytes())
    b[174:176] = b"yy"
    path.write_bytes(bytes(b))
    _, got = _read(path)
    assert got["x"][0][0] == START


@pytest.mark.parametrize("fault, why", [
    ("not edf", "not an EDF or BDF file"),
    ("cut", r"truncated: 299 of 300 data records"),
    ("header size", r"header of 1000 bytes for 4 signals"),
    ("date", "start date and time are not dd.mm.yy hh.mm.ss"),
    ("negative samples", "samples per record is negative"),
    ("physical range", "physical range does not fit 32-bit floats"),  # its values were inf (two numpy warnings)
])
def test_faults_of_a_recording_are_one_line(tmp_path, fault, why):
    path = _edf(tmp_path)
    b = bytearray(path.read_bytes())
    if fault == "not edf":
        b[:8] = b"PK\x03\x04xxxx"
    elif fault == "cut":
        b = b[:-10]  # part of the last record gone
    elif fault == "header size":
        b[184:192] = b"1000    "
    elif fault == "date":
        b[168:176] = b"yy.mm.dd"
    elif fault == "negative samples":
        b[256 + 4 * 216: 256 + 4 * 216 + 8] = b"-2      "
    elif fault == "physical range":
        b[256 + 4 * 112: 256 + 4 * 112 + 8] = b"1e308   "  # signal 0's physical maximum
    path.write_bytes(bytes(b))
    with pytest.raises(InputError, match=why) as exc:
        EdfInput(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_a_bdf_is_tied_to_another_file_by_the_pulses_on_its_trigger_channel(tmp_path):
    """``synchub align rec.bdf daq.csv --sync Status``/``ttl``: the same TTL pulses (irregular, 60 s) reach a
    BioSemi amplifier's trigger input and a DAQ logging at 1 kHz on its own clock (3.2 s off, 50 ppm fast): the
    amplifier's samples map onto the DAQ's clock within a DAQ sample."""
    from synchub.agent.align.files.engine import FileAlignment
    from synchub.agent.align.files.reference import InputSpec
    from synchub.agent.formats.readers.base import InputOptions

    rng = np.random.default_rng(7)
    edges = np.cumsum(rng.uniform(0.7, 1.9, 40)) + 1.0  # s, on the amplifier's clock from its first sample
    edges = edges[edges < 58.0]
    fs = 2048
    status = np.zeros(fs * 60)
    for e in edges:
        status[int(round(e * fs)): int(round(e * fs)) + 20] = 1
    sigs = [edfio.BdfSignal(rng.normal(0, 5, fs * 60), fs, label="A1", physical_dimension="uV",
                            physical_range=(-262144, 262143)),
            edfio.BdfSignal(status + (1 << 20), fs, label="Status", physical_range=(-8388608, 8388607),
                            digital_range=(-8388608, 8388607))]
    edfio.Bdf(sigs, starttime=datetime.time(9, 30, 0)).write(tmp_path / "rec.bdf")
    t = np.arange(0, 60.0, 0.001)  # the DAQ's own clock
    amp_t = (t - 3.2) / (1 + 50e-6)  # its times on the amplifier's clock
    ttl = np.zeros(len(t))
    for e in np.round(edges * fs) / fs:
        ttl[(amp_t >= e) & (amp_t < e + 20 / fs)] = 1
    (tmp_path / "daq.csv").write_text("time,ttl\n" + "".join(f"{a:.3f},{int(b)}\n" for a, b in zip(t, ttl, strict=True)))
    fa = FileAlignment([InputSpec([str(tmp_path / "daq.csv")]),
                        InputSpec([str(tmp_path / "rec.bdf")], InputOptions(sync="Status"))])
    fa.gather()
    link = fa.inputs[1].link
    start = int(datetime.datetime(1985, 1, 1, 9, 30, tzinfo=datetime.timezone.utc).timestamp()) * NS  # edfio's date
    k = np.arange(0, fs * 60, fs * 5)
    dev = start + k * NS // fs
    g, _ = link.map(dev, np.zeros(len(dev), dtype=np.int64))
    truth = (k / fs * (1 + 50e-6) + 3.2) * NS
    assert link.method == "edges" and np.max(np.abs(g - truth)) < 1e6


@pytest.mark.parametrize("field, value, why", [
    ((244, 252), b"1e20    ", r"its times run past the year 2262 \(start in 2024, 300 records of 1e\+20 s\)"),
    ((88, 168), b"Startdate 02-JAN-9999 x".ljust(80), r"its times run past the year 2262 \(start in 9999"),
])
def test_times_past_what_ns_hold_are_one_line(tmp_path, field, value, why):
    """A record duration of 1e20 s, a start in the year 9999: a Python OverflowError traceback (int64 ns)."""
    path = _edf(tmp_path)
    b = bytearray(path.read_bytes())
    b[field[0]:field[1]] = value
    path.write_bytes(bytes(b))
    with pytest.raises(InputError, match=why) as exc:
        EdfInput(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_an_annotation_onset_out_of_range_is_left_out_and_counted(tmp_path, caplog):
    """A garbled onset (+1e400 s) in an annotation list: an OverflowError traceback; now left out, counted, logged."""
    path = _edf(tmp_path, seconds=20)
    b = bytearray(path.read_bytes())
    ns = int(b[252:256])
    at = 256 + ns * 216
    nsamp = [int(b[at + 8 * j:at + 8 * j + 8]) for j in range(ns)]
    ann = next(i for i in range(ns) if b[256 + 16 * i:256 + 16 * i + 15] == b"EDF Annotations")
    off = 256 * (ns + 1) + 2 * sum(nsamp[:ann]) + 2 * sum(nsamp) * 3  # the fourth record's list
    tal = b"+1e400\x14\x14x\x14\x00"
    b[off:off + len(tal)] = tal
    path.write_bytes(bytes(b))
    r, got = _read(path)
    assert r.stats == {"annotation_onsets_out_of_range": 1} and "record 4: annotation onset(s) 1e400 s" in caplog.text
    assert got["x-annotations"][1] == ["Stim 1", "Lights off"][:len(got["x-annotations"][1])]
    assert len(got["x"][0]) == 20 * 256


@pytest.mark.parametrize("records, cut, why", [("299     ", 0, "its header says fewer records"),
                                               ("-1      ", 10, "a last record cut short")])
def test_data_after_the_records_the_header_counts_is_said_not_dropped_unsaid(tmp_path, caplog, records, cut, why):
    """A header that counts fewer records than the file holds (or -1, 'unknown', over a file whose last record is
    cut): the records it counts are read, as before, and what follows them is said, not left out unsaid."""
    path = _edf(tmp_path)
    b = bytearray(path.read_bytes())
    b[236:244] = records.encode()
    path.write_bytes(bytes(b[: len(b) - cut]))
    r, got = _read(path)
    assert len(got["x"][0]) == 256 * 299
    assert len(r.warnings) == 1 and why in r.warnings[0] and "not read" in r.warnings[0]
    assert why in caplog.text
