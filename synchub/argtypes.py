"""argparse types for the numeric flags of every command: finite, in range, or a one-line usage error (exit 2).

``float`` alone accepts ``nan`` and ``inf``, which then fail deep inside (``int(nan)``, ``time.sleep(nan)``) with a
traceback."""

from __future__ import annotations

import argparse
import math


def _number(lo: float, hi: float, strict: bool):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(v) and (v > lo if strict else v >= lo) and v <= hi):
            raise argparse.ArgumentTypeError(f"{text}: allowed {'>' if strict else '>='} {lo:g} and <= {hi:g}")
        return v

    parse.__name__ = "number"  # what argparse names in "invalid number value"
    return parse


#: durations, counts of minutes, offsets: 0 allowed (most mean "off" or "until stopped")
nonnegative = _number(0.0, 1e9, strict=False)
#: intervals and rates that divide or sleep: must be above 0
positive = _number(0.0, 1e9, strict=True)
#: any finite number (a skew in ppm may be negative)
finite = _number(-1e9, 1e9, strict=False)


def bit_index(text: str) -> int:
    """A bit of an integer word: 0 (the least significant) .. 62."""
    if not text.strip().isdigit() or int(text) > 62:
        raise argparse.ArgumentTypeError(f"{text!r} is not a bit number 0..62")
    return int(text)


bit_index.__name__ = "bit"
