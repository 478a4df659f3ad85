"""Liveness (pure): a loop is alive while it beats within its limit, whatever the data does; the rate meter's window."""

from synchub.agent.core.units import NS
from synchub.agent.pipeline.liveness import Liveness
from synchub.agent.pipeline.monitor import RateMeter


def test_loops_are_alive_while_they_beat():
    lv = Liveness(limit_s=2.0)
    lv.watch("main", 0)
    lv.watch("driver imu0", 0)
    assert lv.alive(int(1.9 * NS)) and lv.loops == ["driver imu0", "main"]
    lv.beat("main", int(1.5 * NS))
    lv.beat("driver imu0", int(1.5 * NS))
    assert lv.dead(int(3.4 * NS)) == []
    lv.beat("main", int(3.0 * NS))  # the driver's loop stopped turning (stuck in a read, thread died)
    assert lv.dead(int(3.6 * NS)) == ["driver imu0 (2.1 s)"]
    assert not lv.alive(int(3.6 * NS))


def test_a_loop_that_never_beats_is_dead_after_its_limit():
    lv = Liveness(limit_s=1.0)
    lv.watch("shipper", 10 * NS)
    assert lv.alive(int(10.9 * NS))
    assert lv.dead(int(11.5 * NS)) == ["shipper (1.5 s)"]


def test_own_limits_old_beats_and_forgotten_loops():
    lv = Liveness(limit_s=1.0)
    lv.watch("house", 0, limit_s=10.0)
    lv.watch("main", 0)
    lv.beat("main", 5 * NS)
    lv.beat("main", 2 * NS)  # a stale reading never moves the heartbeat back
    assert lv.dead(int(5.5 * NS)) == []
    lv.forget("main")
    lv.beat("main", 9 * NS)  # a loop no longer watched does not come back by beating
    assert lv.loops == ["house"] and lv.dead(11 * NS) == ["house (11.0 s)"]


def test_rate_meter_windows_the_counter():
    m = RateMeter(window_s=2.0)
    assert m.update("imu0", 0, 0) == 0.0
    for k in range(1, 11):  # 200 Hz for 5 s
        r = m.update("imu0", k * NS // 2, k * 100)
    assert r == 200.0
    for k in range(11, 17):  # then silent for 3 s: the window forgets the old samples
        r = m.update("imu0", k * NS // 2, 1000)
    assert r == 0.0
    assert m.update("tlm0", 0, 5) == 0.0  # one reading: no rate yet
