"""What the ALSA and V4L2 drivers share: a capture program run as a subprocess (no shell), its stdout read on the
driver's own thread, frames stamped with the host receive time and a device time from the frame counter at the
nominal rate (``origin + k / rate``: the device's own clock as far as a pipe shows it).

A read that ends inside a frame keeps the partial frame for the next read: no frame is ever split or lost.  When
the program exits or stops delivering (USB unplugged) the driver logs it, reports a ``disconnect`` problem and
restarts the program every ``restart_s``.  When frames flow again it records a ``disconnect`` gap (the frames the
outage cost, estimated from host time at the nominal rate, bracketed by the last device time before and the first
after) and a clock reset (``reset``): the restarted capture has a new phase, so it starts a new clock segment.  The
frame counter continues, but the new segment's origin also jumps ``SEGMENT_JUMP_NS`` ahead, so that device time
alone shows the reset too: the clock layer sees one where it jumps forward by far more than host time advanced
(``ClockModel.reset_forward_ns``, 10 s).  Device times stay unique and increasing.

The program's stderr is logged line by line (never fatal); ``overrun`` lines (arecord's xrun report) are counted
and reported as problems.  A missing program is a clear ``FileNotFoundError`` naming the Debian package to install.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import subprocess
import threading
import time
from typing import Any

import numpy as np

from synchub.agent.core.units import NS
from synchub.drivers.base import Driver, DriverSink

#: How far a restarted capture's device time jumps ahead of the outage (see the module docstring).
SEGMENT_JUMP_NS = 100 * NS
#: A running program that delivers nothing for this long (or 10 periods, if longer) is restarted.
STALL_S = 3.0


def capture_rate(nominal: float, given: float, key: str, what: str) -> float:
    """The rate a capture runs at: its own key ``key`` (``given``, 0: unset) or the stream's ``nominal_rate``; when
    both are set they must agree.  ``what`` names it in the error when neither is (``"an ALSA stream needs a sample
    rate"``)."""
    if given and nominal and abs(nominal - given) > 1e-9 * given:
        raise ValueError(f"{key} {given:g} does not match nominal_rate {nominal:g}")
    rate = given or nominal
    if not rate:
        raise ValueError(f"{what}: set nominal_rate (or {key})")
    return float(rate)


def fill_command(template, fields: dict[str, str]) -> list[str]:
    """A capture program's argv with its ``{name}`` placeholders filled in."""
    argv = []
    for arg in template:
        for key, value in fields.items():
            arg = arg.replace("{" + key + "}", value)
        argv.append(arg)
    return argv


#: Default capture programs, what they capture and the Debian package that has them.
PROGRAMS = {"arecord": ("ALSA", "alsa-utils"), "ffmpeg": ("video", "ffmpeg")}


def find_program(argv: list[str]) -> str:
    """The capture program's path; FileNotFoundError naming what to install when it is missing."""
    path = shutil.which(argv[0])
    if path is None:
        name = os.path.basename(argv[0])
        if name in PROGRAMS:
            what, package = PROGRAMS[name]
            raise FileNotFoundError(f"the {what} capture program {name!r} is not installed: install the Debian "
                                    f"package {package} (sudo apt install {package}), or set `command`")
        raise FileNotFoundError(f"capture program {argv[0]!r} not found (or not executable); check `command`")
    return path


class CaptureDriver(Driver):
    """A capture program's frames as a stream (see the module docstring).  A subclass sets the stream info, its
    settings (with ``restart_s``), ``argv``, ``rate``, ``frame_bytes``, ``read_bytes`` and ``stall_s`` and then calls
    ``_init_run_state``; its ``_samples(raw, n)`` turns ``n`` frames of raw bytes into the stream's samples."""

    #: prefix of the reader thread's name (and of the logger: ``synchub.<prefix>``)
    thread_prefix = "capture"

    def _init_run_state(self) -> None:
        """Process, thread and clock-segment state."""
        self.log = logging.getLogger(f"synchub.{self.thread_prefix}")
        self.period_ns = NS / self.rate
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        # clock segment state: device time of sample k is origin + k * period
        self._origin = 0
        self._k = 0
        self._last_dev: int | None = None
        self._last_host = 0
        self._outage: str | None = None  # why the capture stopped, until samples flow again
        self.starts = 0
        self.exits = 0
        self.split_reads = 0  # reads that ended inside a frame (the rest waited for the next read)
        self.overruns = 0
        self.stderr_lines = 0
        self.last_stderr = ""

    # ---- life cycle
    def start(self, sink: DriverSink) -> None:
        find_program(self.argv)
        self.sink = sink
        self._thread = threading.Thread(target=self._run, name=f"{self.thread_prefix}-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            _end(proc)
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self._outage is not None and self._last_dev is not None:  # stopped during an outage: still a loss
            lost = max(0, round((time.monotonic_ns() - self._last_host) * self.rate / NS))
            self._gap(lost, "disconnect", self._last_dev, 0, f"{self._outage}; stopped before the capture came back")

    def health(self) -> dict[str, Any]:
        h = super().health()
        h.update(running=self._proc is not None and self._outage is None, starts=self.starts, exits=self.exits,
                 overruns=self.overruns, split_reads=self.split_reads, resets=self.stats.resets)
        return h

    # ---- the driver thread
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, bufsize=0)
            except OSError as exc:
                self._lost(f"cannot start {self.argv[0]}: {exc}")
                self._stop.wait(self.settings.restart_s)
                continue
            with self._lock:
                self._proc = proc
            if self._stop.is_set():
                _end(proc)
            self.starts += 1
            if self.starts > 1:
                self.log.info("%s: capture restarted (%s)", self.name, " ".join(self.argv))
            err = threading.Thread(target=self._read_stderr, args=(proc,), name=f"{self.thread_prefix}-{self.name}-stderr",
                                   daemon=True)
            err.start()
            why = self._read(proc)
            rc = _end(proc)
            proc.stdout.close()
            err.join(timeout=1.0)
            with self._lock:
                self._proc = None
            if self._stop.is_set():
                break
            self.exits += 1
            tail = f": {self.last_stderr}" if self.last_stderr else ""
            self._lost(f"{why} (exit status {rc}){tail}")
            self._stop.wait(self.settings.restart_s)

    def _lost(self, why: str) -> None:
        if self._outage is None:
            self.log.warning("%s: capture from %s stopped: %s; restarting every %.1f s", self.name, self.settings.device,
                        why, self.settings.restart_s)
            self.sink.problem(self.name, "disconnect", why)
            self._outage = why

    def _read(self, proc: subprocess.Popen) -> str:
        """Read until the program ends or stalls; returns why it ended."""
        fd = proc.stdout.fileno()
        buf = bytearray()
        quiet_since = time.monotonic()
        while True:
            ready, _, _ = select.select([fd], [], [], 0.25)
            if not ready:
                if self._stop.is_set():
                    return "stopped"
                if time.monotonic() - quiet_since > self.stall_s:
                    return f"no data for {self.stall_s:.1f} s"
                continue
            data = os.read(fd, self.read_bytes)
            host_ns = time.monotonic_ns()
            if not data:
                break
            quiet_since = time.monotonic()
            buf += data
            n = len(buf) // self.frame_bytes
            if len(buf) % self.frame_bytes:
                self.split_reads += 1
            if n:
                raw = bytes(buf[: n * self.frame_bytes])
                del buf[: n * self.frame_bytes]
                self._deliver(raw, n, host_ns)
        if buf:  # less than one frame when the program ended: it never was a sample
            self.stats.malformed += 1
            self.sink.problem(self.name, "malformed", f"{len(buf)} bytes (a partial frame) at the end of the output")
        return "capture program exited"

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        try:
            for raw in proc.stderr:
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                self.stderr_lines += 1
                self.last_stderr = line[:300]
                if "overrun" in line.lower():
                    self.overruns += 1
                    self.stats.count("overrun")
                    self.sink.problem(self.name, "overrun", line)
                elif self.stderr_lines <= 100 or self.stderr_lines % 1000 == 0:
                    self.log.warning("%s: %s: %s", self.name, os.path.basename(self.argv[0]), line)
        except Exception:  # stderr is only for the log: never let it take the driver down
            self.log.exception("%s: reading the capture program's stderr failed", self.name)

    # ---- samples
    def _samples(self, raw: bytes, n: int):
        raise NotImplementedError

    def _deliver(self, raw: bytes, n: int, host_ns: int) -> None:
        if self._outage is not None and self._last_dev is not None:
            self._new_segment(n, host_ns)
        self._outage = None
        dev = self._origin + np.rint((self._k + np.arange(n)) * self.period_ns).astype(np.int64)
        self._k += n
        self._last_dev, self._last_host = int(dev[-1]), host_ns
        data = self._samples(raw, n)
        self.stats.samples += n
        self.stats.chunks += 1
        self.sink.samples(self.name, data, dev, np.full(n, host_ns, dtype=np.int64))

    def _new_segment(self, n: int, host_ns: int) -> None:
        """Samples flow again after an outage: record the loss and start a new clock segment."""
        covered = int(round(n * self.period_ns))  # the first read's own samples span this much of the outage
        outage_ns = max(0, host_ns - self._last_host - covered)
        lost = round(outage_ns * self.rate / NS)
        self._origin = self._last_dev + int(round(self.period_ns)) + outage_ns + SEGMENT_JUMP_NS
        self._k = 0
        why = self._outage
        self.log.info("%s: samples flow again after %.2f s; new clock segment", self.name, outage_ns / NS)
        self._gap(lost, "disconnect", self._last_dev, self._origin,
                  f"{why}; {lost} samples lost (estimated from host time at the nominal rate)")
        self.stats.resets += 1
        self.sink.reset(self.name, self._origin, self._last_dev,
                        f"capture restarted: new clock segment (device time jumps {SEGMENT_JUMP_NS // NS} s ahead)")

    def _gap(self, count: int, cause: str, dev_from: int, dev_to: int, detail: str) -> None:
        self.stats.gaps += 1
        self.stats.dropped += count
        self.sink.gap(self.name, count, cause, dev_from, dev_to, detail)


def _end(proc: subprocess.Popen) -> int | None:
    """Terminate the program if it still runs (kill it if it will not go); its exit status."""
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=2.0)
        except OSError:  # already gone
            pass
    return proc.returncode
