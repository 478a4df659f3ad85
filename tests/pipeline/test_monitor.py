"""The agent's own status and liveness, in-process with the simulated rig: a running stream is ok with its rate and
clock method; an unplugged one is missing with the driver's reason while every loop still turns; a driver loop that
stops is reported dead (the watchdog then stops pinging)."""

import time

import tomllib

from synchub.agent.config.loader import parse_config
from synchub.agent.core.units import now_ns
from synchub.agent.pipeline.monitor import Monitor
from synchub.agent.pipeline.runtime import Agent

CONFIG = """
[agent]
name = "mon"
collector = ["tcp://127.0.0.1:9"]
[sim]
duration_s = 600.0
only = ["imu0", "sync"]
[[trigger]]
name = "sync"
backend = "sim"
role = "sync"
period_s = 1.0
[[stream]]
name = "imu0"
type = "imu"
driver = "serial"
port = "sim:imu0"
format = "imu-bin"
nominal_rate = 200.0
trigger = "sync"
"""


class Outlet:
    def send_chunk(self, chunk): ...

    def send_gap(self, gap): ...

    def send_meta(self, stream, meta): ...


def _wait(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    return cond()


def test_status_and_liveness_of_a_running_agent():
    agent = Agent(parse_config(tomllib.loads(CONFIG), "<t>"), outlet=Outlet())
    mon = Monitor(agent, liveness_limit_s=0.6)
    agent.start()
    try:
        mon.watch(now_ns())
        imu = lambda: next(s for s in mon.snapshot(now_ns()).streams if s.name == "imu0")  # noqa: E731
        assert _wait(lambda: imu().state == "ok" and imu().method != "")
        time.sleep(1.0)
        mon.liveness.beat("main", now_ns())  # the agent's main loop beats like this (agent/cli/agent.py)
        st = mon.snapshot(now_ns())
        s = imu()
        assert 150 < s.rate_hz < 250 and s.nominal_rate == 200.0 and s.last_sample_age_ns < 500_000_000, s
        assert st.connection == "local" and st.agent == "mon" and st.uptime_s > 0 and st.problems() == [], st
        assert mon.dead_loops(now_ns()) == []
        agent.rig.unplug("imu0", 30.0)
        assert _wait(lambda: imu().state == "missing")
        assert imu().detail in ("sim:imu0 disconnected", "cannot open sim:imu0: sim device 'imu0' is unplugged"), imu()
        time.sleep(0.8)  # unplugged for longer than the liveness limit: the driver's loop still turns
        mon.liveness.beat("main", now_ns())
        assert mon.dead_loops(now_ns()) == []
        assert mon.snapshot(now_ns()).problems()[0].startswith("imu0 missing")
        agent.drivers[0].stop()  # its thread ends: the loop no longer turns
        time.sleep(0.8)
        mon.liveness.beat("main", now_ns())
        dead = mon.dead_loops(now_ns())
        assert len(dead) == 1 and dead[0].startswith("driver imu0 ("), dead
        assert "loop driver imu0" in mon.snapshot(now_ns()).problems()[-1]
    finally:
        agent.stop()
