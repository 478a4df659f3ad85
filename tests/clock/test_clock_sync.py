"""StreamClocks: routing of evidence, correction of chunks, PPS -> UTC, barcode lines, offline rerun."""

from __future__ import annotations

import numpy as np
import pytest

from synchub.agent.clock.barcode import encode_barcode
from synchub.agent.clock.layer import StreamClocks
from synchub.agent.clock.replay import replay
from synchub.agent.clock.settings import ClockLayerConfig, ClockSettings, StreamClockOptions
from synchub.agent.core.evidence import OffsetEstimate, Probe, TriggerEdge
from synchub.agent.core.options import StreamCommon, TriggerSettings
from synchub.agent.core.settings import ConfigError
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.core.units import NS
from synchub.drivers.sim.clocks import ClockSpec, DeviceClock


def _rig(dur=120, seed=1, spec=None, edges=None, width_ns=10_000_000):
    """A 100 Hz stream on a drifting device clock and a trigger line both see (``edges``, reference ns; default
    one per second), each edge reported once its pulse of ``width_ns`` ended: (clock, true times, the shipper's
    items in arrival order)."""
    spec = spec or ClockSpec(offset_s=500.0, drift_ppm=80.0, jitter_us=2.0, latency_min_ms=1.0, latency_max_ms=8.0)
    clk = DeviceClock(spec, dur, seed)
    true, dev, seg = clk.regular_samples(100.0)
    host = clk.arrivals(true)
    te = (np.arange(0.5, dur, 1.0) * NS).astype(np.int64) if edges is None else edges
    d_e = clk.to_device(te, jitter=True)
    rep = clk.arrivals(te + width_ns)
    items = []  # (host time, kind, payload) as the shipper sees them
    for a in range(0, len(true), 10):
        items.append((int(host[min(a + 9, len(host) - 1)]), "chunk",
                      Chunk("imu0", a, np.zeros((len(dev[a:a + 10]), 1), np.float32), dev[a:a + 10], host[a:a + 10])))
    for t, d, h in zip(te, d_e, rep, strict=True):
        items.append((int(t) + 50_000, "ev", TriggerEdge("sync", int(t), "ref", 1, width_ns, -1, int(t) + 50_000)))
        items.append((int(h), "ev", TriggerEdge("imu0", int(d), "device", 1, width_ns, -1, int(h))))
    items.sort(key=lambda x: x[0])
    return clk, true, items


def _clocks(method="auto", period_s=1.0):
    info = StreamInfo("imu0", "imu", 100.0, 1)
    common = StreamCommon(name="imu0", type="imu", driver="serial", trigger="sync", method=method)
    trig = TriggerSettings(name="sync", backend="sim", period_s=period_s)
    return StreamClocks({"imu0": info}, ClockLayerConfig.of(ClockSettings(), (trig,), (common,)))


def _ship(clocks, items):
    """Feed the shipper's items to ``clocks`` in order; the corrected chunks."""
    out = []
    for _, kind, x in items:
        if kind == "ev":
            clocks.feed(x)
        else:
            clocks.feed_arrivals(x.stream, x.device_ns, x.host_ns)
            out.append(clocks.correct(x))
    return out


def test_live_correction_from_trigger_edges():
    clk, true, items = _rig()
    clocks = _clocks()
    out = _ship(clocks, items)
    assert out[0].method == "arrival" and out[-1].method == "triggers"
    c = out[-1]
    assert c.device_ns is out[-1].device_ns and c.segment.dtype == np.int32
    late = [c for c in out if c.seq > 2000]
    ref = np.concatenate([c.ref_ns for c in late])
    tr = true[late[0].seq : late[-1].seq_end]
    assert np.max(np.abs(ref - tr)) < 20_000  # us-level once the edges are matched
    st = clocks.state()["imu0"]
    assert st["method"] == "triggers" and st["matcher"]["matched"] >= 115 and st["trigger"] == "sync"


def test_offline_rerun_is_as_good_or_better():
    clk, true, items = _rig(seed=2)
    chunks = [x for _, k, x in items if k == "chunk"]
    ev = [x for _, k, x in items if k == "ev"]
    fixed = replay(_clocks(), chunks, ev)
    ref = np.concatenate([c.ref_ns for c in fixed])
    err = ref - true
    assert np.sqrt(np.mean(err.astype(float) ** 2)) < 2_000
    assert all(c.method == "triggers" for c in fixed[50:])
    assert all(c.ref_ns is not None and c.host_ns is chunks[i].host_ns for i, c in enumerate(fixed))


