"""GPIO trigger inputs behind one factory (gpiozero's pin-factory style).

``make_trigger_input(settings, rig=None)`` builds the back end a ``[[trigger]]`` table names:

* ``gpiod`` (default): libgpiod v2 (``gpiod>=2.1.3``), kernel edge timestamps (``timestamp_ns``) on the selected
  event clock (monotonic, realtime or HTE; realtime/HTE stamps are mapped onto the monotonic reference), line
  sequence numbers to count lost events, kernel debounce.
* ``rpi-gpio``: RPi.GPIO callbacks stamped in userspace (tens to hundreds of us of jitter); the stream's quality says
  ``timestamp_source=userspace``.
* ``pps``: a kernel PPS device (``/dev/ppsN``, the PPS API's ``PPS_FETCH``): pulses the kernel stamped in its
  interrupt handler, for a line that a kernel driver holds (the ``pps-gpio`` overlay on GPIO18, a serial GPS's DCD).
* ``sim``: the simulated rig's trigger lines (``SimRig.subscribe_edges``), used by the demo.

Each yields ``TriggerEdge(clock="ref")`` evidence and, as a stream of type ``trigger``, the line level at each edge.
A ``pps`` role line is a GPS PPS input: the clock layer numbers its seconds and maps the reference clock to UTC.
"""

from __future__ import annotations

import importlib

from .base import TriggerInput

BACKENDS = {
    "gpiod": ("synchub.drivers.gpio.gpiod_backend", "GpiodTriggerInput"),
    "rpi-gpio": ("synchub.drivers.gpio.rpi_backend", "RpiGpioTriggerInput"),
    "pps": ("synchub.drivers.gpio.pps_backend", "PpsTriggerInput"),
    "sim": ("synchub.drivers.gpio.sim_backend", "SimTriggerInput"),
}


def make_trigger_input(settings, *, rig=None, as_stream: bool = True, module=None) -> TriggerInput:
    """The trigger input for ``settings`` (a ``TriggerSettings``).  ``module`` replaces the GPIO library (tests; for
    ``pps`` an object whose ``open(path)`` returns a device handle);
    ``rig`` is the simulated rig for ``backend = "sim"``.  Raises ``ImportError`` when the library is missing and
    ``ValueError`` for an unknown back end."""
    try:
        mod_name, cls_name = BACKENDS[settings.backend]
    except KeyError:
        raise ValueError(f"unknown GPIO back end {settings.backend!r}; allowed: {', '.join(BACKENDS)}") from None
    cls = getattr(importlib.import_module(mod_name), cls_name)
    if settings.backend == "sim":
        return cls(settings, rig=rig, as_stream=as_stream)
    return cls(settings, module=module, as_stream=as_stream)


__all__ = ["BACKENDS", "TriggerInput", "make_trigger_input"]
