"""The latency calibration at the agent's edges: a trigger-wired session measures its aligner against the final
trigger path of a real clock model and stores the latency; a later unwired session loads it and its clock model's
error shrinks by it; bad files are one logged line; the agent wires it in and shows it."""

import logging
import time
from dataclasses import replace
from importlib import resources
from types import SimpleNamespace

import numpy as np

from synchub.agent.align.latency import Latency, LatencyStore, PairKey
from synchub.agent.clock.fallback import TriggerFallback, default_stale_ns
from synchub.agent.clock.model import ClockModel
from synchub.agent.config.loader import load_config
from synchub.agent.core.evidence import OffsetEstimate
from synchub.agent.core.units import now_ns
from synchub.agent.pipeline.latency_io import (
    HELD_MAX,
    SessionLatency,
    calibration_path,
    load_store,
    save_store,
)
from synchub.agent.pipeline.monitor import Monitor
from synchub.agent.pipeline.runtime import Agent
from synchub.agent.pipeline.status_view import table

KEY = PairKey("cam0", "video", "imu0", "imu")
LATENCY_NS = 37_000_000  # the camera's frames sit this late: the aligner cannot see it


def truth(dev):
    return np.asarray(dev, np.int64) + 2_000_000_000 + (np.asarray(dev, np.float64) * 30e-6).astype(np.int64)


def aligner_estimates(rng, n=40, hop_s=4):
    out = []
    for i in range(n):
        d = (i + 1) * hop_s * 10**9
        off = int(truth([d])[0]) - d + LATENCY_NS + int(rng.normal(0, 2e6))
        if i % 9 == 4:
            off += 350_000_000  # a window that locked onto a look-alike peak
        out.append(OffsetEstimate("cam0", d, off, 3_000_000, "hybrid"))
    return out


def session(path, wired, rng):
    """One session: the aligner's estimates pass the calibration on their way into the stream's clock model (with
    the sync pulses' edge pairs too when wired); returns the calibration and the model."""
    cal = SessionLatency(path, {"cam0": (KEY, wired)}, session="wired" if wired else "unwired")
    model = ClockModel("cam0", nominal_period_ns=33_333_333)
    if wired:
        model.fallback = TriggerFallback(default_stale_ns(10**9))  # as StreamClocks gives a wired stream
        dev = np.arange(0, 170 * 10**9, 10**9, dtype=np.int64)
        model.add_edges(dev, truth(dev) + rng.normal(0, 5e3, len(dev)).astype(np.int64), 5e3)
    for est in aligner_estimates(rng):
        out = cal(est)
        assert out == est or not wired  # wired: nothing stored yet, passed on as they came (and kept to measure)
        model.add_offset(out)  # a wired stream's model only measures them: its trigger is fresh throughout
    return cal, model


def mapped_error_ms(model):
    d = np.arange(20, 150, 10, dtype=np.int64) * 10**9
    ref, _, _ = model.map(d)
    return float(np.median(ref - truth(d))) / 1e6


def test_a_wired_session_stores_the_latency_and_a_later_unwired_one_is_corrected_by_it(tmp_path):
    rng = np.random.default_rng(7)
    path = tmp_path / "state" / "latency.json"
    wired, wmodel = session(path, True, rng)
    assert wired.applied == {}  # a wired stream is measured, never corrected
    measured = wired.finish(SimpleNamespace(clocks={"cam0": SimpleNamespace(model=wmodel)}))
    assert abs(measured["cam0"]["latency_ns"] - LATENCY_NS) < 1_500_000 and measured["cam0"]["rejected"] >= 4
    stored = load_store(path).get(KEY)
    assert stored.latency_ns == measured["cam0"]["latency_ns"] and stored.session == "wired" and stored.measured_utc
    assert [p.name for p in path.parent.iterdir()] == ["latency.json"]  # atomic: no temporary file left

    before = mapped_error_ms(session(tmp_path / "none.json", False, rng)[1])  # no calibration stored
    cal, model = session(path, False, rng)
    after = mapped_error_ms(model)
    assert cal.applied["cam0"] == stored and cal.describe()["applied"]["cam0"]["latency_ns"] == stored.latency_ns
    print(f"unwired session error: {before:.2f} ms without, {after:.2f} ms with the stored latency")
    assert abs(before - LATENCY_NS / 1e6) < 2.0  # the aligner alone: the latency late
    assert abs(after) < 2.0 and abs(before) - abs(after) > 0.9 * LATENCY_NS / 1e6


