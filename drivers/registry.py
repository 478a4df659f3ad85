"""Which driver reads a ``[[stream]]``: name -> module, settings class, driver class (imported lazily, so the
agent only loads what its config uses)."""

from __future__ import annotations

from dataclasses import dataclass


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
    "v4l2": DriverEntry(
        "synchub.drivers.capture.v4l2", "V4l2Settings", "V4l2CaptureDriver",
        "a V4L2 camera (USB/UVC webcam) read as small grayscale frames through ffmpeg or another raw-gray-to-stdout "
        "program",
    ),
}
