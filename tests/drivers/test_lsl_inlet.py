"""``driver = "lsl"`` against real pylsl outlets on loopback: metadata, timestamps, time_correction probes, an
outlet that vanishes and comes back.  Skipped (with the reason) where liblsl cannot be loaded."""

import threading
import time
import uuid

import numpy as np
import pytest

from synchub.agent.core.evidence import Probe
from synchub.agent.core.options import StreamCommon
from synchub.drivers.lsl.inlet import (
    LslError,
    LslInletDriver,
    LslSettings,
    import_pylsl,
    info_from_xml,
    local_offset,
    missed_samples,
    probe_from_correction,
)

try:
    pylsl = import_pylsl()
except Exception as exc:  # noqa: BLE001 - the reason is the skip message
    pylsl = None
    WHY = str(exc)
needs_lsl = pytest.mark.skipif(pylsl is None, reason=f"pylsl/liblsl unavailable: {WHY if pylsl is None else ''}")


class Sink:
    def __init__(self):
        self.lock = threading.Lock()
        self.chunks, self.gaps, self.items, self.problems = [], [], [], []

    def samples(self, stream, data, device_ns, host_ns):
        with self.lock:
            self.chunks.append((data, device_ns, host_ns))

    def gap(self, stream, count, cause, device_ns_from=0, device_ns_to=0, detail=""):
        with self.lock:
            self.gaps.append((count, cause, detail))

    def evidence(self, item):
        with self.lock:
            self.items.append(item)

    def problem(self, stream, reason, detail=""):
        with self.lock:
            self.problems.append((reason, detail))

    def n(self):
        with self.lock:
            return sum(len(c[1]) for c in self.chunks)


def _outlet(name, rate=200.0, n=3, fmt="float32", source_id=None):
    info = pylsl.StreamInfo(name, "EEG", n, rate, fmt, source_id or f"src-{name}")
    chans = info.desc().append_child("channels")
    for k in range(n):
        ch = chans.append_child("channel")
        ch.append_child_value("label", f"C{k}")
        ch.append_child_value("unit", "microvolts")
        ch.append_child_value("type", "EEG")
    return pylsl.StreamOutlet(info)


def _wait(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.02)
    return cond()


def test_the_lsl_clock_is_the_reference_unless_its_best_read_says_otherwise_beyond_its_round_trip():
    same = [(1_000, 1_500, 2_000), (10_000, 10_020, 10_040)]
    assert local_offset(same) == 0
    # every read descheduled between its two reference reads (a loaded machine): the best still 300 us wide, its
    # midpoint 150 us from LSL's (the same clock): not a constant error on every sample
    assert local_offset([(0, 0, 300_000), (1_000_000, 1_000_000, 1_400_000)]) == 0
    other = [(5_000_000_000, 1_000_000_000, 5_000_000_040), (6_000_000_000, 2_000_000_000, 6_000_000_400)]
    assert local_offset(other) == 4_000_000_020  # another clock: the best read's midpoint


def test_lsl_time_correction_maps_to_a_probe_bracket_and_gaps_count_missed_samples():
    p = probe_from_correction("s", offset_s=-0.25, remote_time_s=100.0, uncertainty_s=1e-4)
    assert isinstance(p, Probe) and p.device_ns == 100 * 10**9
    assert (p.host_send_ns, p.host_recv_ns) == (99_750_000_000 - 100_000, 99_750_000_000 + 100_000)
    assert missed_samples(100.0, 0, 10**9) == 99 and missed_samples(0.0, 0, 10**9) == 0
    assert missed_samples(100.0, None, 10**9) == 0
    with pytest.raises(ValueError, match="give lsl_name, lsl_type or lsl_source_id"):
        LslSettings()


def test_lsl_metadata_becomes_the_stream_s_metadata_and_the_config_wins_where_given():
    xml = """<?xml version="1.0"?><info><name>Amp</name><type>EEG</type><channel_count>2</channel_count>
    <channel_format>int16</channel_format><source_id>SN7</source_id><nominal_srate>500</nominal_srate>
    <hostname>lab</hostname><uid>u1</uid><desc><channels><channel><label>Fz</label><unit>uV</unit><type>EEG</type>
    </channel><channel><label>Cz</label><unit>uV</unit><type>EEG</type></channel></channels></desc></info>"""
    info = info_from_xml(xml, StreamCommon(name="eeg0", type="other", driver="lsl"))
    assert (info.channel_count, info.channel_format, info.nominal_srate) == (2, "int16", 500.0)
    assert info.channel_labels == ("Fz", "Cz") and info.channel_units == ("uV", "uV") and info.source_id == "SN7"
    q = info.quality_dict()
    assert q["lsl_name"] == "Amp" and q["lsl_type"] == "EEG" and q["lsl_hostname"] == "lab"
    mine = info_from_xml(xml, StreamCommon(name="eeg0", type="other", driver="lsl", channel_labels=("a", "b"),
                                           nominal_rate=499.9))
    assert mine.channel_labels == ("a", "b") and mine.nominal_srate == 499.9


