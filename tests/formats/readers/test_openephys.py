"""Open Ephys binary recordings (``structure.oebin``, ``continuous.dat``, sample numbers, TTL events) read by ``synchub
align``/``inspect`` as neo reads them, their TTL lines a word channel whose sync line ties them to another
recording's pulses; the format before 0.6 too; the faults of such files are one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synchub.agent.formats.readers.base import InputError
from synchub.agent.formats.readers.openephys import OpenEphysInput
from synchub.agent.formats.readers.opening import open_input
from synchub.bench.files import ephys_files as ef
from synchub.cli import main

NS = 1_000_000_000


def _cat(path):
    r = open_input(path)
    ps = list(r.read())
    return r, np.concatenate([p.device_ns for p in ps]), np.concatenate([p.data for p in ps])


def _rec(tmp_path, n=30000 * 2, first=1000, events=((4000, 2), (5500, -2), (10000, 1), (10100, -1)), **kw):
    rng = np.random.default_rng(0)
    data = rng.integers(-500, 500, (n, 3)).astype(np.int16)
    return ef.write_openephys(tmp_path / "oe", data, 30000.0, first_sample=first, events=list(events), **kw), data


def test_a_recording_reads_as_neo_reads_it(tmp_path):
    neo = pytest.importorskip("neo", reason="neo (reads Open Ephys to compare) is in the dev extra")
    path, data = _rec(tmp_path)
    r, t, x = _cat(path)
    io = neo.rawio.OpenEphysBinaryRawIO(str(tmp_path / "oe"))
    io.parse_header()
    names = [str(c["name"]) for c in io.header["signal_channels"]]
    assert r.streams[0].key == "Rhythm Data" and r.streams[0].info.channel_labels == (*names, "TTL")
    assert t[0] == round(io.get_signal_t_start(0, 0, 0) * NS) == 1000 * NS // 30000
    assert np.array_equal(x[:, :3], io.get_analogsignal_chunk(0, 0, 0, None, 0)) and np.array_equal(x[:, :3], data)
    ev_t, _, labels = io.get_event_timestamps(0, 0, 0)  # neo: each line's rises, with their durations
    word = x[:, 3].astype(np.int64)
    for line in (1, 2):
        bit = (word >> (line - 1)) & 1
        rises = np.nonzero(np.diff(bit) == 1)[0] + 1
        assert np.allclose(t[rises] / NS, ev_t[labels == str(line)], atol=1e-9)
    assert word[0] == 0 and word.max() == 2


def test_the_word_starts_from_the_initial_state_and_the_format_before_0_6_reads_too(tmp_path):
    path, _ = _rec(tmp_path, events=((4000, -3),), initial_state=0b100, version="0.6.7")
    _, _, x = _cat(path)
    assert x[0, 3] == 4 and x[-1, 3] == 0 and np.count_nonzero(np.diff(x[:, 3])) == 1
    rec = path.parent
    cont, ev = rec / "continuous" / ef.FOLDER, rec / "events" / ef.FOLDER / "TTL"
    (cont / "sample_numbers.npy").replace(cont / "timestamps.npy")  # 0.5: sample numbers under this name
    (ev / "states.npy").replace(ev / "channel_states.npy")
    (ev / "sample_numbers.npy").replace(ev / "timestamps.npy")
    _, t, y = _cat(path)
    assert t[0] == 1000 * NS // 30000 and np.array_equal(x, y)


def _pair(tmp_path, ppm=30e-6, start=0.3, other_line=True):
    """An NI-DAQ (the reference, SpikeGLX) and an Open Ephys board (30 kHz, ``ppm`` fast, its sample numbers from
    5000, started ``start`` s later) seeing the same 1 Hz sync pulses, on the board's TTL line 3; line 1 also
    carries other events."""
    rng = np.random.default_rng(3)
    edges = 0.41 + np.arange(30.0)
    n = int(30.5 * 25000)
    ni = np.column_stack([rng.integers(-100, 100, (n, 1)), ef.pulses(n, 25000.0, edges)]).astype(np.int16)
    nip = ef.write_nidq(tmp_path / "ni", ni, 25000.0, sync_line=0)
    m = int((30.5 - start) * 30000)
    rises = np.ceil((edges - start) * (1 + ppm) * 30000).astype(np.int64) + 5000
    events = [(int(s), 3) for s in rises] + [(int(s) + 15000, -3) for s in rises]
    if other_line:
        lick = np.sort(rng.integers(5000, 5000 + m, 40))
        events += [(int(s), 1) for s in lick[::2]] + [(int(s), -1) for s in lick[1::2]]
    events.sort()
    data = rng.integers(-300, 300, (m, 2)).astype(np.int16)
    return nip, ef.write_openephys(tmp_path / "oe", data, 30000.0, first_sample=5000, events=events)


def _streams(tmp_path, *args):
    rc = main(["align", *map(str, args), "--json", str(tmp_path / "r.json")])
    assert rc == 0
    return {s["name"]: s for s in json.loads((tmp_path / "r.json").read_text())["streams"]}


def test_the_board_is_tied_to_another_recording_by_the_sync_line_of_its_ttl_word(tmp_path):
    ni, oebin = _pair(tmp_path)
    man = tmp_path / "in.toml"
    man.write_text(f'[[input]]\npath = "{ni}"\n[[input]]\npath = "{oebin}"\nsync = "TTL"\nsync_bit = 2\n')
    s = _streams(tmp_path, "--manifest", man)["Rhythm Data"]
    assert s["method"] == "edges" and s["sync"]["bit"] == 2 and s["sync"]["pulses"] == 30
    assert abs(s["drift_ppm"] - 30.0) < 0.5 and abs(s["first_ref_s"] - 0.3) < 2.0 / 25000


def test_a_word_whose_one_line_toggles_is_found_by_itself(tmp_path):
    ni, oebin = _pair(tmp_path, other_line=False)
    s = _streams(tmp_path, ni, oebin)["Rhythm Data"]
    assert s["method"] == "edges" and s["sync"]["pulses"] == 30 and abs(s["drift_ppm"] - 30.0) < 0.5


@pytest.mark.parametrize("fault, why", [
    ("not json", "not an Open Ephys structure.oebin"),
    ("no continuous", "not an Open Ephys structure.oebin"),
    ("no dat", "continuous.dat: no such file"),
    ("half sample", "truncated: .* bytes are not whole samples of 3 int16 channels"),
    ("sample numbers", "59999 sample numbers for 60000 samples"),
    ("states", "3 TTL states for 4 sample numbers"),
    ("npy", "sample_numbers.npy: not a readable .npy array"),
    ("states 2-d", r"states.npy: not a list of numbers \(an array of shape \(2, 2\)"),
    ("states halves", "states.npy: holds numbers that are not whole"),
])
def test_faults_of_a_recording_are_one_line(tmp_path, fault, why):
    path, _ = _rec(tmp_path)
    cont, ev = path.parent / "continuous" / ef.FOLDER, path.parent / "events" / ef.FOLDER / "TTL"
    if fault == "not json":
        path.write_text("{ not json")
    elif fault == "no continuous":
        path.write_text(json.dumps({"GUI version": "0.6.7", "events": []}))
    elif fault == "no dat":
        (cont / "continuous.dat").unlink()
    elif fault == "half sample":
        (cont / "continuous.dat").write_bytes((cont / "continuous.dat").read_bytes()[:-1])
    elif fault == "sample numbers":
        np.save(cont / "sample_numbers.npy", np.arange(59999))
    elif fault == "states":
        np.save(ev / "states.npy", np.array([2, -2, 1], dtype=np.int16))
    elif fault == "states 2-d":
        np.save(ev / "states.npy", np.zeros((2, 2)))
    elif fault == "states halves":
        np.save(ev / "states.npy", np.array([1.5, -1.5, 2.0, -2.0]))
    elif fault == "npy":
        (cont / "sample_numbers.npy").write_bytes(b"garbage")
    with pytest.raises(InputError, match=why) as exc:
        OpenEphysInput(path)
    assert "\n" not in str(exc.value)
    assert main(["inspect", str(path)]) == 2


def test_a_channel_list_that_does_not_fit_names_the_channels_by_number(tmp_path):
    path, _ = _rec(tmp_path)
    info = json.loads(path.read_text())
    for bad in (5, ["a", "b", "c"], [{"channel_name": "A"}]):  # not a list, not of objects, not the stream's width
        info["continuous"][0]["channels"] = bad
        path.write_text(json.dumps(info))
        assert OpenEphysInput(path).streams[0].info.channel_labels == ("CH1", "CH2", "CH3", "TTL")