def test_probes_offsets_and_routing_counts():
    clocks = StreamClocks({"a": StreamInfo("a", "imu", 10.0, 1), "b": StreamInfo("b", "imu", 10.0, 1)})
    for k in range(10):
        clocks.feed(Probe("a", k * NS, k * NS + 1_000_000 + 100, k * NS + 200))
        clocks.feed(OffsetEstimate("b", k * NS, 3_000_000, 100_000, "neural"))
    clocks.feed(Probe("zzz", 0, 0, 1))
    clocks.feed(TriggerEdge("a", 5, "device"))  # a stream without a trigger line
    clocks.feed(TriggerEdge("nope", 5, "ref"))
    clocks.feed("garbage")
    assert clocks.counts == {"probe_unrouted": 1, "edge_unrouted": 1, "ref_edge_unrouted": 1, "unknown_evidence": 1}
    st = clocks.state()
    assert st["a"]["method"] == "probes" and st["b"]["method"] == "neural"
    c = clocks.correct(Chunk("b", 0, np.zeros((1, 1)), [5 * NS], [5 * NS + 4_000_000]))
    assert c.method == "neural" and abs(int(c.ref_ns[0]) - (5 * NS + 3_000_000)) < 1_000
    u = clocks.correct(Chunk("other", 0, np.zeros((1, 1)), [1], [2]))
    assert u.method == "identity" and u.ref_ns[0] == 2 and clocks.counts["correct_unknown_stream"] == 1


def test_trigger_line_recorded_as_stream_is_reference_time():
    clocks = StreamClocks({}, ClockLayerConfig(triggers=(TriggerSettings(name="sync"),)))
    c = clocks.correct(Chunk("sync", 0, np.ones((2, 1), np.int8), [10, 20], [30, 40]))
    assert list(c.ref_ns) == [10, 20] and c.method == "identity"


def test_pps_numbers_seconds_and_maps_to_utc():
    clocks = StreamClocks({}, ClockLayerConfig(triggers=(TriggerSettings(name="gps", role="pps", backend="pps"),)))
    mono0, utc0 = 5_000 * NS, 1_800_000_000 * NS + 250_000_000  # host clock 250 ms off UTC's second grid
    clocks.feed(TriggerEdge("gps", mono0 + 100, "ref"))
    assert clocks.counts["pps_unnumbered"] == 1  # no coarse UTC yet
    clocks.feed_utc(mono0, utc0, 20_000_000, "system")
    # PPS edges at UTC whole seconds: on the monotonic clock they sit 250 ms before each whole mono second
    for k in range(1, 30):
        clocks.feed(TriggerEdge("gps", mono0 + k * NS + 750_000_000 + (k % 3) * 500, "ref"))
    utc, unc = clocks.to_utc([mono0 + 10 * NS + 750_000_000])
    assert abs(int(utc[0]) - (utc0 + 10 * NS + 750_000_000)) < 5_000 and int(unc[0]) < 5_000
    assert int(utc[0]) % NS < 5_000 or int(utc[0]) % NS > NS - 5_000  # lands on a whole second
    assert clocks.utc_state()["source"] == "pps"


def test_barcode_line_pairs_by_value():
    T = 30_000_000
    spec = ClockSpec(offset_s=40.0, drift_ppm=200.0)
    clk = DeviceClock(spec, 60, 3)
    line = TriggerSettings(name="codes", role="barcode", period_s=2.0, backend="sim")
    clocks = StreamClocks({"cam": StreamInfo("cam", "video", 30.0, 1)},
                          ClockLayerConfig(triggers=(line,), streams={"cam": StreamClockOptions(trigger="codes")}))
    for n in range(25):
        t0 = NS + n * 2 * NS
        for t, lvl in encode_barcode(n, t0, T):
            clocks.feed(TriggerEdge("codes", t, "ref", 1 if lvl else -1))
            d = int(clk.to_device(np.array([t]))[0])
            clocks.feed(TriggerEdge("cam", d, "device", 1 if lvl else -1))
    st = clocks.state()["cam"]
    assert st["method"] == "triggers" and st["matcher"]["code_matched"] >= 23
    dev = clk.to_device(np.array([30 * NS]))
    ref, _, _ = clocks.clocks["cam"].model.map(dev)
    assert abs(int(ref[0]) - 30 * NS) < 2_000


