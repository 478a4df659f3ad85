"""The Linux kernel PPS API (RFC 2783 as ``<linux/pps.h>`` implements it) in Python: ioctl numbers, struct
layouts and the three calls synchub uses on ``/dev/ppsN``.

``PPS_FETCH`` fills ``struct pps_fdata``: the sequence numbers and timestamps (CLOCK_REALTIME, ``struct pps_ktime``:
s64 sec, s32 nsec, u32 flags) of the latest assert and clear events.  With a timeout it first waits for the next
event (``ETIMEDOUT`` if none comes); with ``flags = PPS_TIME_INVALID`` it waits forever; with a zero timeout it
returns the latest event at once (``pps_cdev_pps_fetch`` in drivers/pps/pps.c).  The header declares the ioctls
with a *pointer* size (``_IOWR('p', 0xa4, struct pps_fdata *)``), so their numbers differ between 32- and 64-bit
userspace; the structs use native alignment (``struct`` format ``@``).  tests/test_pps.py compiles a C program
against this machine's <linux/pps.h> and checks every number and offset here.

A device handle is anything with ``ioctl(request, buffer)`` (the buffer is a ``bytearray`` the call fills in) and
``close()``: ``DevFile`` is the real one (``os.open`` + ``fcntl.ioctl``); tests/fakes/pps.py mimics a device.
"""

from __future__ import annotations

import fcntl
import math
import os
import struct
from dataclasses import dataclass

from synchub.agent.core.units import NS

PPS_CAPTUREASSERT = 0x01
PPS_CAPTURECLEAR = 0x02
PPS_CAPTUREBOTH = 0x03
PPS_OFFSETASSERT = 0x10
PPS_OFFSETCLEAR = 0x20
PPS_CANWAIT = 0x100
PPS_TSFMT_TSPEC = 0x1000
PPS_TIME_INVALID = 0x01
PPS_API_VERS = 1

_PTR = struct.calcsize("P")
_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction: int, nr: int, size: int = _PTR) -> int:
    return (direction << 30) | (size << 16) | (ord("p") << 8) | nr


PPS_GETPARAMS = _ioc(_IOC_READ, 0xA1)
PPS_SETPARAMS = _ioc(_IOC_WRITE, 0xA2)
PPS_GETCAP = _ioc(_IOC_READ, 0xA3)
PPS_FETCH = _ioc(_IOC_READ | _IOC_WRITE, 0xA4)

KTIME = struct.Struct("@qiI")  # struct pps_ktime
KPARAMS = struct.Struct("@ii qiI qiI")  # struct pps_kparams
FDATA = struct.Struct("@II qiI qiI i qiI")  # struct pps_fdata: pps_kinfo + timeout
INT = struct.Struct("@i")


@dataclass(frozen=True)
class PpsInfo:
    """One ``PPS_FETCH`` answer: the latest assert and clear events (realtime ns; 0 before the first)."""

    assert_seq: int
    assert_ns: int
    clear_seq: int
    clear_ns: int
    mode: int


def pack_fdata(timeout_s: float | None) -> bytearray:
    """A ``struct pps_fdata`` to hand to ``PPS_FETCH``: ``None`` waits forever, 0 returns at once."""
    if timeout_s is None:
        sec, nsec, flags = 0, 0, PPS_TIME_INVALID
    else:
        frac, whole = math.modf(max(0.0, timeout_s))
        sec, nsec, flags = int(whole), int(round(frac * NS)), 0
    return bytearray(FDATA.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, sec, nsec, flags))


def unpack_fdata(buf: bytes) -> PpsInfo:
    a_seq, c_seq, a_sec, a_nsec, _af, c_sec, c_nsec, _cf, mode, *_ = FDATA.unpack(bytes(buf))
    return PpsInfo(a_seq, a_sec * NS + a_nsec, c_seq, c_sec * NS + c_nsec, mode)


def fetch(dev, timeout_s: float | None) -> PpsInfo:
    """``PPS_FETCH``; raises ``TimeoutError`` (ETIMEDOUT) when no event came within ``timeout_s``."""
    buf = pack_fdata(timeout_s)
    dev.ioctl(PPS_FETCH, buf)
    return unpack_fdata(buf)


def get_cap(dev) -> int:
    buf = bytearray(INT.size)
    dev.ioctl(PPS_GETCAP, buf)
    return INT.unpack(bytes(buf))[0]


def get_params(dev) -> tuple[int, int]:
    """(api_version, mode) of ``PPS_GETPARAMS``."""
    buf = bytearray(KPARAMS.size)
    dev.ioctl(PPS_GETPARAMS, buf)
    api, mode, *_ = KPARAMS.unpack(bytes(buf))
    return api, mode


class DevFile:
    """A real ``/dev/ppsN`` opened read-only (fetching needs no write access; setting parameters needs
    CAP_SYS_TIME, which synchub never asks for)."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def ioctl(self, request: int, buf: bytearray) -> None:
        fcntl.ioctl(self.fd, request, buf, True)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
