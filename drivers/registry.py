"""Which driver reads a ``[[stream]]``: name -> settings class, driver class, doc (imported lazily, so the agent only
loads what its config uses).

Built-in drivers are listed in ``DRIVERS``.  Other packages add drivers through the ``synchub.drivers`` entry point
group, without editing synchub (as gpiozero finds its pin factories).  A plugin package declares, in its
``pyproject.toml``::

    [project.entry-points."synchub.drivers"]
    mydevice = "mypackage.driver:MyDeviceDriver"

The entry point's name is the ``driver = "mydevice"`` of a ``[[stream]]`` table; its object is a driver class
(``synchub.drivers.base.Driver``: ``__init__(common, settings, context)``, ``start(sink)``, ``stop()``) with a
``settings`` class attribute: the frozen dataclass of its own keys (``synchub.agent.core.settings.setting`` fields),
which the config validates like a built-in driver's.  The class docstring's first line is its documentation in
``synchub drivers`` and ``synchub config --reference``.

``names()`` lists both kinds and ``load(name)`` imports one.  A driver that fails to import (a missing extra, a
broken plugin, an entry point that is not such a class) is one line naming it and what went wrong
(``DriverUnavailable``), never a traceback; a plugin named like a built-in driver is ignored with a warning.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata

log = logging.getLogger("synchub.drivers")

GROUP = "synchub.drivers"


@dataclass(frozen=True)
class DriverEntry:
    module: str
    settings: str
    driver: str
    doc: str


DRIVERS: dict[str, DriverEntry] = {
    "serial": DriverEntry(
        "synchub.drivers.serial.port", "SerialSettings", "SerialStreamDriver",
        "a serial/USB device (pyserial); wire format picked by `format`",
    ),
    "syncbox": DriverEntry(
        "synchub.drivers.syncbox.driver", "SyncBoxSettings", "SyncBoxDriver",
        "the synchub sync box (ATmega328P firmware in firmware/): sync pulses, barcodes, edge capture, probes",
    ),
    "gpio": DriverEntry(
        "synchub.drivers.gpio.stream", "GpioStreamSettings", "GpioStreamDriver",
        "a GPIO line recorded as a stream of edges (gpiod, rpi-gpio or sim back end)",
    ),
    "sim": DriverEntry(
        "synchub.drivers.sim.capture", "SimCaptureSettings", "SimCaptureDriver",
        "a simulated non-serial device (USB microphone, camera) of the in-process simulated rig",
    ),
    "alsa": DriverEntry(
        "synchub.drivers.capture.alsa", "AlsaSettings", "AlsaCaptureDriver",
        "an ALSA capture device (USB microphone) read through arecord (alsa-utils) or another PCM-to-stdout program",
    ),
    "lsl": DriverEntry(
        "synchub.drivers.lsl.inlet", "LslSettings", "LslInletDriver",
        "an LSL outlet on the network (pylsl, the lsl extra): its timestamps as device time, time_correction as probes",
    ),
    "v4l2": DriverEntry(
        "synchub.drivers.capture.v4l2", "V4l2Settings", "V4l2CaptureDriver",
        "a V4L2 camera (USB/UVC webcam) read as small grayscale frames through ffmpeg or another raw-gray-to-stdout "
        "program",
    ),
}


class DriverUnavailable(ImportError):
    """A driver that cannot be used on this machine; the message is one line naming it."""


@dataclass(frozen=True)
class LoadedDriver:
    name: str
    settings: type
    driver: type
    doc: str
    origin: str  # "built-in" or "plugin <distribution> <version> (<module:attr>)"


@lru_cache(maxsize=1)
def _entry_points() -> dict:
    out = {}
    for ep in metadata.entry_points(group=GROUP):
        if ep.name in out:
            log.warning("driver plugin %r is installed twice (%s, %s): using the first", ep.name, out[ep.name].value,
                        ep.value)
            continue
        out[ep.name] = ep
    return out


def plugin_names() -> list[str]:
    clash = sorted(set(_entry_points()) & set(DRIVERS))
    for name in clash:
        log.warning("driver plugin %r (%s) has the name of a built-in driver: ignored", name, _entry_points()[name].value)
    return sorted(n for n in _entry_points() if n not in DRIVERS)


def rescan() -> None:
    """Forget the entry points read so far (a package was installed meanwhile)."""
    _entry_points.cache_clear()


def _doc(obj) -> str:
    return ((obj.__doc__ or "").strip().splitlines() or [""])[0]


def load_builtin(name: str, entry) -> LoadedDriver:
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise DriverUnavailable(f"driver {name!r} is unavailable on this machine: {exc}") from None
    return LoadedDriver(name, getattr(module, entry.settings), getattr(module, entry.driver), entry.doc, "built-in")


def load_plugin(name: str) -> LoadedDriver:
    ep = _entry_points()[name]
    dist = getattr(ep, "dist", None)
    origin = f"plugin {dist.name} {dist.version} ({ep.value})" if dist is not None else f"plugin ({ep.value})"
    try:
        obj = ep.load()
    except Exception as exc:  # any failure of third-party code at import is that plugin's, reported in one line
        what = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DriverUnavailable(f"driver plugin {name!r} ({origin}) is broken: {type(exc).__name__}"
                                f"{': ' + what if what else ''}") from None
    settings = getattr(obj, "settings", None)
    if not isinstance(obj, type) or not (isinstance(settings, type) and dataclasses.is_dataclass(settings)):
        raise DriverUnavailable(f"driver plugin {name!r} ({origin}) is not a synchub driver: its entry point must name "
                                "a driver class with a `settings` dataclass attribute")
    for method in ("start", "stop"):
        if not callable(getattr(obj, method, None)):
            raise DriverUnavailable(f"driver plugin {name!r} ({origin}) is not a synchub driver: no {method}()")
    return LoadedDriver(name, settings, obj, _doc(obj) or _doc(ep), origin)


def names() -> list[str]:
    """Every driver name a config may use: the built-in ones, then installed plugins."""
    return sorted(DRIVERS) + [n for n in plugin_names() if n not in DRIVERS]


def load(name: str):
    """The ``LoadedDriver`` (settings class, driver class, doc, origin) of ``name``; ``KeyError`` when there is no
    such driver, ``DriverUnavailable`` (one line) when it cannot be imported."""
    if name in DRIVERS:
        return load_builtin(name, DRIVERS[name])
    if name in plugin_names():
        return load_plugin(name)
    raise KeyError(name)
