"""Corrected streams re-published as LSL outlets (``[lsl] outlet = true``), so LabRecorder records synchub streams
next to its own and pyxdf's ``synchronize_clocks=True`` maps them like any LSL stream.

Each published stream gets one ``pylsl.StreamOutlet`` on the agent's host with its full metadata (``outlet_spec``,
pure, in ``synchub.drivers.lsl.outlet``, shared with the collector's outlet): name (``name_prefix`` + stream name),
content type, nominal rate, channel format, a source id that survives restarts (agent name + stream, so LabRecorder
re-attaches), and a ``desc`` with ``channels/channel`` (label, unit, type) plus a ``synchub`` element saying what the timestamps are.  Every corrected chunk the shipper releases goes
out with per-sample timestamps ``ref_ns`` (``lsl_stamps``, pure): the agent's reference clock is the host's
``CLOCK_MONOTONIC``, which is what liblsl's ``local_clock()`` reads on Linux; where they differ (measured once at
open) the offset is added, so the stamps are always on this host's LSL clock and LabRecorder's own
``time_correction`` probes carry them to the recording machine.  Raw device times and uncertainties stay in the
synchub recording; LSL has no place for them.

``LslPublisher.push`` is a shipper tap (called on the shipper thread after each correction); a failed push is
counted and logged by the shipper, never stops the recording.  ``close()`` drops the outlets (inlets see the stream
vanish, as when any LSL device is unplugged).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from synchub.agent.config.schema import LslOutletSettings
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.drivers.lsl.inlet import import_pylsl
from synchub.drivers.lsl.outlet import lsl_clock_offset_ns, lsl_stamps, outlet_spec, push, stream_info

log = logging.getLogger("synchub.lsl")


class LslPublisher:
    """One outlet per published stream; ``open()``, ``push(stream, chunk)`` (a shipper tap), ``close()``."""

    def __init__(self, infos: dict[str, StreamInfo], settings: LslOutletSettings, agent: str):
        self.settings = settings
        self.agent = agent
        self.specs = {n: outlet_spec(infos[n], agent, settings.name_prefix + n)
                      for n in settings.wanted(infos) if n in infos}
        self.outlets: dict[str, Any] = {}
        self.offset_ns = 0
        self.pushed: dict[str, int] = dict.fromkeys(self.specs, 0)
        self.lsl = None

    def open(self) -> None:
        if not self.specs:
            return
        self.lsl = import_pylsl()
        self.offset_ns = lsl_clock_offset_ns(self.lsl.local_clock)
        for name, spec in self.specs.items():
            self.outlets[name] = self.lsl.StreamOutlet(stream_info(self.lsl, spec), chunk_size=0,
                                                       max_buffered=int(self.settings.max_buffered_s))
        log.info("LSL outlets on %s: %s", socket.gethostname(), ", ".join(s.name for s in self.specs.values()))

    def push(self, stream: str, chunk: Chunk) -> None:
        outlet = self.outlets.get(stream)
        if outlet is None or chunk.n == 0:
            return
        push(outlet, self.specs[stream], chunk, lsl_stamps(chunk.ref_ns, self.offset_ns))
        self.pushed[stream] += chunk.n

    def close(self) -> None:
        self.outlets.clear()  # pylsl destroys an outlet with its last reference
