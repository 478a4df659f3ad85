"""The config reference (``synchub config --reference``, docs/CONFIG.md): every section and key with its type,
default, allowed values and one line of doc, generated from the settings classes themselves."""

from __future__ import annotations

from synchub.agent.clock.settings import ClockSettings
from synchub.agent.core.options import StreamCommon, TriggerSettings
from synchub.agent.core.settings import reference
from synchub.drivers import registry
from synchub.drivers.sim.settings import SimSettings

from .schema import AgentSettings, LslOutletSettings


def reference_text() -> str:
    out = []
    for title, cls in (("[agent]", AgentSettings), ("[clock]", ClockSettings), ("[[trigger]]", TriggerSettings),
                       ("[[stream]] (every driver)", StreamCommon)):
        out.append(title)
        out += ["  " + line for line in reference(cls)]
    for name in registry.names():
        try:
            loaded = registry.load(name)
        except (ImportError, AttributeError) as exc:
            out.append(f"[[stream]] driver = {name!r}: unavailable ({exc})")
            continue
        origin = "" if loaded.origin == "built-in" else f" [{loaded.origin}]"
        out.append(f"[[stream]] driver = {name!r}: {loaded.doc}{origin}")
        out += ["  " + line for line in reference(loaded.settings)]
    out.append("[lsl]")
    out += ["  " + line for line in reference(LslOutletSettings)]
    out.append("[sim]")
    out += ["  " + line for line in reference(SimSettings)]
    return "\n".join(out)
