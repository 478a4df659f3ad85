"""Settings of the simulated rig: the ``[sim]`` table of an agent config or a ``synchub sim`` config.

Without ``devices``/``triggers`` keys the standard rig runs (``DEFAULT_DEVICES``, ``DEFAULT_TRIGGERS``)::

    [sim]
    seed = 7
    duration_s = 3600          # length of the simulated world (events, clock drift); the rig stops there
    [sim.world]                # event rates (WorldSpec)
    tap_rate = 0.5

A ``[[sim.device]]`` list replaces the standard devices; each device has a ``[sim.device.clock]`` table
(``ClockSpec``).  ``only = ["imu0", "sync"]`` keeps just the named standard devices/triggers.
"""

from __future__ import annotations

from dataclasses import dataclass

from synchub.agent.core.settings import setting

from .clocks import ClockSpec
from .world import WorldSpec

WIRES = ("imu-bin", "tlm-nmea", "log-text", "capture")
SIM_MODALITIES = ("imu", "telemetry", "text", "audio", "video")
DEFAULT_WIRE = {"imu": "imu-bin", "telemetry": "tlm-nmea", "text": "log-text", "audio": "capture", "video": "capture"}


@dataclass(frozen=True)
class SimDevice:
    """One simulated device."""

    name: str = setting(doc="device name; `port = \"sim:NAME\"` or `device = \"NAME\"` points at it")
    modality: str = setting(choices=SIM_MODALITIES, doc="what it senses")
    rate_hz: float = setting(0.0, min=0.0, doc="sample rate on its own clock (0: irregular, the event log)")
    wire: str = setting("", choices=("", *WIRES), doc="wire format (empty: the modality's usual one)")
    clock: ClockSpec = setting(ClockSpec(), doc="its clock and link to the host")
    triggers: tuple[str, ...] = setting((), doc="trigger trains it sees on an input pin (imu-bin reports edges)")
    period_samples: int = setting(0, min=0, doc="capture: samples per period/buffer (0: 20 ms of audio, 1 frame)")
    chunk_ms: float = setting(40.0, min=5.0, max=1000.0, doc="render this much at a time")
    params_seed: int = setting(-1, doc="-1: standard renderer params; >= 0: random augmentation params from it")

    @property
    def wire_format(self) -> str:
        return self.wire or DEFAULT_WIRE[self.modality]


@dataclass(frozen=True)
class SimTrigger:
    """A trigger pulse train on the reference clock, read by a GPIO back end (``backend = "sim"``)."""

    name: str = setting("sync", doc="trigger name; a [[trigger]] with backend = \"sim\" of this name reads it")
    period_s: float = setting(1.0, min=0.001, doc="pulse period")
    width_s: float = setting(0.010, min=0.0, doc="pulse width")
    phase_s: float = setting(0.5, min=0.0, doc="first rising edge, seconds after the rig starts")
    kernel_jitter_us: float = setting(2.0, min=0.0, doc="spread of the kernel's edge timestamps (1 us + up to this)")
    mode: str = setting("pulse", choices=("pulse", "barcode"), doc="plain pulses, or a 32-bit barcode every period "
                                                                   "(value = barcode index; synchub.agent.clock.barcode)")
    bit_s: float = setting(0.010, min=0.0001, doc="barcode bit time (a barcode takes 35 bits + 10 idle)")
    stop_s: float = setting(0.0, min=0.0, doc="the train stops this many seconds after the world's start, on the "
                                              "GPIO line and every device pin alike (the trigger box off; 0: never)")
    resume_s: float = setting(0.0, min=0.0, doc="... and starts again at this time (0: never)")

    def __post_init__(self) -> None:
        if self.mode == "pulse" and self.width_s >= self.period_s:
            raise ValueError(f"trigger {self.name!r}: width_s must be shorter than period_s")
        if self.resume_s and self.resume_s <= self.stop_s:
            raise ValueError(f"trigger {self.name!r}: resume_s must come after stop_s")
        if self.mode == "barcode" and 45 * self.bit_s > self.period_s:
            raise ValueError(f"trigger {self.name!r}: a barcode needs period_s >= 45 * bit_s ({45 * self.bit_s:g} s)")


USB = dict(latency_min_ms=1.0, latency_max_ms=16.0, latency_kind="usb-buffer")