def test_too_few_windows_store_nothing(tmp_path):
    path = tmp_path / "latency.json"
    cal = SessionLatency(path, {"cam0": (KEY, True)})
    model = ClockModel("cam0")
    dev = np.arange(0, 20 * 10**9, 10**9, dtype=np.int64)
    model.add_edges(dev, truth(dev), 5e3)
    for est in aligner_estimates(np.random.default_rng(1), n=3):
        assert cal(est) == est
    out = cal.finish(SimpleNamespace(clocks={"cam0": SimpleNamespace(model=model)}))
    assert "too few windows" in out["cam0"]["reason"] and not path.exists()


def test_bad_files_are_one_logged_line_and_ignored(tmp_path, caplog):
    path = tmp_path / "latency.json"
    good = LatencyStore({KEY: Latency(LATENCY_NS, 500_000, 30)})
    save_store(path, good)
    assert load_store(path).entries == good.entries
    assert load_store(tmp_path / "missing.json").entries == {} and not caplog.text
    for text in (good.to_text()[:40], '{"format": "x"}', "\x00\x01binary"):
        path.write_text(text)
        caplog.clear()
        with caplog.at_level(logging.WARNING, "synchub.agent"):
            cal = SessionLatency(path, {"cam0": (KEY, False)})
        assert cal.applied == {} and len(caplog.records) == 1 and "ignored" in caplog.text
        assert "Traceback" not in caplog.text
    path.write_bytes(b"\xff\xfe\xfa")
    assert load_store(path).entries == {}


def test_the_file_lives_in_the_state_directory_unless_configured(tmp_path):
    agent = SimpleNamespace(name="rig/a", calibration_file="")
    assert calibration_path(agent, {"STATE_DIRECTORY": "/var/lib/synchub:/x"}) == \
        __import__("pathlib").Path("/var/lib/synchub/latency.json")
    p = calibration_path(agent, {"XDG_STATE_HOME": str(tmp_path)})
    assert p.parent == tmp_path / "synchub" / "latency" and "/" not in p.name
    assert calibration_path(SimpleNamespace(name="a", calibration_file="/etc/c.json"), {}) == \
        __import__("pathlib").Path("/etc/c.json")


def sim_config(calibration_file, wired=""):
    """The example simulated rig, short, without fusion; the stream ``wired`` also on the sync trigger."""
    with resources.as_file(resources.files("synchub.examples").joinpath("sim-rig.toml")) as p:
        config = load_config(p)
    streams = [replace(s, common=replace(s.common, trigger="sync")) if s.name == wired else s for s in config.streams]
    return replace(config, streams=streams, sim=replace(config.sim, duration_s=30.0),
                   agent=replace(config.agent, fusion=False, calibration_file=str(calibration_file)))


class Outlet:
    def __init__(self):
        self.meta = []

    def send_chunk(self, chunk): ...

    def send_gap(self, gap): ...

    def send_meta(self, stream, meta):
        self.meta.append((stream, meta))


