"""The spool's invariant under random sends, acks, link losses, agent kills and fills, at tiny and normal sizes:
every sample is recorded by the collector or is in a ``spool_full`` gap record, never neither, never both; the
sender never finds a message missing from the spool; the live bytes stay within the bound (plus what was sent)."""

import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from support.spool_link import Link

from synchub.agent.transport.spool import Spool


def _one() -> int:
    """The bytes of one record of 100 samples."""
    link = Link(None, 1 << 20, 1 << 20)
    link.produce("a", 100)
    return link.spool.live_bytes


ONE = _one()


class SpoolMachine(RuleBasedStateMachine):
    @initialize(disk=st.booleans(), records=st.sampled_from([0.5, 1, 2, 3, 8, 40]),
                credit=st.integers(1, 6), segments=st.sampled_from([1, 4, 1000]))
    def setup(self, disk, records, credit, segments):
        self.tmp = tempfile.mkdtemp(prefix="spool-sm-") if disk else None
        self.link = Link(f"{self.tmp}/sp" if disk else None, int(ONE * records), ONE * segments, credit)

    @rule(stream=st.sampled_from("ab"), n=st.integers(1, 200))
    def produce(self, stream, n):
        self.link.produce(stream, n)

    @rule()
    def meta(self):
        self.link.meta()

    @rule(budget=st.integers(1, 8))
    def pump(self, budget):
        self.link.pump(budget)

    @rule(count=st.integers(1, 8))
    def deliver(self, count):
        self.link.deliver(count)

    @rule()
    def reconnect(self):
        self.link.reconnect()

    @rule()
    def drop_link(self):
        self.link.drop_link()

    @precondition(lambda self: self.tmp is not None)
    @rule()
    def crash(self):
        self.link.crash()

    @invariant()
    def nothing_missing(self):
        assert self.link.missing == 0, "the sender found a message missing from the spool"

    @invariant()
    def files_bounded(self):
        sp = self.link.spool
        if sp.dir is not None:
            assert sp.disk_bytes() <= 2 * max(sp.max_bytes, sp.live_disk) + 3 * sp.segment_bytes

    def teardown(self):
        try:
            self.link.drain()
            assert self.link.missing == 0
            assert self.link.unaccounted() == {}
        finally:
            if self.tmp:
                self.link.spool.close()
                shutil.rmtree(self.tmp, ignore_errors=True)


SpoolMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
test_spool_state_machine = SpoolMachine.TestCase


def test_jam_of_issue_11_a_sent_span_is_never_extended_backwards():
    """The issue's jam, minimal: mid 1 is evicted (a span 1..1), the span is sent, then mid 2 is evicted: it must
    not merge into the sent span (the sender's cursor is at 2, a span starting at 1 would leave 2 "missing")."""
    link = Link(None, ONE * 1, ONE, credit=1)
    link.produce("a", 100)
    link.produce("a", 100)  # evicts mid 1: span 1..1
    link.reconnect()
    link.pump(1)  # the span 1..1 goes out; mid 2 waits for credit
    link.produce("a", 100)  # evicts mid 2 (unsent)
    link.deliver(8)
    link.pump(8)
    assert link.missing == 0
    link.drain()
    assert link.unaccounted() == {}


@pytest.mark.parametrize("disk", [False, True])
def test_paused_collector_at_the_smallest_size(tmp_path, disk):
    """spool_max_mb = 1 worth of records, a collector that stops reading for a long while then comes back."""
    link = Link(tmp_path / "sp" if disk else None, ONE * 3, ONE * 2, credit=4)
    link.reconnect()
    for i in range(400):
        link.produce("ab"[i % 2], 100)
        link.pump(2)
        if i < 50 or i > 350:
            link.deliver(4)
        assert link.missing == 0
    link.drain()
    assert link.unaccounted() == {}
    st = link.spool.stats()
    assert st["dropped_samples"] > 0
    link.spool.close()


def test_a_record_larger_than_the_bound_is_kept(tmp_path):
    sp = Spool(tmp_path / "sp", max_bytes=ONE // 2)
    link = Link(None, ONE // 2, ONE)
    link.spool = sp
    link.produce("a", 100)
    link.drain()
    assert link.unaccounted() == {}
    sp.close()


@pytest.mark.parametrize("steps", [
    # the three cases the state machine found in CI (2026-11-28): a kill before the ack file's first save left the
    # old session's records unprotected; a new session's append evicted them into a span over a mid the collector
    # already had: the sender's next mid was in no record (missing) and a sample neither recorded nor in a gap
    [("produce", "a", 45), ("pump", 1), ("produce", "a", 1), ("produce", "a", 1), ("deliver", 1), ("crash",),
     ("produce", "a", 1), ("reconnect",), ("pump", 1)],
    [("produce", "a", 1), ("pump", 1), ("deliver", 1), ("produce", "a", 1), ("crash",), ("produce", "a", 96),
     ("reconnect",), ("crash",)],
    [("produce", "a", 1), ("pump", 1), ("deliver", 1), ("produce", "a", 46), ("crash",), ("produce", "a", 1)],
])
def test_a_kill_before_the_first_ack_save_evicts_nothing_the_collector_may_have(tmp_path, steps):
    link = Link(str(tmp_path / "sp"), int(ONE * 0.5), ONE, 1)
    link.crash()
    link.reconnect()
    for name, *args in steps:
        getattr(link, name)(*args)
        assert link.missing == 0
    link.drain()
    assert link.missing == 0 and link.unaccounted() == {}
    link.spool.close()