def test_sync_box_pulses_relayed_to_streams_that_name_the_box():
    """The box stamps the pulses it emits on its clock (calibrated by probes); a device sees the same pulses on its
    own clock.  Its edges are matched to the box's pulses mapped onto the reference clock."""
    box = DeviceClock(ClockSpec(offset_s=3.0, drift_ppm=-20.0), 120, 11)
    imu = DeviceClock(ClockSpec(offset_s=900.0, drift_ppm=70.0, jitter_us=2.0), 120, 12)
    rng = np.random.default_rng(5)
    clocks = StreamClocks({"box": StreamInfo("box", "trigger", 0.0, 3), "imu0": StreamInfo("imu0", "imu", 100.0, 1)},
                          ClockLayerConfig(streams={"imu0": StreamClockOptions(trigger="box")}))
    for k in range(1, 119):
        t = k * NS
        s = t - 300_000
        o, b = rng.uniform(40_000, 60_000, 2)
        clocks.feed(Probe("box", s, int(box.to_device(np.array([s + int(o)]))[0]), s + int(o + b)))
        clocks.feed_arrivals("imu0", imu.to_device(np.array([t - 5_000_000])), np.array([t - 3_000_000]))
        pulse = t + 500_000_000
        clocks.feed(TriggerEdge("box", int(box.to_device(np.array([pulse]))[0]), "device", 1, 0, k, pulse + 1_000_000))
        clocks.feed(TriggerEdge("imu0", int(imu.to_device(np.array([pulse]), jitter=True)[0]), "device", 1, 0, -1,
                                pulse + 4_000_000))
    st = clocks.state()
    assert st["box"]["method"] == "probes" and st["imu0"]["method"] == "triggers"
    assert st["imu0"]["matcher"]["matched"] >= 110
    d = imu.to_device(np.array([60 * NS]))
    c = clocks.correct(Chunk("imu0", 0, np.zeros((1, 1)), d, [60 * NS + 4_000_000]))
    assert abs(int(c.ref_ns[0]) - 60 * NS) < 60_000  # a probe-calibrated box (50 us links): tens of us


def test_gpio_streams_are_on_the_reference_clock():
    info = StreamInfo("line5", "trigger", 0.0, 1, "int8", quality=(("clock", "reference"),))
    clocks = StreamClocks({"line5": info, "imu0": StreamInfo("imu0", "imu", 10.0, 1)},
                          ClockLayerConfig(streams={"imu0": StreamClockOptions(trigger="line5")}))
    assert "line5" not in clocks.clocks and clocks.clocks["imu0"].matcher is not None
    c = clocks.correct(Chunk("line5", 0, np.ones((1, 1), np.int8), [123], [456]))
    assert c.ref_ns[0] == 123 and c.unc_ns[0] == 0


def test_the_clock_config_round_trips_and_reads_records_of_other_versions():
    cfg = ClockLayerConfig.of(ClockSettings(window_s=60.0, method="probes"),
                              (TriggerSettings(name="sync", backend="sim", period_s=0.5),),
                              (StreamCommon(name="imu0", type="imu", driver="serial", trigger="sync"),
                               StreamCommon(name="cam0", type="video", driver="sim", align_to="imu0",
                                            correction_delay_ms=10_000.0),
                               StreamCommon(name="mic0", type="audio", driver="sim", correction_delay_ms=100.0)),
                              correction_delay_ms=300.0)
    d = cfg.to_dict()
    assert d["kind"] == "clock_config" and ClockLayerConfig.from_dict(d) == cfg
    assert cfg.delay_ns == 300_000_000 and cfg.default_method == "probes"
    assert cfg.stream_delays_ns() == {"cam0": 10_000_000_000}  # only the ones held longer than the agent's delay
    # an older record: keys missing (defaults), an older version's key this one does not know (ignored)
    old = ClockLayerConfig.from_dict({"clock": {"window_s": 30.0, "retired_key": 1}, "triggers": [{"name": "s"}]})
    assert old.clock == ClockSettings(window_s=30.0) and old.triggers == (TriggerSettings(name="s"),)
    assert old.correction_delay_ms is None and old.delay_ns == 1_500_000_000  # a 1 s trigger period + 0.5 s
    assert old.options("any") == StreamClockOptions() and old.stream_delays_ns() == {}
    with pytest.raises(ConfigError, match=r"clock_config.triggers\[0\].role"):
        ClockLayerConfig.from_dict({"triggers": [{"name": "s", "role": "nonsense"}]})


@pytest.mark.parametrize("period_s", [0.01, 0.0])
def test_a_fast_or_aperiodic_line_pairs_through_the_clock_layer(period_s):
    """A 100 Hz strobe, or events 3-12 ms apart on an aperiodic line (``period_s = 0``): closer than the stream
    model's prior can tell apart (before 2026-11-28 neither ever paired: the stream stayed on its arrival times)."""
    dur, rng = 30, np.random.default_rng(3)
    spec = ClockSpec(offset_s=500.0, drift_ppm=80.0, jitter_us=2.0, latency_min_ms=4.0, latency_max_ms=12.0)
    gaps = np.full(3000, period_s * NS) if period_s else rng.uniform(3e6, 12e6, 4000)
    te = (NS // 2 + np.cumsum(gaps)).astype(np.int64)
    te = te[te < (dur - 1) * NS]
    _, true, items = _rig(dur, 3, spec, edges=te, width_ns=2_000_000)
    clocks = _clocks(period_s=period_s)
    out = _ship(clocks, items)
    late = [c for c in out if c.seq > 1000]
    err = np.concatenate([c.ref_ns for c in late]) - true[late[0].seq : late[-1].seq_end]
    st = clocks.state()["imu0"]
    assert st["method"] == "triggers" and st["matcher"]["lock"] == "causal"
    assert st["matcher"]["matched"] >= 0.95 * len(te) and np.max(np.abs(err)) < 20_000
