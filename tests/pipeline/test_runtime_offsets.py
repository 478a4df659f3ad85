"""The agent stamps each aligner offset with the host time it had it (``OffsetEstimate.host_ns``): the recording
keeps it (``_evidence``), so a causal rerun (``synchub align --live``) feeds the offset no earlier than the agent
could have used it (``replay.available_time``)."""

from types import SimpleNamespace

from synchub.agent.clock.replay import available_time, evidence_time
from synchub.agent.core.evidence import OffsetEstimate, evidence_from_dict, evidence_to_dict
from synchub.agent.core.units import NS, now_ns
from synchub.agent.pipeline.runtime import Agent


class _Tracker:
    def __init__(self, estimates):
        self.estimates = estimates

    def poll(self):
        out, self.estimates = self.estimates, []
        return out


def test_polled_offsets_are_stamped_with_when_the_agent_had_them():
    centre = now_ns() - 7 * NS  # a window that ended a few seconds ago speaks of its centre
    est = OffsetEstimate("mic0", centre - 2 * NS, 2 * NS, 1_000_000, "hybrid")
    got = []
    agent = SimpleNamespace(trackers=[_Tracker([est])], hub=SimpleNamespace(evidence=got.append), latency=None,
                            fuser=None)
    t0 = now_ns()
    Agent._poll_consumers(agent)
    (out,) = got
    assert t0 <= out.host_ns <= now_ns() and out.offset_ns == est.offset_ns and out.device_ns == est.device_ns
    assert evidence_time(out) == centre and available_time(out) == out.host_ns  # fed then, not at its centre
    assert evidence_from_dict(evidence_to_dict(out)) == out  # recorded with it
    old = {k: v for k, v in evidence_to_dict(out).items() if k != "host_ns"}  # a recording from before
    assert evidence_from_dict(old).host_ns == 0 and available_time(evidence_from_dict(old)) == centre
