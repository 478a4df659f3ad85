"""SpikeGLX recordings (a Neuropixels probe's ``.ap.bin``, an NI-DAQ's ``.nidq.bin``, each with its ``.meta``) read by
``synchub align``/``inspect`` as neo reads them, tied by the sync line each meta declares (TPrime's job: bit 6 of the
probe's SY0 word, the NI digital line ``syncNiChan``), or by ``--sync``/``--sync-bit``; the faults of such files are
one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synchub.agent.formats.readers.base import InputError
from synchub.agent.formats.readers.opening import open_input
from synchub.agent.formats.readers.spikeglx import SpikeGlxInput, declared_sync, parse_meta
from synchub.bench.files import ephys_files as ef
from synchub.cli import main

NS = 1_000_000_000


def _cat(path):
    r = open_input(path)
    ps = list(r.read())
    return r, np.concatenate([p.device_ns for p in ps]), np.concatenate([p.data for p in ps])


def _probe(tmp_path, n=30000 * 3, first=123_456, rate=30000.0, seed=0):
    rng = np.random.default_rng(seed)
    sync = ef.pulses(n, rate, np.arange(0.25, n / rate, 1.0))
    other = rng.integers(0, 2, n)  # another status bit of the SY word toggling: only bit 6 is the sync line
    data = np.column_stack([rng.integers(-500, 500, (n, 4)), (sync << 6) | other]).astype(np.int16)
    return ef.write_probe(tmp_path / "probe", data, rate, first_sample=first), data


def test_a_probe_file_reads_as_neo_reads_it(tmp_path):
    neo = pytest.importorskip("neo", reason="neo (reads SpikeGLX to compare) is in the dev extra")
    path, data = _probe(tmp_path)
    r, t, x = _cat(path)
    fs = r.streams[0]
    io = neo.rawio.SpikeGLXRawIO(str(path.parent))
    io.parse_header()
    names = [str(c["name"]) for c in io.header["signal_channels"]]
    assert fs.key == "run_g0_t0.imec0.ap" and list(fs.info.channel_labels) == names
    assert fs.info.nominal_srate == io.get_signal_sampling_rate(0) == 30000.0
    assert t[0] == round(io.get_signal_t_start(0, 0, 0) * NS) == 123_456 * NS // 30000  # firstSample / rate
    assert np.array_equal(np.diff(t[:4]), [33333, 33334, 33333]) and len(t) == len(data)
    ap = io.get_analogsignal_chunk(0, 0, 0, None, 0)  # neo: the AP channels; SY0 its own stream
    assert np.array_equal(x, data) and np.array_equal(x[:, :4], ap)
    assert fs.meta["sync"] == ("SY0", 6)
    assert open_input(path.with_suffix(".meta")).streams[0].key == fs.key  # either file of the pair


def test_an_nidq_file_reads_as_neo_reads_it(tmp_path):
    neo = pytest.importorskip("neo", reason="neo (reads SpikeGLX to compare) is in the dev extra")
    rng = np.random.default_rng(1)
    data = rng.integers(-3000, 3000, (25000, 3)).astype(np.int16)
    path = ef.write_nidq(tmp_path / "ni", data, 25000.0, sync_line=10)
    r, t, x = _cat(path)
    io = neo.rawio.SpikeGLXRawIO(str(path.parent))
    io.parse_header()
    names = [str(c["name"]) for c in io.header["signal_channels"]]
    assert r.streams[0].info.channel_labels == ("XA0", "XA1", "XD0") and names == ["XA0", "XA1", "XD0"]
    assert np.array_equal(x, io.get_analogsignal_chunk(0, 0, 0, None, 0)) and np.array_equal(x, data)
    assert t[0] == 0 and t[-1] == 24999 * NS // 25000
    assert r.streams[0].meta["sync"] == ("XD0", 10)


@pytest.mark.parametrize("meta, labels, want", [
    ({"typeThis": "imec", "imSampRate": "30000"}, ("AP0", "SY0"), ("SY0", 6)),
    ({"typeThis": "imec", "imSampRate": "2500"}, ("LF0",), None),  # a probe file saved without its SY0
    ({"typeThis": "nidq", "syncNiChanType": "0", "syncNiChan": "17"}, ("XA0", "XD0", "XD1"), ("XD1", 1)),
    ({"typeThis": "nidq", "syncNiChanType": "1", "syncNiChan": "1"}, ("XA0", "XA1", "XD0"), ("XA1", None)),
    ({"typeThis": "nidq", "syncNiChanType": "0", "syncNiChan": "20"}, ("XA0", "XD0"), None),  # a word not saved
    ({"typeThis": "nidq"}, ("XA0", "XD0"), None),
    ({"typeThis": "obx", "syncObChanType": "0", "syncObChan": "3"}, ("XA0", "XD0"), ("XD0", 3)),
])
def test_the_sync_line_is_the_one_the_meta_declares(meta, labels, want):
    assert declared_sync(meta, labels) == want


def test_meta_lines_keep_their_tables():
    m = parse_meta("nSavedChans=2\n~snsChanMap=(1,0,1)(AP0;0:0)(SY0;1:1)\nbad line\nuserNotes=a=b\n")
    assert m == {"nSavedChans": "2", "~snsChanMap": "(1,0,1)(AP0;0:0)(SY0;1:1)", "userNotes": "a=b"}


def _pair(tmp_path, ppm=20e-6, start=0.2, declared=True, period=1.0):
    """An NI-DAQ (the reference, 25 kHz) and a probe (30 kHz, ``ppm`` fast, started ``start`` s later) that see the
    same 1 Hz sync pulses (SpikeGLX's default sync source), each with noise on another bit of the same word."""
    rng = np.random.default_rng(2)
    edges = 0.37 + np.arange(40.0) * period  # 1 s: paced by the NI-DAQ's clock, as SpikeGLX's own pulser
    n = int(40.5 * 25000)
    ni = np.column_stack([rng.integers(-100, 100, (n, 2)),
                          ef.pulses(n, 25000.0, edges) | (rng.integers(0, 2, n) << 3)]).astype(np.int16)
    nip = ef.write_nidq(tmp_path / "ni", ni, 25000.0, sync_line=0)
    if not declared:
        text = nip.with_suffix(".meta").read_text()
        nip.with_suffix(".meta").write_text("".join(ln + "\n" for ln in text.splitlines() if "syncNi" not in ln))
    m = int((40.5 - start) * 30000)
    sy = ef.pulses(m, 30000.0, (edges - start) * (1 + ppm))
    probe = np.column_stack([rng.integers(-500, 500, (m, 3)), (sy << 6) | rng.integers(0, 2, m)]).astype(np.int16)
    return nip, ef.write_probe(tmp_path / "probe", probe, 30000.0, first_sample=3000)


@pytest.mark.parametrize("period, paced", [(1.0, True), (1.0000173, False)])
def test_pulses_paced_by_a_sampling_clock_share_its_quantization(tmp_path, period, paced):
    """Pulses at whole NI samples are all late by the same fraction of a sample: a bias of up to half a sample
    (40 us / sqrt(12) 1-sigma) the fit cannot average, and the uncertainty says so; pulses whose phase walks across
    the grid (a source on its own clock) average it out."""
    ni, probe = _pair(tmp_path, period=period)
    rc, rep = _align(tmp_path, ni, probe)
    p = {x["name"]: x for x in rep["streams"]}["run_g0_t0.imec0.ap"]
    q = 40.0 / np.sqrt(12.0)
    shared = any("a bias they share" in n for n in p["link"]["notes"])
    assert rc == 0 and p["method"] == "edges"
    if paced:
        assert p["uncertainty_us"]["median"] >= 0.95 * q and shared
    else:
        assert p["uncertainty_us"]["median"] < 0.5 * q and not shared


def _align(tmp_path, *args):
    rc = main(["align", *map(str, args), "--json", str(tmp_path / "r.json")])
    return rc, json.loads((tmp_path / "r.json").read_text()) if rc == 0 else None


def test_a_probe_is_tied_to_the_nidq_by_the_sync_lines_their_metas_declare(tmp_path):
    ni, probe = _pair(tmp_path)
    rc, rep = _align(tmp_path, ni, probe)
    s = {x["name"]: x for x in rep["streams"]}
    p = s["run_g0_t0.imec0.ap"]
    assert rc == 0 and p["method"] == "edges" and s["run_g0_t0.nidq"]["sync"]["bit"] == 0
    assert p["sync"]["bit"] == 6 and p["sync"]["pulses"] == 40 and s["run_g0_t0.nidq"]["sync"]["pulses"] == 40
    assert abs(p["drift_ppm"] - 20.0) < 0.5
    assert abs(p["first_ref_s"] - 0.2) < 1.0 / 25000  # its first sample: taken 0.2 s into the NI recording


def test_sync_bit_names_a_line_no_meta_declares(tmp_path, capsys):
    ni, probe = _pair(tmp_path, declared=False)
    rc, _ = _align(tmp_path, ni, probe)  # the NI file's word has no line named: nothing ties them
    assert rc == 2 and "nothing to align on" in capsys.readouterr().err
    man = tmp_path / "inputs.toml"  # options per file: the NI word's line 0; the probe's SY0 as its meta says
    man.write_text(f'[[input]]\npath = "{ni}"\nsync = "XD0"\nsync_bit = 0\n[[input]]\npath = "{probe}"\n')
    rc, rep = _align(tmp_path, "--manifest", man)
    p = {x["name"]: x for x in rep["streams"]}["run_g0_t0.imec0.ap"]
    assert rc == 0 and p["method"] == "edges" and abs(p["drift_ppm"] - 20.0) < 0.5
    with pytest.raises(SystemExit) as exc:
        main(["align", str(ni), str(probe), "--sync-bit", "70"])
    assert exc.value.code == 2 and "not a bit number 0..62" in capsys.readouterr().err


@pytest.mark.parametrize("fault, why", [
    ("no meta", "no SpikeGLX meta file run_g0_t0.imec0.ap.meta beside it"),
    ("half sample", "truncated: .* bytes are not whole samples of 5 int16 channels"),
    ("short", "truncated: .* of the .* bytes its meta file declares"),
    ("not meta", "not a SpikeGLX meta file"),
    ("zero channels", "nSavedChans 0 and rate 30000.0 must both be > 0"),
    ("first sample", "firstSample '-5' is not a sample count"),
])
def test_faults_of_a_recording_are_one_line(tmp_path, fault, why):
    path, _ = _probe(tmp_path, n=3000)
    meta = path.with_suffix(".meta")
    if fault == "no meta":
        meta.unlink()
    elif fault == "half sample":
        path.write_bytes(path.read_bytes()[:-3])
    elif fault == "short":
        path.write_bytes(path.read_bytes()[:-10])
    elif fault == "not meta":
        meta.write_text("this is not a meta file\n")
    elif fault == "first sample":
        meta.write_text(meta.read_text().replace("firstSample=123456", "firstSample=-5"))
    elif fault == "zero channels":
        meta.write_text(meta.read_text().replace("nSavedChans=5", "nSavedChans=0"))
    with pytest.raises(InputError, match=why) as exc:
        SpikeGlxInput(path)
    assert "\n" not in str(exc.value)
    assert main(["inspect", str(path)]) == 2


@pytest.mark.parametrize("bit", ["6", True, -1, 63, 2.5])
def test_a_sync_bit_that_is_not_a_bit_number_is_refused(bit):
    from synchub.agent.formats.readers.base import InputOptions

    with pytest.raises(ValueError, match="a bit of an integer word, 0..62"):
        InputOptions(sync_bit=bit)
