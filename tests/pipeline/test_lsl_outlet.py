"""``[lsl] outlet = true``: corrected streams re-published as real pylsl outlets, read back by a real inlet the way
LabRecorder reads them (samples, per-sample timestamps, time_correction, the full description) and written to XDF
that pyxdf loads with ``synchronize_clocks=True`` without a warning.  Skipped (with the reason) without liblsl."""

import logging
import time
import uuid

import numpy as np
import pytest
from support.lsl import needs_lsl, pull_all, pylsl

from synchub.agent.config.loader import parse_config
from synchub.agent.config.schema import LslOutletSettings
from synchub.agent.core.settings import ConfigError
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.formats.xdf import XdfWriter
from synchub.agent.pipeline.lsl_outlet import LslPublisher
from synchub.agent.pipeline.runtime import Agent
from synchub.drivers.lsl.inlet import info_from_xml
from synchub.drivers.lsl.outlet import lsl_clock_offset_ns, lsl_stamps, outlet_spec, samples_of

NS = 1_000_000_000
EEG = StreamInfo("eeg0", "other", 500.0, 8, "float32", tuple(f"C{i}" for i in range(8)), ("uV",) * 8, "amp-1",
                 quality=(("wire", "csv"), ("lsl_type", "EEG")))
MARKERS = StreamInfo("mk0", "marker", 0.0, 1, "string", ("event",))


def test_the_outlet_says_what_the_stream_is_and_what_its_timestamps_are():
    spec = LslPublisher({"eeg0": EEG}, LslOutletSettings(outlet=True, name_prefix="lab-"), "pi7").specs["eeg0"]
    assert (spec.name, spec.type, spec.channel_count, spec.nominal_srate, spec.channel_format) == (
        "lab-eeg0", "EEG", 8, 500.0, "float32")  # a stream that came from LSL keeps its LSL type
    assert spec.source_id == "synchub:pi7:eeg0"  # stable across restarts: LabRecorder re-attaches
    assert spec.channels[3] == ("C3", "uV", "EEG")
    meta = dict(spec.synchub)
    assert meta["source_id"] == "amp-1" and meta["quality_wire"] == "csv" and "CLOCK_MONOTONIC" in meta["timestamps"]
    video = outlet_spec(StreamInfo("cam", "video", 30.0, 6, "uint8", shape=(2, 3)), "a", "cam")
    assert (video.type, video.channel_format, video.channels[5][0]) == ("VideoRaw", "int16", "ch5")
    assert outlet_spec(MARKERS, "a", "mk0").type == "Markers"


def test_stamps_are_the_corrected_times_in_seconds_and_samples_are_flat_rows():
    ref = np.array([1_234_567_890_123, 1_234_569_890_123], dtype=np.int64)
    assert lsl_stamps(ref).tolist() == [1234.567890123, 1234.569890123]
    assert lsl_stamps(ref, -1_000).tolist() == [1234.567889123, 1234.569889123]
    frames = Chunk("cam", 0, np.arange(12, dtype=np.uint8).reshape(2, 2, 3), ref, ref, ref, ref)
    assert samples_of(frames, "int16").shape == (2, 6) and samples_of(frames, "int16").flags.c_contiguous
    assert samples_of(Chunk("mk0", 0, ["a", "b"], ref, ref, ref, ref), "string") == [["a"], ["b"]]
    clock = iter([1.0, 1.0, 1.0, 1.0, 1.0])
    mono = iter(range(0, 100, 10))
    assert lsl_clock_offset_ns(lambda: next(clock), lambda: next(mono)) == NS - 5  # 1 s apart: kept
    assert lsl_clock_offset_ns(lambda: time.monotonic_ns() / NS) == 0  # one clock


