"""BrainVision recordings (``.vhdr`` + ``.eeg`` + ``.vmrk``) as Brain Products' Recorder and pybv write them: read by
``synchub align``/``inspect`` as two streams on the amplifier's sample clock, checked against what MNE reads from
the same files; the faults of such files (a missing or cut data file, ASCII data, a marker file alone) are one line."""

from __future__ import annotations

import numpy as np
import pytest

from synchub.agent.formats.readers.base import InputError, InputOptions
from synchub.agent.formats.readers.brainvision import BrainVisionInput, parse_marker
from synchub.agent.formats.readers.opening import open_input

pybv = pytest.importorskip("pybv", reason="pybv (writes the test recordings) is in the dev extra")
mne = pytest.importorskip("mne", reason="MNE (reads them back to compare) is in the dev extra")

NS = 1_000_000_000


def _read(path, **opts):
    r = open_input(path, InputOptions(**opts))
    out: dict[str, list] = {}
    for p in r.read():
        out.setdefault(p.stream, []).append(p)
    return r, out


def _cat(pieces):
    t = np.concatenate([p.device_ns for p in pieces])
    if isinstance(pieces[0].data, list):
        return t, [x for p in pieces for x in p.data]
    return t, np.concatenate([p.data for p in pieces])


def _pybv(tmp_path, n=70_000, sfreq=512.0, events=None, **kw):
    data = np.random.default_rng(3).normal(0.0, 2e-5, (3, n))
    pybv.write_brainvision(data=data, sfreq=sfreq, ch_names=["Fp1", "Cz", "Photo"], fname_base="rec",
                           folder_out=tmp_path, events=events, **kw)
    return tmp_path / "rec.vhdr"


EVENTS = [{"onset": 100, "duration": 1, "description": 1, "type": "Stimulus"},
          {"onset": 40_000, "duration": 1, "description": 2, "type": "Response"},
          {"onset": 65_001, "duration": 1, "description": "block 2", "type": "Comment"}]


def test_channels_and_markers_read_as_mne_reads_them(tmp_path):
    vhdr = _pybv(tmp_path, events=EVENTS, meas_date="20240102120000123456")
    r, got = _read(vhdr)
    assert [s.key for s in r.streams] == ["rec", "rec-markers"]
    eeg = r.streams[0].info
    assert eeg.nominal_srate == 512.0 and eeg.channel_labels == ("Fp1", "Cz", "Photo")
    assert len(got["rec"]) > 1  # read a piece at a time
    t, x = _cat(got["rec"])
    raw = mne.io.read_raw_brainvision(vhdr, preload=True, verbose="error")
    assert np.allclose(x.T, raw.get_data() * 1e6, rtol=1e-6, atol=1e-6)  # in the channels' unit, uV
    start = int(raw.info["meas_date"].timestamp() * 1e6) * 1000  # the New Segment's date (UTC)
    assert t[0] == start and np.array_equal(np.diff(t[:4]), [1953125, 1953125, 1953125])  # 1953.125 us, exact
    assert t[-1] == start + ((len(t) - 1) * 1953125 * 8) // 8
    mt, text = _cat(got["rec-markers"])
    ann = raw.annotations
    keep = [i for i, d in enumerate(ann.description) if d != "New Segment/"]
    assert text == [ann.description[i] for i in keep] == ["Stimulus/S  1", "Response/R  2", "Comment/block 2"]
    assert np.allclose((mt - start) / NS, ann.onset[keep], atol=1e-9)
    assert r.stats == {"new_segments": 1, "markers": 3}


def test_the_marker_file_given_alone_reads_the_recording_its_header_names(tmp_path):
    vhdr = _pybv(tmp_path, events=EVENTS)
    (tmp_path / "rec.vhdr").rename(tmp_path / "session1.vhdr")  # the header's own name differs
    r1, a = _read(tmp_path / "session1.vhdr")
    r2, b = _read(tmp_path / "rec.vmrk")
    assert r2.kind == "brainvision" and [s.key for s in r2.streams] == ["session1", "session1-markers"]
    assert np.array_equal(_cat(a["session1-markers"])[0], _cat(b["session1-markers"])[0])
    assert r1.streams[0].info.nominal_srate == r2.streams[0].info.nominal_srate == 512.0 and not vhdr.exists()


