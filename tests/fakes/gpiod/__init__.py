"""Fake of the libgpiod v2 Python bindings (see tests/fakes/README.md).  Import as ``gpiod`` with tests/fakes on
sys.path; drive lines through ``gpiod._sim``."""

from __future__ import annotations

import errno

from . import _sim, line
from .edge_event import EdgeEvent
from .line_request import LineRequest, RequestReleasedError
from .line_settings import LineSettings

__version__ = "2.2.0"
api_version = "2.1"

__all__ = ["EdgeEvent", "LineRequest", "LineSettings", "RequestReleasedError", "line", "request_lines",
           "is_gpiochip_device"]


def is_gpiochip_device(path: str) -> bool:
    return path in _sim.CHIPS


def request_lines(path: str, consumer: str | None = None, config: dict | None = None, output_values=None,
                  event_buffer_size: int | None = None) -> LineRequest:
    chip = _sim.CHIPS.get(path)
    if chip is None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
    flat: dict[int, LineSettings] = {}
    for lines, settings in (config or {}).items():
        for off in (lines if isinstance(lines, (tuple, list)) else (lines,)):
            if not isinstance(off, int) or not 0 <= off < chip.num_lines:
                raise ValueError(f"invalid line offset {off!r} for {path} ({chip.num_lines} lines)")
            flat[off] = settings or LineSettings()
    for req in chip.requests:
        if set(req._offsets) & set(flat):
            raise OSError(errno.EBUSY, "Device or resource busy")
    req = LineRequest(chip, consumer or "?", flat, event_buffer_size)
    chip.requests.append(req)
    return req
