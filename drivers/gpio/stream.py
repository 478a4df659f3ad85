"""``driver = "gpio"``: a GPIO line recorded as its own stream (type ``trigger``), through the same back ends.

Each edge becomes a sample (the line level after it, int8) whose device time is its reference time (kernel stamp on
the monotonic clock), and ``TriggerEdge(clock="ref", source=<stream name>)`` evidence, so other streams can say
``trigger = "<this stream>"`` (matched as an aperiodic trigger).  For a sync line with a period and a role use a
``[[trigger]]`` table instead (it is recorded as a stream too).
"""

from __future__ import annotations

from dataclasses import dataclass

from synchub.agent.core.options import StreamCommon, TriggerSettings
from synchub.agent.core.settings import setting
from synchub.drivers.base import Driver, DriverContext

from . import make_trigger_input


@dataclass(frozen=True)
class GpioStreamSettings:
    backend: str = setting("gpiod", choices=("gpiod", "rpi-gpio", "pps", "sim"), doc="GPIO back end")
    chip: str = setting("/dev/gpiochip0", doc="gpiod: GPIO chip path")
    device: str = setting("/dev/pps0", doc="pps: the kernel PPS device")
    line: int = setting(0, min=0, doc="GPIO line offset (gpiod) or BCM pin (rpi-gpio)")
    edge: str = setting("both", choices=("rising", "falling", "both"), doc="edges to record")
    event_clock: str = setting("monotonic", choices=("monotonic", "realtime", "hte"), doc="gpiod: edge clock")
    debounce_us: int = setting(0, min=0, doc="debounce period (0: off; debounced stamps are milliseconds late)")


class GpioStreamDriver(Driver):
    def __init__(self, common: StreamCommon, settings: GpioStreamSettings, context: DriverContext | None = None,
                 module=None):
        trig = TriggerSettings(name=common.name, backend=settings.backend, chip=settings.chip, line=settings.line,
                               device=settings.device,
                               edge=settings.edge, event_clock=settings.event_clock, debounce_us=settings.debounce_us,
                               period_s=0.0)
        self.input = make_trigger_input(trig, rig=context.rig if context is not None else None, module=module)
        super().__init__(self.input.info)
        self.common = common

    def start(self, sink) -> None:
        self.input.start(sink)

    def stop(self) -> None:
        self.input.stop()

    def health(self) -> dict:
        return {"samples": self.input.edges, "malformed": 0, "gaps": self.input.lost, **self.input.health()}
