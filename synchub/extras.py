"""Optional dependencies: which extra installs each, and one error for a missing one.

The runtime install (``pip install synchub``) has what the agent and the collector need.  Everything else is an
extra (pyproject.toml ``[project.optional-dependencies]``); code that needs one imports it through ``require`` (or
lets the ``ModuleNotFoundError`` reach ``synchub.cli``, which prints the same one line with exit status 2).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

#: top-level module -> (extra, what it is for)
EXTRAS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("neural", "neural alignment and fusion (ONNX encoders)"),
    "matplotlib": ("plot", "plots"),
    "pyxdf": ("bench", "the pyxdf baseline of the benchmarks"),
    "soundfile": ("audio", "reading sound files"),
    "av": ("video", "reading video files"),
    "pylsl": ("lsl", "LSL outlets and inlets"),
    "torch": ("train", "training the encoders"),
    "onnx": ("train", "exporting the encoders"),
    "gpiod": ("gpio", "GPIO lines through libgpiod"),
    "RPi": ("rpi", "GPIO lines through RPi.GPIO"),
    "nats": ("nats", "the NATS transport"),
    "nkeys": ("nats", "NATS credentials"),
    "pytest": ("dev", "the tests"),
    "hypothesis": ("dev", "the tests"),
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message is one line naming the extra."""


def hint(module: str) -> str:
    """`` (pip install 'synchub[EXTRA]')`` for a known optional module, else ''."""
    top = (module or "").split(".")[0]
    if top in EXTRAS:
        return f" (pip install 'synchub[{EXTRAS[top][0]}]')"
    return ""


def message(module: str, what: str = "") -> str:
    top = (module or "").split(".")[0]
    purpose = what or (EXTRAS[top][1] if top in EXTRAS else "")
    return f"{purpose + ' needs ' if purpose else ''}{top!r}, which is not installed{hint(top)}"


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, what: str = "") -> ModuleType:
    """Import ``module``; ``MissingExtra`` naming the extra when it (or its top-level package) is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.split(".")[0] == exc.name.split(".")[0]:
            raise MissingExtra(message(module, what)) from None
        raise
