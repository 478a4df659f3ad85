"""The agent's live aligners weigh their estimates by the fitted sigma table (the one the benchmark applies)."""

from dataclasses import replace
from importlib import resources

from synchub.agent.align.calibration import REAL_TABLE, SIM_TABLE, SigmaTable
from synchub.agent.config.loader import load_config
from synchub.agent.pipeline import runtime
from synchub.agent.pipeline.runtime import Agent, sigma_table


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


def test_a_real_rig_gets_the_real_corpus_table_and_a_missing_one_is_no_error(monkeypatch, tmp_path, caplog):
    assert sigma_table(False) == SigmaTable.load(REAL_TABLE)
    assert sigma_table(False).source["split"] == "calibration"
    monkeypatch.setattr(runtime, "REAL_TABLE", tmp_path / "none.json")
    assert sigma_table(False) is None
    assert "no sigma table" in caplog.text