def test_lsl_config_table_publishes_all_or_the_named_streams_and_names_a_typo():
    base = {"stream": [{"name": "eeg0", "type": "other", "driver": "sim", "device": "mic0"},
                       {"name": "mic", "type": "audio", "device": "mic0",
                                                                         "driver": "sim"}]}
    assert parse_config(base).lsl.wanted(["eeg0", "mic"]) == []
    assert parse_config({**base, "lsl": {"outlet": True}}).lsl.wanted(["eeg0", "mic"]) == ["eeg0", "mic"]
    assert parse_config({**base, "lsl": {"outlet": True, "streams": ["mic"]}}).lsl.wanted(["eeg0", "mic"]) == ["mic"]
    with pytest.raises(ConfigError, match=r"lsl.streams\[0\]: no stream named 'eg0' \(did you mean 'eeg0'"):
        parse_config({**base, "lsl": {"outlet": True, "streams": ["eg0"]}})
    with pytest.raises(ConfigError, match=r"lsl.outlets: unknown key"):
        parse_config({**base, "lsl": {"outlets": True}})


def _chunks(info, t0_ns, n_chunks, per, rate):
    out, k = [], 0
    for _ in range(n_chunks):
        idx = np.arange(k, k + per)
        ref = t0_ns + np.rint(idx * NS / rate).astype(np.int64) + 37  # corrected times, not on a ns grid
        data = (np.arange(info.channel_count)[None, :] + idx[:, None] * 10).astype(np.float32)
        out.append(Chunk(info.name, k, data, ref - 5_000_000, ref + 9_000_000, ref, np.full(per, 50_000), method="triggers"))
        k += per
    return out


@needs_lsl
def test_a_labrecorder_style_inlet_records_the_corrected_times_and_metadata_and_pyxdf_syncs_without_warnings(
        tmp_path, caplog):
    tag = uuid.uuid4().hex[:6]
    eeg = StreamInfo(f"eeg-{tag}", "other", 500.0, 8, "float32", tuple(f"C{i}" for i in range(8)), ("uV",) * 8)
    mk = StreamInfo(f"mk-{tag}", "marker", 0.0, 1, "string", ("event",))
    pub = LslPublisher({eeg.name: eeg, mk.name: mk}, LslOutletSettings(outlet=True), "test-agent")
    pub.open()
    try:
        found = {s.name(): s for s in pylsl.resolve_bypred(f"starts-with(name,'eeg-{tag}') or "
                                                           f"starts-with(name,'mk-{tag}')", 2, 10.0)}
        assert set(found) == {eeg.name, mk.name}
        inlets = {n: pylsl.StreamInlet(i, max_buflen=60, recover=False) for n, i in found.items()}
        for inlet in inlets.values():
            inlet.open_stream(timeout=5.0)
        desc = inlets[eeg.name].info(timeout=5.0)
        back = info_from_xml(desc.as_xml(), type("C", (), dict(name="x", type="other", nominal_rate=0.0,
                                                               channel_labels=(), channel_units=(), source_id=""))())
        assert back.channel_labels == eeg.channel_labels and back.channel_units == eeg.channel_units
        assert back.source_id == f"synchub:test-agent:{eeg.name}" and back.nominal_srate == 500.0
        assert "<manufacturer>synchub</manufacturer>" in desc.as_xml()
        t0 = time.monotonic_ns() - 2 * NS
        chunks = _chunks(eeg, t0, 10, 50, 500.0)
        for c in chunks:
            pub.push(eeg.name, c)
        mref = np.array([t0 + 123_456_789, t0 + 623_456_789], dtype=np.int64)
        pub.push(mk.name, Chunk(mk.name, 0, ["start", "stop"], mref, mref, mref, np.zeros(2, np.int64)))
        data, stamps = pull_all(inlets[eeg.name], 500)
        offset = inlets[eeg.name].time_correction(timeout=5.0)
        mdata, mstamps = pull_all(inlets[mk.name], 2)
    finally:
        pub.close()
    ref = np.concatenate([c.ref_ns for c in chunks])
    assert len(stamps) == 500 and pub.pushed[eeg.name] == 500
    assert np.abs(np.asarray(stamps) - ref / NS).max() < 1e-6  # every sample its own corrected stamp
    assert np.array_equal(np.asarray(data, dtype=np.float32), np.concatenate([c.data for c in chunks]))
    assert [d[0] for d in mdata] == ["start", "stop"] and np.allclose(mstamps, mref / NS, atol=1e-6)
    assert abs(offset) < 0.001  # one host: LSL's own clock offset is ~0

    # what LabRecorder writes: the samples with their stamps and its time_correction readings, then pyxdf
    path = tmp_path / "lab.xdf"
    now = time.monotonic_ns()
    with XdfWriter(path) as w:
        sid = w.add_stream(back)
        w.write_samples(sid, np.rint(np.asarray(stamps) * NS).astype(np.int64), np.asarray(data))
        for k in range(3):
            w.write_clock_offset(sid, now + k * 5 * NS, int(round(offset * NS)))
    pyxdf = pytest.importorskip("pyxdf", reason="pyxdf not installed (the bench extra)")
    with caplog.at_level(logging.WARNING, logger="pyxdf"):
        streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=True, dejitter_timestamps=False)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]
    assert np.abs(np.asarray(streams[0]["time_stamps"]) - (ref / NS + offset)).max() < 1e-6