@needs_lsl
def test_an_lsl_outlet_is_resolved_read_with_its_timestamps_and_gives_probes():
    name = "synchub-test-" + uuid.uuid4().hex[:8]
    out = _outlet(name)
    common = StreamCommon(name="eeg0", type="other", driver="lsl")
    drv = LslInletDriver(common, LslSettings(lsl_name=name, lsl_type="EEG", probe_interval_s=0.2))
    assert drv.info.channel_labels == ("C0", "C1", "C2") and drv.info.channel_units == ("microvolts",) * 3
    assert drv.info.nominal_srate == 200.0 and drv.info.source_id == f"src-{name}"
    sink = Sink()
    drv.start(sink)
    try:
        stamps = []
        for k in range(100):
            t = pylsl.local_clock()
            stamps.append(t)
            out.push_sample([k, 2 * k, 3 * k], t)
            time.sleep(0.002)
        assert _wait(lambda: sink.n() >= 100 and any(isinstance(i, Probe) for i in sink.items))
    finally:
        drv.stop()
    data = np.concatenate([c[0] for c in sink.chunks])
    dev = np.concatenate([c[1] for c in sink.chunks])
    host = np.concatenate([c[2] for c in sink.chunks])
    assert data[:, 1].tolist() == [2 * k for k in range(100)]
    assert np.array_equal(dev, np.rint(np.asarray(stamps) * 1e9).astype(np.int64))
    assert np.all(host >= dev)  # pulled after it was stamped, both on CLOCK_MONOTONIC
    probe = next(i for i in sink.items if isinstance(i, Probe))
    assert probe.host_send_ns <= probe.device_ns <= probe.host_recv_ns  # same host: offset ~0 inside the bracket
    assert probe.host_recv_ns - probe.host_send_ns < 20_000_000


def _outlet_returns(channels: int):
    """A 1-channel outlet read by the driver (10 samples), closed, and back under the same source id with
    ``channels`` channels once the driver has reconnected: (driver, sink, new outlet, t0).  The caller stops the
    driver."""
    name = "synchub-test-" + uuid.uuid4().hex[:8]
    sid = f"src-{name}"
    out = _outlet(name, rate=100.0, n=1, source_id=sid)
    drv = LslInletDriver(StreamCommon(name="x", type="other", driver="lsl"),
                         LslSettings(lsl_source_id=sid, reconnect_s=0.2))
    sink = Sink()
    drv.start(sink)
    t0 = pylsl.local_clock()
    for k in range(10):
        out.push_sample([k], t0 + k / 100)
    assert _wait(lambda: sink.n() >= 10)
    del out  # the outlet closes
    assert _wait(lambda: drv.disconnects == 1, 10.0)
    out = _outlet(name, rate=100.0, n=channels, source_id=sid)
    assert _wait(lambda: drv.inlet is not None and any(p[0] == "reconnect" for p in sink.problems), 10.0)
    time.sleep(0.3)
    return drv, sink, out, t0


@needs_lsl
def test_an_outlet_that_vanishes_is_a_counted_disconnect_and_its_return_is_followed():
    drv, sink, out, t0 = _outlet_returns(1)
    try:
        for k in range(50, 60):
            out.push_sample([k], t0 + k / 100)
        assert _wait(lambda: sink.n() >= 20, 10.0)
    finally:
        drv.stop()
    values = np.concatenate([np.asarray(c[0]).ravel() for c in sink.chunks]).tolist()
    assert values == list(range(10)) + list(range(50, 60))
    assert [g[:2] for g in sink.gaps] == [(40, "disconnect")]
    assert [p[0] for p in sink.problems] == ["disconnect", "reconnect"] and drv.health()["disconnects"] == 1


@needs_lsl
def test_an_outlet_that_returns_with_another_channel_count_is_a_malformed_gap_not_a_dead_stream():
    """The same source id back with 2 channels instead of 1: its samples cannot be this stream's; they are recorded
    as a ``malformed`` gap and the driver thread keeps running (it used to die on the reshape, silently)."""
    drv, sink, out, t0 = _outlet_returns(2)
    try:
        for k in range(20, 30):
            out.push_sample([k, k], t0 + k / 100)
        assert _wait(lambda: sum(g[0] for g in sink.gaps if g[1] == "malformed") >= 10, 10.0), sink.gaps
        assert drv._thread.is_alive()
    finally:
        drv.stop()
    assert sink.n() == 10


@needs_lsl
def test_no_matching_outlet_is_one_clear_error():
    with pytest.raises(LslError, match=r"no LSL stream matching name='nothing-here-\w+' found within 0.3 s"):
        LslInletDriver(StreamCommon(name="x", type="other", driver="lsl"),
                       LslSettings(lsl_name="nothing-here-" + uuid.uuid4().hex[:6], resolve_timeout_s=0.3))


@needs_lsl
def test_pylsl_without_its_liblsl_is_one_line_naming_liblsl(tmp_path):
    """pylsl's own loader on a machine without liblsl (a Pi: pip installs the wheel without the library)."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    src = Path(pylsl.__file__).parent
    shutil.copytree(src, tmp_path / "pylsl", ignore=shutil.ignore_patterns("liblsl*", "*.dll", "*.dylib"))
    code = ("from synchub.drivers.lsl.inlet import import_pylsl, LslError\n"
            "try:\n    import_pylsl()\nexcept LslError as exc:\n    print('ERR', exc)\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PYLSL_LIB="")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    line = out.stdout.strip()
    assert line.startswith("ERR pylsl is installed but liblsl cannot be loaded") and "PYLSL_LIB" in line, out
    assert "\n" not in line
