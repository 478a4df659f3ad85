"""synchub: edge sensor-hub agent with hardware-trigger support.

The installed package maps the repository's top-level folders: ``synchub.agent`` (agent/), ``synchub.drivers``
(drivers/), ``synchub.models`` (models/), ``synchub.bench`` (bench/), ``synchub.firmware`` (firmware/),
``synchub.systemd`` (systemd/), ``synchub.examples`` (examples/).  Here: ``cli`` (the ``synchub`` command; it only
dispatches to ``synchub.agent.cli``), ``errors`` (``UserError``), ``extras`` (optional dependencies and their extras).
docs/ARCHITECTURE.md follows one sample through the tree.
"""

__version__ = "0.1.0"
