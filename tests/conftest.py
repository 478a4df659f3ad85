"""Shared fixtures.  tests/ mirrors the packages (core, clock, align, pipeline, transport, collector, formats, config,
cli, deploy, drivers, models, firmware, bench; system: the whole tree: packaging, docs, architecture, arm64);
``support/`` holds what tests import (paths, driver sinks, helper programs), ``fakes/`` the library fakes
(gpiod 2.x, RPi.GPIO, the kernel PPS API) and ``data/`` the recorded files.
"""

from __future__ import annotations

import pytest
from support.paths import DATA
from support.sinks import RecordingSink


@pytest.fixture
def sink() -> RecordingSink:
    """A driver sink that records everything a driver reports."""
    return RecordingSink()


@pytest.fixture(scope="session")
def legacy_recording():
    """A recording made before the architecture change (tests/data/legacy-rig/README.md) and what synchub align
    made of it then."""
    return DATA / "legacy-rig" / "legacy-rig.mcap", DATA / "legacy-rig" / "expected.npz"
