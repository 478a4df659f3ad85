"""Drivers: each owns a device (its I/O, thread, reconnects) and reports raw samples, gaps, clock resets and clock
evidence to a ``base.DriverSink``; they never import the agent's pipeline, runtime or config.

* ``base``: the driver interface; ``registry``: which driver reads a ``[[stream]]`` (name -> module, settings,
  driver class);
* ``serial/`` (pyserial: frames, lines, the pure protocol, the port), ``capture/`` (ALSA, V4L2 through a capture
  program), ``syncbox/`` (the sync box: protocol codec, driver), ``gpio/`` (trigger inputs: gpiod, RPi.GPIO, the
  kernel PPS API, the simulated rig; and GPIO lines as streams), ``ntp`` (NTP health and UTC samples);
* ``sim/``: the simulated rig and its ``sim`` driver.
"""
