"""A recording made before the architecture change still reads and aligns to the same numbers (tests/data/legacy-rig)."""

from __future__ import annotations

import numpy as np
import pytest

from synchub.agent.cli.align import clock_inputs
from synchub.agent.clock.replay import correct_recording
from synchub.agent.formats.mcap_read import read_raw


@pytest.mark.parametrize("smooth", [True, False], ids=["align", "live"])
def test_an_older_recording_aligns_as_it_did(smooth, legacy_recording):
    path, expected_file = legacy_recording
    infos, config, evidence, chunks = clock_inputs(read_raw(path))
    expected = np.load(expected_file)
    corrected, clocks = correct_recording(infos, config, evidence, chunks, smooth=smooth)
    tag = "align" if smooth else "live"
    for name in sorted(infos):
        mine = sorted((c for c in corrected if c.stream == name), key=lambda c: c.seq)
        assert np.array_equal(np.concatenate([c.ref_ns for c in mine]), expected[f"{tag}_{name}_ref_ns"]), name
        assert np.array_equal(np.concatenate([c.unc_ns for c in mine]), expected[f"{tag}_{name}_unc_ns"]), name
        assert [c.method for c in mine] == expected[f"{tag}_{name}_method"].tolist(), name
        if f"{tag}_{name}_segment" in expected:
            assert np.array_equal(np.concatenate([c.segment for c in mine]), expected[f"{tag}_{name}_segment"])
    # the driver-reported reset and the system clock's UTC sample of the old forms reached the clock layer
    assert clocks.state()["imu0"]["segments"] == 2 and clocks.utc_state()["source"] == "system"


def test_the_older_clock_config_record_reads_with_every_key(legacy_recording):
    _, config, _, _ = clock_inputs(read_raw(legacy_recording[0]))
    assert config.clock.utc == "system" and config.correction_delay_ms == 1500.0
    assert [t.name for t in config.triggers] == ["sync"] and config.triggers[0].backend == "sim"
    assert config.streams["imu0"].trigger == "sync" and config.streams["tlm0"].trigger == ""