def test_the_agent_applies_the_stored_latency_to_unwired_streams_and_shows_it(tmp_path):
    path = tmp_path / "latency.json"
    mic = PairKey("mic0", "audio", "imu0", "imu")
    save_store(path, LatencyStore({mic: Latency(4_000_000, 200_000, 40, session="s1")}))
    config = sim_config(path)
    agent = Agent(config, outlet=Outlet())
    assert set(agent.latency.pairs) == {"mic0", "cam0"} and agent.latency.measuring == set()
    assert agent.latency.applied == {"mic0": load_store(path).get(mic)}  # cam0: nothing stored for its pair
    shown = agent.status()["latency"]
    assert shown["file"] == str(path) and shown["applied"]["mic0"]["latency_ns"] == 4_000_000
    est = OffsetEstimate("mic0", 10**9, 50_000_000, 1_000_000, "hybrid")
    assert agent.latency(est).offset_ns == 46_000_000
    assert agent.latency(replace(est, stream="cam0")) == replace(est, stream="cam0")
    st = Monitor(agent).snapshot(now_ns())
    assert st.extra["latency"] == ["mic0: aligner corrected by a stored latency of 4.00 +- 0.20 ms (40 windows, "
                                   "session s1)"]
    assert "latency mic0: aligner corrected by a stored latency of 4.00" in table(st)


def test_a_trigger_wired_aligned_stream_is_measured_and_its_estimates_go_to_its_fallback(tmp_path):
    config = sim_config(tmp_path / "c.json", wired="cam0")
    agent = Agent(config, outlet=Outlet())
    assert agent.latency.measuring == {"cam0"} and agent.latency.applied == {}
    est = OffsetEstimate("cam0", 10**9, 5, 1)
    assert agent.latency(est) == est and list(agent.latency.held) == [est]
    assert agent.status()["latency"]["measuring"] == ["cam0"]
    assert agent.clocks.clocks["cam0"].model.fallback.stale_ns == 5 * 10**9  # 5 periods of the 1 s sync line
    assert agent.clocks.clocks["mic0"].model.fallback is None


def test_a_wired_streams_stored_latency_is_its_fallbacks_prior(tmp_path):
    path = tmp_path / "latency.json"
    cam = PairKey("cam0", "video", "imu0", "imu")
    save_store(path, LatencyStore({cam: Latency(LATENCY_NS, 400_000, 30, session="s1")}))
    agent = Agent(sim_config(path, wired="cam0"), outlet=Outlet())
    est = OffsetEstimate("cam0", 10**9, 50_000_000, 2_000_000, "hybrid", shared_ns=300_000)
    assert agent.latency(est) == est and list(agent.latency.held) == [est]  # measured at stop as it came
    assert agent.latency.applied == {} and agent.latency.describe()["fallback"]["cam0"]["latency_ns"] == LATENCY_NS
    assert agent.clocks.clocks["cam0"].model.fallback.prior == (LATENCY_NS, 400_000)
    assert "corrected by a stored 37.00 ms" in agent.latency.summary()[0]


def test_a_running_agent_records_the_calibration_at_start_and_what_it_measured_at_stop(tmp_path):
    config = sim_config(tmp_path / "c.json", wired="cam0")
    outlet = Outlet()
    agent = Agent(config, outlet=outlet)
    agent.start()
    try:
        time.sleep(1.0)
    finally:
        agent.stop()
    recorded = [m for s, m in outlet.meta if s == "_latency"]
    assert len(recorded) == 2 and recorded[0]["kind"] == "latency_calibration"
    assert recorded[0]["measuring"] == ["cam0"] and recorded[0]["measured"] == {}
    assert "too few windows" in recorded[1]["measured"]["cam0"]["reason"]  # 1 s: no window yet, nothing stored
    assert not (tmp_path / "c.json").exists()


def test_a_long_wired_session_holds_a_bounded_number_of_estimates(tmp_path):
    """Estimates withheld for the stop's measurement do not grow with the session (weeks in the field)."""
    sl = SessionLatency(tmp_path / "lat.json", {"cam0": (PairKey("cam0", "video", "imu0", "imu"), True)})
    for i in range(3 * HELD_MAX):
        sl(OffsetEstimate("cam0", i * 4 * 10**9, 5, 1))
    assert len(sl.held) == HELD_MAX and sl.held[-1].device_ns == (3 * HELD_MAX - 1) * 4 * 10**9
