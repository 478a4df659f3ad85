"""The status summary (pure): stream states from device, sample age and rate; the STATUS= line names what is
missing; the table and the JSON round trip."""

import json

from synchub.agent.core.units import NS
from synchub.agent.pipeline.status_view import (
    AgentStatus,
    StreamStatus,
    from_dict,
    status_line,
    table,
    to_dict,
)


def test_stream_states():
    assert StreamStatus("imu0", connected=False).state == "missing"
    assert StreamStatus("imu0", last_sample_age_ns=None).state == "waiting"
    assert StreamStatus("imu0", nominal_rate=200.0, last_sample_age_ns=int(1.9 * NS)).state == "ok"
    assert StreamStatus("imu0", nominal_rate=200.0, last_sample_age_ns=int(2.1 * NS)).state == "stalled"
    # a slow stream gets ten of its periods before it counts as stalled
    assert StreamStatus("tlm0", nominal_rate=1.0, last_sample_age_ns=5 * NS).state == "ok"
    assert StreamStatus("tlm0", nominal_rate=1.0, last_sample_age_ns=11 * NS).state == "stalled"
    # an irregular stream (an event log) is never stalled by silence
    assert StreamStatus("log0", nominal_rate=0.0, last_sample_age_ns=3600 * NS).state == "ok"


def _rig(**kw):
    streams = (StreamStatus("imu0", connected=False, nominal_rate=200.0, detail="no such port /dev/serial0", gaps=12),
               StreamStatus("mic0", nominal_rate=16000.0, rate_hz=15999.2, last_sample_age_ns=20_000_000,
                            method="arrival", sigma_ns=4_000_000, locked=True))
    return AgentStatus("field-pi-07", streams, session="s1", connection="connected", collector="tcp://10.0.0.2:7100",
                       spool_bytes=3_000_000, spool_max_bytes=2_048_000_000, uptime_s=300.0, **kw)


def test_status_line_names_the_missing_stream_first():
    line = status_line(_rig())
    assert line.startswith("DEGRADED: imu0 missing (no such port /dev/serial0); 1/2 streams ok")
    assert "collector connected" in line
    healthy = AgentStatus("a", (StreamStatus("mic0", nominal_rate=100.0, last_sample_age_ns=NS // 100),),
                          connection="connected")
    assert status_line(healthy).startswith("ok: 1/1 streams ok")
    down = AgentStatus("a", (), connection="down", spool_bytes=900, spool_max_bytes=1000)
    assert status_line(down).startswith("DEGRADED: collector down, spool 90 % full")
    assert len(status_line(_rig(), width=40)) == 40


def test_table_and_json_round_trip():
    st = _rig()
    text = table(st)
    assert "imu0         missing" in text and "4.00 ms" in text and text.splitlines()[-1].startswith("DEGRADED")
    d = json.loads(json.dumps(to_dict(st)))
    assert d["streams"][0]["state"] == "missing" and d["status_line"] == status_line(st)
    assert from_dict(d) == st