DEFAULT_DEVICES: tuple[SimDevice, ...] = (
    SimDevice(
        name="imu0",
        modality="imu",
        rate_hz=200.0,
        clock=ClockSpec(
            offset_s=1234.5678, drift_ppm=30.0, random_walk_ppm=1.0, drop_rate=2e-4, drop_burst=2,
            resets_at_s=(1800.0,), reset_offset_s=0.0, counter_bits=32, tick_hz=1e6, **USB,
        ),
        triggers=("sync",),
    ),
    SimDevice(
        name="tlm0",
        modality="telemetry",
        rate_hz=10.0,
        clock=ClockSpec(offset_s=86.0, drift_ppm=-45.0, random_walk_ppm=0.5, counter_bits=32, tick_hz=1000.0, **USB),
    ),
    SimDevice(
        name="log0",
        modality="text",
        clock=ClockSpec(offset_s=3.25, drift_ppm=12.0, random_walk_ppm=0.5, jitter_us=200.0, counter_bits=32,
                        tick_hz=1e6, **USB),
    ),
    SimDevice(
        name="mic0",
        modality="audio",
        rate_hz=16000.0,
        # a USB audio-class microphone: isochronous transfers + the ALSA period, a few ms behind the sound
        clock=ClockSpec(drift_ppm=-80.0, random_walk_ppm=0.3, latency_min_ms=4.0, latency_max_ms=10.0),
    ),
    SimDevice(
        name="cam0",
        modality="video",
        rate_hz=30.0,
        # a UVC webcam: exposure readout, USB transfer and the driver put a frame tens of ms behind the scene
        clock=ClockSpec(drift_ppm=50.0, random_walk_ppm=0.3, latency_min_ms=30.0, latency_max_ms=60.0,
                        latency_kind="exponential"),
    ),
)

DEFAULT_TRIGGERS: tuple[SimTrigger, ...] = (SimTrigger(),)


@dataclass(frozen=True)
class SimUnplug:
    """A scheduled unplug of a serial device: its pty goes away at ``at_s`` (seconds after the rig starts) and a new
    one appears ``for_s`` later, as when a USB cable is pulled and plugged back (``synchub sim --links`` follows)."""

    device: str = setting(doc="the serial sim device to unplug")
    at_s: float = setting(min=0.0, doc="when, seconds after the rig starts")
    for_s: float = setting(min=0.01, doc="how long it stays unplugged")


@dataclass(frozen=True)
class SimSettings:
    seed: int = setting(0, doc="seed of the world, the clocks and the sensor noise")
    duration_s: float = setting(4 * 3600.0, min=1.0, max=7 * 86400.0, doc="length of the simulated world")
    world: WorldSpec = setting(WorldSpec(), doc="event rates")
    device: tuple[SimDevice, ...] = setting(DEFAULT_DEVICES, doc="the simulated devices (default: the standard rig)")
    trigger: tuple[SimTrigger, ...] = setting(DEFAULT_TRIGGERS, doc="trigger pulse trains (default: sync, 1 Hz)")
    only: tuple[str, ...] = setting((), doc="run only these devices/triggers (empty: all)")
    unplug: tuple[SimUnplug, ...] = setting((), doc="scheduled unplugs of serial devices ([[sim.unplug]])")

    def __post_init__(self) -> None:
        names = [d.name for d in self.device] + [t.name for t in self.trigger]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate sim device/trigger names: {', '.join(dup)}")
        unknown = sorted(set(self.only) - set(names))
        if unknown:
            raise ValueError(f"only: no sim device or trigger named {', '.join(unknown)}; allowed: {', '.join(names)}")
        trig = {t.name for t in self.trigger}
        for d in self.device:
            if d.wire and d.wire != "capture" and d.modality in ("audio", "video"):
                raise ValueError(f"device {d.name!r}: {d.modality} devices use wire = 'capture'")
            if d.wire_format == "capture" and d.modality not in ("audio", "video"):
                raise ValueError(f"device {d.name!r}: wire 'capture' is for audio/video devices")
            if d.wire_format != DEFAULT_WIRE.get(d.modality, d.wire_format) and d.wire_format != "capture":
                raise ValueError(f"device {d.name!r}: a {d.modality} device speaks {DEFAULT_WIRE[d.modality]!r}")
            if d.modality != "text" and d.rate_hz <= 0:
                raise ValueError(f"device {d.name!r}: rate_hz must be > 0 for {d.modality}")
            for t in d.triggers:
                if t not in trig:
                    raise ValueError(f"device {d.name!r}: no sim trigger named {t!r}; allowed: {', '.join(trig)}")
        serial = [d.name for d in self.devices if d.wire_format != "capture"]
        for u in self.unplug:
            if u.device not in serial:
                raise ValueError(f"unplug: no serial sim device named {u.device!r}; allowed: {', '.join(serial)}")

    @property
    def devices(self) -> tuple[SimDevice, ...]:
        return tuple(d for d in self.device if not self.only or d.name in self.only)

    @property
    def triggers(self) -> tuple[SimTrigger, ...]:
        return tuple(t for t in self.trigger if not self.only or t.name in self.only)

    def find(self, name: str) -> SimDevice:
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(name)
