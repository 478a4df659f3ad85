"""The options every driver shares: ``StreamCommon`` (the keys of every ``[[stream]]`` table) and
``TriggerSettings`` (a ``[[trigger]]`` table: a host-side trigger input, read by ``synchub.drivers.gpio``).

Drivers are built from these and their own settings class; the config loader (``synchub.agent.config.loader``) validates a
file into them.  Frozen dataclasses with ``setting`` metadata (``synchub.agent.core.settings``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings import setting
from .stream import CHANNEL_FORMATS, MODALITIES

#: Clock correction methods a stream may force (``auto``: the best evidence it has).
STREAM_METHODS = ("auto", "identity", "arrival", "triggers", "probes", "neural", "hybrid")


@dataclass(frozen=True)
class TriggerSettings:
    name: str = setting(doc="trigger line name; streams that see it say trigger = NAME")
    backend: str = setting("gpiod", choices=("gpiod", "rpi-gpio", "pps", "sim"),
                           doc="GPIO back end; pps: a kernel PPS device (/dev/ppsN), for a pin the pps-gpio overlay holds")
    chip: str = setting("/dev/gpiochip0", doc="gpiod: GPIO chip path")
    line: int = setting(0, min=0, doc="GPIO line offset (gpiod) or BCM pin (rpi-gpio)")
    device: str = setting("/dev/pps0", doc="pps: the kernel PPS device")
    edge: str = setting("rising", choices=("rising", "falling", "both"),
                        doc="edges to timestamp (pps: rising = assert events, falling = clear events)")
    event_clock: str = setting(
        "monotonic", choices=("monotonic", "realtime", "hte"), doc="gpiod: kernel clock of edge timestamps"
    )
    debounce_us: int = setting(0, min=0, doc="debounce period (0: off)")
    role: str = setting(
        "sync", choices=("sync", "pps", "barcode", "harp", "harp-clock"),
        doc="sync pulses, GPS PPS (UTC seconds), barcodes, synchub's 1 kbaud Harp-style code, the real Harp clock "
            "(100 kbaud)"
    )
    period_s: float = setting(1.0, min=0.0, doc="nominal pulse period (0: aperiodic)")
    min_width_us: float = setting(0.0, min=0.0, doc="pulses narrower than this are rejected")


@dataclass(frozen=True)
class StreamCommon:
    """Keys every [[stream]] table has; the rest belong to its driver."""

    name: str = setting(doc="stream name (unique)")
    type: str = setting(doc="modality", choices=MODALITIES)
    driver: str = setting(doc="driver that reads this stream")
    nominal_rate: float = setting(0.0, min=0.0, doc="nominal sample rate in Hz (0: irregular)")
    channel_format: str = setting("float32", choices=tuple(CHANNEL_FORMATS), doc="LSL channel format")
    channel_labels: tuple[str, ...] = setting((), doc="channel labels")
    channel_units: tuple[str, ...] = setting((), doc="channel units")
    source_id: str = setting("", doc="device serial number or other stable id")
    trigger: str = setting("", doc="name of a [[trigger]] whose pulses this device also sees")
    method: str = setting("auto", choices=STREAM_METHODS, doc="clock correction method for this stream")
    align_to: str = setting("", doc="neural alignment: the stream (already on the clock) to align this one to")
    correction_delay_ms: float = setting(0.0, min=0.0, max=600000.0,
                                         doc="hold this stream's chunks at least this long before correcting them "
                                             "(0: the agent's delay); with align_to, ~10000 lets the aligner's "
                                             "window after each sample count (README: live alignment)")
    markers: tuple[dict, ...] = setting((), doc="a marker stream: what its lines mean, rules {pattern (regex), "
                                        "senses (audible/visible/motion), latency_ms, spread_ms, streams, smooth, "
                                        "still_fraction, still_lag_ms, end_senses}; first match decides "
                                        "(default: common words for sounds, light, knocks); a line logging an "
                                        "end (tone_off, stopped) is seen only by end_senses (default visible)")