def test_times_at_a_rate_whose_interval_python_prints_long(tmp_path):
    """pybv writes 1e6 / 600 as 1666.6666666666667 us: read as 5000/3 us (the exact fraction's numerator made
    every time past the 550th sample wrap around int64, silently)."""
    vhdr = _pybv(tmp_path, n=30_000, sfreq=600.0, events=[{"onset": 15_000, "duration": 1, "description": 1,
                                                            "type": "Stimulus"}])
    _, got = _read(vhdr)
    t, _ = _cat(got["rec"])
    assert np.array_equal(t, np.arange(30_000) * 5_000_000_000 // 3_000)
    raw = mne.io.read_raw_brainvision(vhdr, verbose="error")
    mt, _ = _cat(got["rec-markers"])
    assert mt[0] == 25 * NS and np.allclose(mt / NS, raw.annotations.onset[raw.annotations.description != "New Segment/"])


def _by_hand(tmp_path, header_extra: str, data: bytes, markers: str, fmt="INT_16", orient="VECTORIZED",
             interval="1000", nch=2, res=("0.5", "")) -> object:
    (tmp_path / "x.eeg").write_bytes(data)
    (tmp_path / "x.vhdr").write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n; hand-made\n\n[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile=x.eeg\nMarkerFile=x.vmrk\nDataFormat=BINARY\nDataOrientation={orient}\nNumberOfChannels={nch}\n"
        f"SamplingInterval={interval}\n{header_extra}\n[Binary Infos]\nBinaryFormat={fmt}\n\n[Channel Infos]\n"
        f"Ch1=EMG\\1left,,{res[0]},uV\nCh2=Trig,,{res[1]},\n")
    (tmp_path / "x.vmrk").write_text("Brain Vision Data Exchange Marker File, Version 1.0\n\n[Marker Infos]\n"
                                     + markers)
    return tmp_path / "x.vhdr"


def test_vectorized_int16_with_resolutions_and_escaped_commas(tmp_path):
    raw = np.array([[1, 2, 3, 4, 5], [10, 0, 0, 10, 0]], dtype="<i2")  # channel after channel
    vhdr = _by_hand(tmp_path, "", raw.tobytes(), "Mk1=Stimulus,S  1,2,1,0\nMk2=Comment,a\\1b,4,1,0\n")
    r, got = _read(vhdr)
    assert r.streams[0].info.channel_labels == ("EMG,left", "Trig")
    t, x = _cat(got["x"])
    assert np.array_equal(x, [[0.5, 10], [1.0, 0], [1.5, 0], [2.0, 10], [2.5, 0]])  # resolution 0.5; none: 1
    assert np.array_equal(t, np.arange(5) * 1_000_000)
    mt, text = _cat(got["x-markers"])
    assert text == ["Stimulus/S  1", "Comment/a,b"] and np.array_equal(mt, [1_000_000, 3_000_000])
    mne_raw = mne.io.read_raw_brainvision(vhdr, preload=True, verbose="error")
    assert np.allclose(x.T, mne_raw.get_data() * 1e6)


def test_a_recording_paused_and_resumed_jumps_forward_by_the_pause(tmp_path):
    raw = np.zeros((10, 1), dtype="<f4")
    marks = ("Mk1=New Segment,,1,1,0,20240102120000000000\nMk2=Stimulus,S  1,3,1,0\n"
             "Mk3=New Segment,,6,1,0,20240102120100000000\nMk4=Stimulus,S  2,7,1,0\n"
             "Mk5=New Segment,,9,1,0\n")  # a segment without its date: the clock goes on
    vhdr = _by_hand(tmp_path, "", raw.tobytes(), marks, fmt="IEEE_FLOAT_32", orient="MULTIPLEXED", nch=1)
    r, got = _read(vhdr)
    t, _ = _cat(got["x"])
    t0 = 1704196800 * NS
    assert np.array_equal(t - t0, np.array([0, 1, 2, 3, 4, 60_000, 60_001, 60_002, 60_003, 60_004]) * 1_000_000)
    mt, text = _cat(got["x-markers"])
    assert text == ["Stimulus/S  1", "Stimulus/S  2"] and np.array_equal(mt - t0, [2_000_000, 60_001_000_000])
    assert r.stats["new_segments"] == 3


def test_a_comma_the_writer_did_not_code_stays_in_the_description():
    """pybv 0.8 writes a description's comma as is (MNE then refuses the marker file): the numbers at the line's
    end are its position, size and channel, with or without a date."""
    assert parse_marker("m", "3", "Comment,hello, world,901,1,0") == ("Comment", "hello, world", 901, 1, 0, None)
    t = parse_marker("m", "1", "New Segment,,1,1,0,20240102120000123456")
    assert t[:5] == ("New Segment", "", 1, 1, 0) and t[5] == 1704196800123456000
    assert parse_marker("m", "2", "Stimulus,S 7,55") == ("Stimulus", "S 7", 55, 1, 0, None)  # a short line
    with pytest.raises(InputError, match=r"Mk9: its position is not a number"):
        parse_marker("m", "9", "Stimulus,S 7,soon,1,0")


@pytest.mark.parametrize("case, why", [
    ("no data file", "the data file x.eeg it names is missing"),
    ("cut data", "truncated: 7 bytes is not a whole number of samples of 2 channels"),
    ("ascii", "ASCII data is not supported"),
    ("format", "unknown BinaryFormat 'INT_24'"),
    ("not a header", "not a BrainVision header"),
    ("bad marker", "marker Mk1: its position is not a number"),
    ("zero interval", "must be > 0"),
    ("empty data", "x.eeg: empty: no samples"),
    ("resolution", "Ch1: resolution '0.1x' is not a number"),
    ("orientation", "unknown DataOrientation 'ROWS'"),
    ("no channel line", "no Ch2 line under"),
])
def test_faults_of_a_recording_are_one_line(tmp_path, case, why):
    ok = np.zeros(8, dtype="<i2").tobytes()
    vhdr = _by_hand(tmp_path, "", ok, "Mk1=Stimulus,S  1,2,1,0\n")
    if case == "no data file":
        (tmp_path / "x.eeg").unlink()
    elif case == "cut data":
        (tmp_path / "x.eeg").write_bytes(ok[:7])
    elif case == "ascii":
        vhdr.write_text(vhdr.read_text().replace("DataFormat=BINARY", "DataFormat=ASCII"))
    elif case == "format":
        vhdr.write_text(vhdr.read_text().replace("INT_16", "INT_24"))
    elif case == "not a header":
        vhdr.write_text("[Common Infos]\nDataFile=x.eeg\n")
    elif case == "bad marker":
        (tmp_path / "x.vmrk").write_text("Brain Vision Data Exchange Marker File\n[Marker Infos]\nMk1=Stimulus,S 1,x\n")
    elif case == "zero interval":
        vhdr.write_text(vhdr.read_text().replace("SamplingInterval=1000", "SamplingInterval=0"))
    elif case == "empty data":
        (tmp_path / "x.eeg").write_bytes(b"")
    elif case == "resolution":
        vhdr.write_text(vhdr.read_text().replace(",,0.5,uV", ",,0.1x,uV"))
    elif case == "orientation":
        vhdr.write_text(vhdr.read_text().replace("=VECTORIZED", "=ROWS"))
    elif case == "no channel line":
        vhdr.write_text(vhdr.read_text().replace("Ch2=Trig,,,", ""))
    with pytest.raises(InputError, match=why) as exc:
        BrainVisionInput(vhdr)
    assert "\n" not in str(exc.value)


def test_a_marker_file_without_its_header_is_one_line(tmp_path):
    (tmp_path / "lost.vmrk").write_text("Brain Vision Data Exchange Marker File\n[Marker Infos]\nMk1=Stimulus,S 1,2\n")
    with pytest.raises(InputError, match=r"lost\.vmrk: a BrainVision marker file needs its header \(\.vhdr\)"):
        open_input(tmp_path / "lost.vmrk")


def test_a_recording_with_no_marker_but_its_segment_has_no_marker_stream(tmp_path):
    vhdr = _by_hand(tmp_path, "", np.zeros(8, dtype="<i2").tobytes(), "Mk1=New Segment,,1,1,0,20240102120000000000\n")
    r, got = _read(vhdr)
    assert [s.key for s in r.streams] == ["x"] and list(got) == ["x"] and got["x"][0].device_ns[0] == 1704196800 * NS


def test_a_v_amp_header_a_renamed_marker_file_and_markers_outside_the_data(tmp_path):
    """A V-Amp header (MNE reads it); the marker file the header names is gone but one of the header's stem is
    there (a BIDS rename); a marker past the data's end is dropped and counted, as MNE drops it; an empty
    description keeps MNE's ``Type/``."""
    vhdr = _by_hand(tmp_path, "", np.zeros(8, dtype="<i2").tobytes(), "Mk1=Stimulus,,2,1,0\nMk2=Stimulus,S 9,99,1,0\n")
    text = vhdr.read_text().replace("Brain Vision Data Exchange Header File Version 1.0",
                                    "Brain Vision V-Amp Data Header File Version 1.0")
    vhdr.write_text(text.replace("MarkerFile=x.vmrk", "MarkerFile=old_name.vmrk"))
    r, got = _read(vhdr)
    assert got["x-markers"][0].data == ["Stimulus/"] and r.stats["markers_outside_data"] == 1
    (tmp_path / "x.vmrk").unlink()
    r, got = _read(vhdr)
    assert list(got) == ["x"] and r.stats == {"marker_file_missing": 1}


def test_a_dated_segment_after_an_undated_first_one_is_no_jump_from_1970(tmp_path):
    marks = "Mk1=New Segment,,1,1,0\nMk2=New Segment,,3,1,0,20240102120000000000\n"
    vhdr = _by_hand(tmp_path, "", np.zeros(8, dtype="<i2").tobytes(), marks)
    r, got = _read(vhdr)
    assert np.array_equal(got["x"][0].device_ns, np.arange(4) * 1_000_000)
    assert r.stats["segment_dates_ignored"] == 1


@pytest.mark.parametrize("tail, kept", [("Mk3=Stimulus,S  3,4", False),  # cut inside its position (was 40 or 400)
                                        ("Mk3=Stimulus,S  3,40,1,0", True)])  # whole, only its line end missing
def test_a_marker_file_cut_inside_its_last_line(tmp_path, caplog, tail, kept):
    """A recorder stopped while it wrote the last marker: 'Mk3=Stimulus,S  3,40,1,0' cut to '...,4' read as a marker
    at sample 4, unsaid (the short form type,description,position is legal).  The last line without a line end and
    fewer than its five fields is left out, said, and counted; a whole one without its line end is read."""
    raw = np.zeros((2, 50), dtype="<i2")
    vhdr = _by_hand(tmp_path, "", raw.tobytes(), "Mk1=Stimulus,S  1,2,1,0\nMk2=Stimulus,S  2,20,1,0\n" + tail)
    r, got = _read(vhdr)
    _, text = _cat(got["x-markers"])
    assert text == ["Stimulus/S  1", "Stimulus/S  2"] + (["Stimulus/S  3"] if kept else [])
    assert ("cut_last_marker" in r.stats) != kept
    assert ("its last marker line has no line end" in caplog.text) != kept