class _Sender:
    """The agent's transport stand-in: what it would ship to the collector."""

    def __init__(self):
        self.samples = 0

    def send_chunk(self, chunk):
        self.samples += chunk.n

    def send_gap(self, gap):
        pass

    def send_meta(self, stream, meta):
        pass


@needs_lsl
def test_an_agent_with_lsl_outlet_true_republishes_what_it_records_with_corrected_times():
    """LSL in (an amplifier's outlet, ``driver = "lsl"``), corrected by the agent, LSL out under ``name_prefix``:
    every sample, labels kept, stamps on this host's LSL clock."""
    tag = uuid.uuid4().hex[:6]
    src_info = pylsl.StreamInfo(f"amp-{tag}", "EEG", 4, 200.0, "float32", f"amp-{tag}")
    chans = src_info.desc().append_child("channels")
    for label in ("Fz", "Cz", "Pz", "Oz"):
        chans.append_child("channel").append_child_value("label", label)
    src = pylsl.StreamOutlet(src_info)
    config = parse_config({"agent": {"name": "pi-lsl"}, "lsl": {"outlet": True, "name_prefix": "synchub-"},
                           "stream": [{"name": "eeg", "type": "other", "driver": "lsl", "lsl_name": f"amp-{tag}",
                                       "nominal_rate": 200.0, "probe_interval_s": 0.2}]})
    sender = _Sender()
    agent = Agent(config, outlet=sender, correction_delay_ms=50)
    agent.start()
    try:
        found = pylsl.resolve_byprop("name", "synchub-eeg", 1, 10.0)
        assert found, "the agent's outlet was not found"
        inlet = pylsl.StreamInlet(found[0], max_buflen=60, recover=False)
        inlet.open_stream(timeout=5.0)
        labels = [c.child_value("label") for c in _children(inlet.info(timeout=5.0).desc().child("channels"))]
        t0 = pylsl.local_clock()
        sent = []
        for k in range(200):  # 1 s of data in 20 chunks
            stamp = t0 + k / 200.0
            sent.append(stamp)
            src.push_sample([k, k + 1, k + 2, k + 3], stamp)
            if k % 10 == 9:
                time.sleep(0.05)
        data, stamps = pull_all(inlet, 200, timeout=10.0)
    finally:
        agent.stop()
    assert labels == ["Fz", "Cz", "Pz", "Oz"]
    assert len(stamps) == 200 and [d[0] for d in data] == list(range(200))
    assert sender.samples == 200 and agent.status()["lsl_pushed"] == {"eeg": 200}
    err = np.asarray(stamps) - np.asarray(sent)
    assert np.all(np.diff(stamps) > 0) and np.abs(err).max() < 0.05  # one host: LSL stamps are the truth


def _children(node):
    child = node.first_child()
    while not child.empty():
        yield child
        child = child.next_sibling()
