"""Clock evidence items and their records in a recording (``synchub.agent.core.evidence``)."""

from __future__ import annotations

import msgpack
import pytest

from synchub.agent.core.evidence import (
    ClockReset,
    OffsetEstimate,
    Probe,
    TriggerEdge,
    UtcSample,
    evidence_from_dict,
    evidence_to_dict,
)

ITEMS = [TriggerEdge("imu0", 5, "device", -1, 10, 3, 7), Probe("tlm0", 1, 2, 3),
         OffsetEstimate("mic0", 4, -5, 6, "hybrid", 0.5), ClockReset("imu0", 195, 0, 16_500_000_000, "counter jumped"),
         UtcSample(9_231_567_051_836, 1_795_704_402_757_279_000, 1_000_000, "ntp")]


@pytest.mark.parametrize("item", ITEMS, ids=lambda i: type(i).__name__)
def test_every_evidence_type_round_trips_through_its_msgpack_record(item):
    record = msgpack.unpackb(msgpack.packb(evidence_to_dict(item)), raw=False)
    assert evidence_from_dict(record) == item


def test_a_utc_sample_recorded_the_old_way_reads_as_a_utc_sample():
    old = {"type": "offset", "stream": "_utc", "device_ns": 100, "offset_ns": 50, "sigma_ns": 7, "source": "system",
           "confidence": 1.0}
    assert evidence_from_dict(old) == UtcSample(100, 150, 7, "system")


@pytest.mark.parametrize("record", [{"type": "nonsense"}, {"stream": "a"}, "text", {"type": "probe", "stream": "a"}])
def test_a_record_that_is_no_evidence_is_refused(record):
    with pytest.raises(ValueError):
        evidence_from_dict(record)
