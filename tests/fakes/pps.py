"""A fake Linux PPS device (``/dev/ppsN``) behind the same ioctl interface as the kernel's, byte for byte.

Written from <linux/pps.h> and drivers/pps/pps.c, independently of ``synchub.drivers.gpio.pps_abi`` (its own
ioctl numbers and struct layout, so a mistake on one side is not copied to the other):

* requests are decoded like the kernel's ``_IOC`` numbers; an unknown one fails with ENOTTY, a buffer of the wrong
  size with EFAULT;
* ``PPS_FETCH`` honours the timeout: ``flags & PPS_TIME_INVALID`` waits forever for the next event, a non-zero
  timeout waits up to it (converted to jiffies, HZ=250, like the kernel) and fails with ETIMEDOUT, a zero timeout
  returns at once; it reports the latest assert/clear sequence numbers and CLOCK_REALTIME stamps and the mode;
* the device keeps only the latest event of each kind (later pulses overwrite earlier ones);
* ``PPS_GETCAP`` gives the capabilities, ``PPS_GETPARAMS`` the API version and mode, ``PPS_SETPARAMS`` needs
  CAP_SYS_TIME (EPERM here unless ``cap_sys_time``);
* ``unplug()`` makes every later call fail with ENODEV, like a USB GPS pulled out.

``FakePps.open(path)`` is the back end's opener (``make_trigger_input(settings, module=FakePps(...))``).
"""

from __future__ import annotations

import errno
import os
import struct
import threading
import time

CAPTUREASSERT, CAPTURECLEAR, CANWAIT, TSFMT_TSPEC, TIME_INVALID = 0x01, 0x02, 0x100, 0x1000, 0x01
HZ = 250
_LONG = struct.calcsize("l")  # sizeof(void *) on Linux


def _ioc(d: int, nr: int) -> int:  # _IOC(dir, 'p', nr, sizeof(pointer)) from asm-generic/ioctl.h
    return (d << 30) | (_LONG << 16) | (0x70 << 8) | nr


GETPARAMS, SETPARAMS, GETCAP, FETCH = _ioc(2, 0xA1), _ioc(1, 0xA2), _ioc(2, 0xA3), _ioc(3, 0xA4)
# struct pps_ktime {__s64 sec; __s32 nsec; __u32 flags;} = 16 bytes, 8-aligned
# struct pps_kinfo {__u32 assert_sequence, clear_sequence; pps_ktime assert_tu, clear_tu; int current_mode;} = 48
# struct pps_fdata {pps_kinfo info; pps_ktime timeout;} = 64; struct pps_kparams {int api, mode; 2 x pps_ktime} = 40
_SIZES = {GETPARAMS: 40, SETPARAMS: 40, GETCAP: 4, FETCH: 64}


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class FakePps:
    def __init__(self, path: str = "/dev/pps0", mode: int = CAPTUREASSERT | TSFMT_TSPEC,
                 caps: int = CAPTUREASSERT | CAPTURECLEAR | CANWAIT | TSFMT_TSPEC, cap_sys_time: bool = False):
        self.path, self.mode, self.caps, self.cap_sys_time = path, mode, caps, cap_sys_time
        self.seq = {"assert": 0, "clear": 0}
        self.stamp = {"assert": (0, 0), "clear": (0, 0)}
        self.last_ev = 0
        self.cond = threading.Condition(threading.RLock())
        self.gone = False
        self.opened = 0
        self.calls: list[int] = []

    # ---- test hooks
    def pulse(self, realtime_ns: int | None = None, kind: str = "assert") -> None:
        """An event as pps_event() records it: only if the mode captures that kind."""
        t = time.time_ns() if realtime_ns is None else int(realtime_ns)
        bit = CAPTUREASSERT if kind == "assert" else CAPTURECLEAR
        with self.cond:
            if not self.mode & bit:
                return
            self.seq[kind] += 1
            self.stamp[kind] = divmod(t, 1_000_000_000)
            self.last_ev += 1
            self.cond.notify_all()

    def burst(self, stamps_ns, kind: str = "assert") -> None:
        """Several events before any reader wakes (the reader stalled): only the last one stays readable."""
        with self.cond:
            for t in stamps_ns:
                self.pulse(t, kind)

    def unplug(self) -> None:
        with self.cond:
            self.gone = True
            self.cond.notify_all()

    # ---- the device file
    def open(self, path: str):
        if path != self.path or self.gone:
            raise _err(errno.ENOENT)
        self.opened += 1
        return _File(self)


class _File:
    def __init__(self, dev: FakePps):
        self.dev = dev
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def ioctl(self, request: int, buf: bytearray) -> None:
        d = self.dev
        if self.closed:
            raise _err(errno.EBADF)
        if d.gone:
            raise _err(errno.ENODEV)
        d.calls.append(request)
        if request not in _SIZES:
            raise _err(errno.ENOTTY)
        if not isinstance(buf, bytearray) or len(buf) != _SIZES[request]:
            raise _err(errno.EFAULT)
        if request == GETCAP:
            buf[:] = struct.pack("=i", d.caps)
        elif request == GETPARAMS:
            buf[:] = struct.pack("=ii", 1, d.mode) + bytes(32)
        elif request == SETPARAMS:
            if not d.cap_sys_time:
                raise _err(errno.EPERM)
            d.mode = struct.unpack_from("=i", buf, 4)[0]
        else:
            self._fetch(buf)

    def _fetch(self, buf: bytearray) -> None:
        d = self.dev
        sec, nsec, flags = struct.unpack_from("=qiI", buf, 48)
        with d.cond:
            ev = d.last_ev
            if flags & TIME_INVALID:
                d.cond.wait_for(lambda: d.last_ev != ev or d.gone)
            else:
                ticks = sec * HZ + nsec // (1_000_000_000 // HZ)
                if ticks and not d.cond.wait_for(lambda: d.last_ev != ev or d.gone, ticks / HZ):
                    raise _err(errno.ETIMEDOUT)
            if d.gone:
                raise _err(errno.ENODEV)
            (a_s, a_ns), (c_s, c_ns) = d.stamp["assert"], d.stamp["clear"]
            info = struct.pack("=II", d.seq["assert"], d.seq["clear"]) + struct.pack("=qiI", a_s, a_ns, 0) + \
                struct.pack("=qiI", c_s, c_ns, 0) + struct.pack("=i", d.mode) + bytes(4)
            buf[:48] = info
