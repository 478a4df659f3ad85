"""Scenario files of ``synchub bench sync`` (TOML), validated with ``synchub.agent.core.settings``: a typo names the key.

Layout::

    name = "lab-10min"            # free text
    doc = "..."                   # what the scenario shows
    duration_s = 600.0
    seed = 1
    eval_points = 20000           # evaluation samples per stream (subsampled, sorted)
    tolerance_us = 100.0          # within_tol_pct counts errors at most this large
    window_s = 120.0              # clock model window (ClockSettings.window_s)
    chunk_ms = 100.0              # the agent's chunking of arrivals

    [trigger]                     # one reference trigger line, stamped by the host (GPIO kernel stamps)
    period_s = 1.0
    width_ms = 10.0
    ref_jitter_us = 2.0           # 1-sigma jitter of the host's edge stamps
    phase_s = 0.5
    extra_pulses_per_s = 0.0      # a second TTL source on the same line (both sides see it)

    [probes]                      # round-trip probes of every device with probes = true
    rate_hz = 1.0
    out_latency_min_ms = 0.2      # host -> device (USB OUT) latency, uniform
    out_latency_max_ms = 1.0      # device -> host latency is the device's own link latency ([device.clock])

    [[device]]
    name = "daq0"
    rate_hz = 200.0               # 0: irregular (Poisson, mean_rate_hz)
    trigger = true                # wired to the trigger line: the device stamps the edges with its clock
    probes = true
    miss_rate = 0.0               # fraction of trigger edges the device misses (miss_burst: in runs)
    spurious_per_s = 0.0          # glitch edges the device reports (spurious_width_ms, spurious_near_ms)
    [device.clock]                # synchub.drivers.sim.clocks.ClockSpec: offset, drift, random walk, jitter
    drift_ppm = 100.0             # (the device's edge-stamping jitter), latency (bimodal: slow_latency_ms,
                                  # slow_fraction), drops, resets (reset_to_s / reset_jump_s per reset,
                                  # reset_downtime_s), counter width and rate
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from synchub.agent.core.settings import ConfigError, Where, build, read_toml, reference, setting
from synchub.drivers.sim.clocks import ClockSpec


@dataclass(frozen=True)
class TriggerSpec:
    period_s: float = setting(1.0, min=0.001, doc="pulse period (with irregular > 0: the mean interval)")
    irregular: float = setting(
        0.0, min=0.0, max=0.9, doc="each interval is period_s x U(1 - irregular, 1 + irregular); > 0: an aperiodic "
        "line (events on demand, a lick sensor), which the agent is told (period_s = 0)")
    width_ms: float = setting(10.0, min=0.0, doc="pulse width")
    ref_jitter_us: float = setting(2.0, min=0.0, doc="1-sigma jitter of the host's (reference) edge stamps")
    phase_s: float = setting(0.5, min=0.0, doc="first rising edge after t=0")
    extra_pulses_per_s: float = setting(
        0.0, min=0.0, doc="pulses of a second TTL source on the same line (random times), seen by the reference and "
        "every wired device")
    extra_width_ms: float = setting(0.0, min=0.0, doc="their width (0: the sync pulses' width)")


@dataclass(frozen=True)
class ProbeSpec:
    rate_hz: float = setting(1.0, min=0.0, doc="probes per second per device (0: none)")
    out_latency_min_ms: float = setting(0.2, min=0.0, doc="host -> device latency, lower bound")
    out_latency_max_ms: float = setting(1.0, min=0.0, doc="host -> device latency, upper bound")


@dataclass(frozen=True)
class DeviceSpec:
    name: str = setting(doc="stream name")
    rate_hz: float = setting(100.0, min=0.0, doc="sample rate on the device clock (0: irregular)")
    mean_rate_hz: float = setting(10.0, min=0.01, doc="irregular streams: mean event rate")
    trigger: bool = setting(True, doc="the device sees the trigger line and stamps its edges")
    probes: bool = setting(True, doc="the device answers round-trip probes")
    report_resets: bool = setting(
        True, doc="the driver reports the counter jumps it sees as device_reset gaps (false: the clock layer must "
        "find every reset itself)")
    miss_rate: float = setting(0.0, min=0.0, max=0.9, doc="fraction of trigger edges the device misses")
    miss_burst: int = setting(1, min=1, doc="missed edges come in runs of this mean length (consecutive pulses)")
    spurious_per_s: float = setting(0.0, min=0.0, doc="spurious (glitch) edges per second the device reports")
    spurious_width_ms: float = setting(
        0.0, min=0.0, doc="glitch width (+-10%); 0: narrow glitches (1 us - 3 ms), e.g. the pulse width: a second "
        "TTL source or a bouncing switch only this device sees")
    spurious_near_ms: float = setting(
        0.0, min=0.0, doc="> 0: glitches fall within this many ms of a real pulse (either side), like a bouncing "
        "switch; 0: anywhere")
    clock: ClockSpec = setting(ClockSpec(), doc="the device clock and link (ClockSpec)")

    def __post_init__(self) -> None:
        if 0 < self.rate_hz < 0.01:
            raise ValueError(f"device {self.name!r}: rate_hz must be 0 (irregular) or at least 0.01")


@dataclass(frozen=True)
class Scenario:
    name: str = setting(doc="scenario name")
    duration_s: float = setting(doc="simulated length", min=1.0)
    device: tuple[DeviceSpec, ...] = setting(doc="the devices ([[device]] tables)")
    doc: str = setting("", doc="what the scenario shows")
    seed: int = setting(0, doc="random seed")
    eval_points: int = setting(20000, min=100, doc="evaluation samples per stream")
    tolerance_us: float = setting(100.0, min=0.0, doc="within_tol_pct threshold")
    window_s: float = setting(120.0, min=1.0, doc="clock model window")
    chunk_ms: float = setting(100.0, min=1.0, doc="arrival chunking")
    trigger: TriggerSpec = setting(TriggerSpec(), doc="the trigger line")
    probes: ProbeSpec = setting(ProbeSpec(), doc="round-trip probes")

    def __post_init__(self) -> None:
        names = [d.name for d in self.device]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate device names: {names}")
        if not names:
            raise ValueError("a scenario needs at least one [[device]]")


def parse_scenario(data: dict, file: str = "<scenario>") -> Scenario:
    sc = build(Scenario, data, Where(file))
    t = sc.trigger
    shortest = t.period_s * (1.0 - t.irregular) * 1e3
    if t.width_ms >= shortest:  # the line would never go low: every edge after the first is lost
        raise ConfigError(f"{file}: trigger.width_ms: {t.width_ms:g} ms is not under the shortest interval "
                          f"({shortest:g} ms): a pulse must end before the next one starts")
    return sc


def load_scenario(path: str | Path) -> Scenario:
    return parse_scenario(read_toml(path, "scenario"), str(path))


def scenario_reference() -> str:
    """The schema as text (``synchub bench sync --reference``)."""
    out = ["# top level"] + reference(Scenario)
    out += ["", "# [trigger]"] + reference(TriggerSpec)
    out += ["", "# [probes]"] + reference(ProbeSpec)
    out += ["", "# [[device]]"] + reference(DeviceSpec)
    out += ["", "# [device.clock]"] + reference(ClockSpec)
    return "\n".join(out)


SCENARIO_DIR = Path(__file__).resolve().parents[1] / "scenarios"  # bench/scenarios: shared with bench align
