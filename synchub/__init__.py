"""synchub: edge sensor-hub agent with hardware-trigger support.

The installed package maps the repository's top-level folders:
``synchub.agent`` (agent/), ``synchub.drivers`` (drivers/), ``synchub.models`` (models/),
``synchub.bench`` (bench/), ``synchub.firmware`` (firmware/).
"""

__version__ = "0.1.0"
