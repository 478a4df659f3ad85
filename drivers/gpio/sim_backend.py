"""Simulated back end: the trigger lines of the in-process simulated rig (``SimRig.subscribe_edges``).

Edges carry kernel-like timestamps (true time + 1-3 us) and per-line sequence numbers; this back end filters them
by the configured edge kind as the kernel would.  Used by ``synchub demo``.
"""

from __future__ import annotations

import time

from synchub.drivers.sim.rig import active_rig

from .base import TriggerInput


class SimTriggerInput(TriggerInput):
    backend = "sim"

    def __init__(self, settings, rig=None, as_stream: bool = True):
        if rig is None:
            rig = active_rig()
        if rig is None:
            raise ValueError("backend 'sim' needs the simulated rig: add a [sim] table to the config")
        self.rig = rig
        super().__init__(settings, as_stream)
        self._subscribed = False

    def _open(self) -> None:
        self.rig.subscribe_edges(self.name, self._callback)  # LookupError names the rig's triggers
        self._subscribed = True

    def _callback(self, e) -> None:
        edge = self.settings.edge
        if (edge == "rising" and e.polarity < 0) or (edge == "falling" and e.polarity > 0):
            return
        # the rig numbers every edge of the line; with one edge kind the kernel numbers only those it reports
        seq = int(e.seqno) if edge == "both" else -1
        self._edge(int(e.t_ns), int(e.polarity), seq, time.monotonic_ns())

    def _close(self) -> None:
        if self._subscribed:
            self.rig.unsubscribe_edges(self.name, self._callback)
            self._subscribed = False
