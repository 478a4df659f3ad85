"""Trigger output from a GPIO line (gpiod): periodic sync pulses or 32-bit barcodes (``synchub.agent.clock.barcode``).

``PulseOutput(chip, line, period_s, width_ms, barcode_bit_ms=0)`` drives the line from a thread: a plain pulse every
period, or, with ``barcode_bit_ms > 0``, a barcode carrying a counter at each period (the format of codecs.md, so
any device that decodes barcodes can identify every pulse).  Edges are timed in userspace (sleep until the edge,
then set the value), so they jitter by tens of microseconds; wire the same line back to a gpiod input (or to the
devices) to get kernel timestamps of what was actually sent.  ``emitted`` lists ``(t0_ns, value)`` as scheduled.

Run on real hardware: no; tested against tests/fakes/gpiod (an output drives the fake line, inputs see the edges).
"""

from __future__ import annotations

import importlib
import threading
import time

from synchub.agent.clock.barcode import encode_barcode
from synchub.agent.core.units import NS


class PulseOutput:
    def __init__(self, chip: str, line: int, period_s: float = 1.0, width_ms: float = 10.0,
                 barcode_bit_ms: float = 0.0, module=None, consumer: str = "synchub-out"):
        if period_s <= 0 or width_ms <= 0:
            raise ValueError("period_s and width_ms must be > 0")
        if barcode_bit_ms > 0 and 45 * barcode_bit_ms / 1000 > period_s:
            raise ValueError("a barcode (35 bits + 10 idle) does not fit in the period")
        self.gpiod = module if module is not None else importlib.import_module("gpiod")
        self.line_mod = self.gpiod.line
        self.chip, self.line = chip, int(line)
        self.period_ns = int(period_s * NS)
        self.width_ns = int(width_ms * 1e6)
        self.bit_ns = int(barcode_bit_ms * 1e6)
        self.consumer = consumer
        self.emitted: list[tuple[int, int]] = []
        self.late_ns = 0  # worst lateness of an edge behind its schedule
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self.request = None

    def start(self) -> None:
        ls = self.gpiod.LineSettings(direction=self.line_mod.Direction.OUTPUT,
                                     output_value=self.line_mod.Value.INACTIVE)
        self.request = self.gpiod.request_lines(self.chip, consumer=self.consumer, config={self.line: ls})
        self._halt.clear()
        self._thread = threading.Thread(target=self._run, name="synchub-pulse-out", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        if self.request is not None:
            self.request.set_value(self.line, self.line_mod.Value.INACTIVE)
            self.request.release()
            self.request = None

    def _edges(self, k: int, t0: int) -> list[tuple[int, int]]:
        if self.bit_ns:
            return encode_barcode(k & 0xFFFF_FFFF, t0, self.bit_ns)
        return [(t0, 1), (t0 + self.width_ns, 0)]

    def _run(self) -> None:
        Value = self.line_mod.Value
        t0 = (time.monotonic_ns() // self.period_ns + 1) * self.period_ns
        k = 0
        while not self._halt.is_set():
            for t, level in self._edges(k, t0):
                while (wait := t - time.monotonic_ns()) > 0:
                    if self._halt.wait(min(wait, 200_000_000) / NS):
                        return
                self.late_ns = max(self.late_ns, time.monotonic_ns() - t)
                self.request.set_value(self.line, Value.ACTIVE if level else Value.INACTIVE)
            self.emitted.append((t0, k))
            k += 1
            t0 += self.period_ns
