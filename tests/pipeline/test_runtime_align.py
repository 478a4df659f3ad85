"""The agent's live aligners weigh their estimates by the fitted sigma table (the one the benchmark applies)."""

from dataclasses import replace
from importlib import resources

from synchub.agent.align import window
from synchub.agent.align.aligner import AlignerSettings
from synchub.agent.align.calibration import (
    REAL_TABLE,
    REAL_WINDOW_FLOOR_MS,
    SIM_TABLE,
    SigmaTable,
    window_scales,
)
from synchub.agent.align.tracker import calibrated_settings
from synchub.agent.align.window import sigma_table
from synchub.agent.config.loader import load_config
from synchub.agent.pipeline.runtime import Agent


class Outlet:
    def send_chunk(self, chunk): ...

    def send_gap(self, gap): ...

    def send_meta(self, stream, meta): ...


def test_the_simulated_rigs_aligners_carry_the_simulators_table():
    with resources.as_file(resources.files("synchub.examples").joinpath("sim-rig.toml")) as path:
        config = load_config(path)
    config = replace(config, sim=replace(config.sim, duration_s=30.0), agent=replace(config.agent, fusion=False))
    agent = Agent(config, outlet=Outlet())
    tables = {t.inner.tgt_stream: t.inner.table for t in agent.trackers}
    assert set(tables) == {"mic0", "cam0"}
    sim = SigmaTable.load(SIM_TABLE)
    for t in tables.values():
        assert t == sim
    assert sim.of("imu", "audio") != (1.0, 0.0)  # the pair the demo's microphone is aligned by has an entry
    # the windows are weighed by the table's window scales too (the output scaling was fitted with them in place)
    mic = next(t.inner for t in agent.trackers if t.inner.tgt_stream == "mic0")
    ks = window_scales(sim.windows, "imu", "audio")
    assert ks and mic.win.s.neural_sigma_k == ks["neural"] and mic.win.s.classical_sigma_k == ks["classical"]
    assert mic.win.s.pair_sigma_floor_ms == ()  # the real corpus's window floors are not the simulator's


def test_calibrated_settings_go_with_their_table():
    real, sim = SigmaTable.load(REAL_TABLE), SigmaTable.load(SIM_TABLE)
    assert calibrated_settings(None, False) == AlignerSettings()  # no table: the aligner's own sigmas
    s = calibrated_settings(real, simulated=False)
    assert s.window_sigma_scales == real.windows and s.pair_sigma_floor_ms == REAL_WINDOW_FLOOR_MS
    s = calibrated_settings(sim, simulated=True, markers=())
    assert s.window_sigma_scales == sim.windows and s.pair_sigma_floor_ms == () and s.markers == ()


def test_a_real_rig_gets_the_real_corpus_table_and_a_missing_one_is_no_error(monkeypatch, tmp_path, caplog):
    assert sigma_table(False) == SigmaTable.load(REAL_TABLE)
    assert sigma_table(False).source["split"] == "calibration"
    monkeypatch.setattr(window, "REAL_TABLE", tmp_path / "none.json")
    assert sigma_table(False) is None
    assert "no sigma table" in caplog.text
