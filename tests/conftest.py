"""Shared fixtures.  tests/ mirrors the packages (core, clock, align, pipeline, transport, collector, formats, config,
cli, deploy, drivers, models, firmware, bench; system: the whole tree: packaging, docs, architecture, arm64);
``support/`` holds what tests import (paths, driver sinks, helper programs), ``fakes/`` the library fakes
(gpiod 2.x, RPi.GPIO, the kernel PPS API) and ``data/`` the recorded files.
"""

from __future__ import annotations

import os

import pytest
from support import arm64check, early
from support.paths import DATA
from support.sinks import RecordingSink


@pytest.fixture(scope="session", autouse=True)
def _own_state_dir(tmp_path_factory):
    """Agents without spool_dir spool under $XDG_STATE_HOME: one of the test run's own, never the user's (nor
    another test run's on the same machine)."""
    old = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield
    if old is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = old


@pytest.fixture
def sink() -> RecordingSink:
    """A driver sink that records everything a driver reports."""
    return RecordingSink()


@pytest.fixture(scope="session")
def legacy_recording():
    """A recording made before the architecture change (tests/data/legacy-rig/README.md) and what synchub align
    made of it then."""
    return DATA / "legacy-rig" / "legacy-rig.mcap", DATA / "legacy-rig" / "expected.npz"


def pytest_collection_finish(session):
    """The arm64 test's 3-4 minutes under qemu and the 2-minute soak start now, on the core the suite leaves idle
    (support/early.py)."""
    arm64check.start_early(session.items)
    early.start_soak(session.items)
