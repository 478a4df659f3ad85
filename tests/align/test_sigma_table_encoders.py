"""A sigma table records the encoders it was fitted with; the agent and the benches say so when the encoders
loaded now are others (e.g. retrained on a rig, ``$SYNCHUB_MODEL_DIR``), whose coverage the table does not hold."""

import logging
import shutil

import numpy as np
import pytest

from synchub.agent.align.calibration import REAL_TABLE, SIM_TABLE, SigmaTable
from synchub.agent.align.window import sigma_table
from synchub.bench.align.calibrate import checked, fit_pairs
from synchub.models.runner import MODEL_DIR, MODEL_DIR_ENV, fingerprints


@pytest.mark.parametrize("path", [REAL_TABLE, SIM_TABLE], ids=["real", "sim"])
def test_the_shipped_tables_were_fitted_with_the_shipped_encoders(path):
    """Shipping other encoders without refitting the tables fails here."""
    table = SigmaTable.load(path)
    assert set(table.source["encoders"]) == table.modalities()
    assert table.stale(fingerprints(table.modalities(), MODEL_DIR)) == []


@pytest.fixture
def other_video(tmp_path, monkeypatch):
    """The shipped encoders, the video one replaced by a different file, as $SYNCHUB_MODEL_DIR."""
    for f in MODEL_DIR.glob("*.onnx"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "video.onnx").write_bytes((MODEL_DIR / "video.onnx").read_bytes() + b"\0")
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("simulated", [True, False])
def test_the_agent_warns_once_when_its_table_was_fitted_with_other_encoders(other_video, caplog, simulated):
    with caplog.at_level(logging.WARNING, logger="synchub.agent"):
        table = sigma_table(simulated)
    assert table is not None  # still used: the table is the best there is, and the log says what it is worth
    lines = [r.getMessage() for r in caplog.records if "fitted with other" in r.getMessage()]
    assert len(lines) == 1 and "video encoders" in lines[0] and "\n" not in lines[0]


def test_the_agent_is_quiet_when_the_encoders_are_the_fitted_ones(tmp_path, monkeypatch, caplog):
    for f in MODEL_DIR.glob("*.onnx"):
        shutil.copy(f, tmp_path / f.name)
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="synchub.agent"):
        assert sigma_table(False) is not None
    assert not [r for r in caplog.records if "fitted with other" in r.getMessage()]


def test_the_benches_warn_when_judging_other_encoders_with_the_shipped_table(other_video):
    said = []
    table = SigmaTable.load(SIM_TABLE)
    assert checked(table, said.append) is table
    assert len(said) == 1 and "video encoders" in said[0]


def test_a_fit_records_the_encoders_it_was_fitted_with(other_video):
    rng = np.random.default_rng(0)
    sig = rng.uniform(1e6, 2e6, 500)
    doc = fit_pairs({("audio", "video"): (rng.normal(0, 2 * sig), sig)}, {"split": "test"})
    assert doc["encoders"] == fingerprints({"audio", "video"})
    assert doc["encoders"]["video"] != fingerprints({"video"}, MODEL_DIR)["video"]  # the ones loaded: $SYNCHUB_MODEL_DIR
    said = []
    fitted = SigmaTable(tuple((p["pair"][0], p["pair"][1], p["scale"], p["floor_ms"]) for p in doc["pairs"]), doc)
    checked(fitted, said.append)
    assert said == []
