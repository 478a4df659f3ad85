"""Build the sync box firmware and run it in simavr through the C harness (firmware/sim/harness.c).

``SimBox`` starts ``syncbox-sim`` with its UART bridged to a pty (``box.port``, for pyserial), collects the
output pin edges (``box.out_edges``: (cycle, level, exact_cycle)), the injected input edges
(``box.injected``: (scheduled, cycle, level, host_ns)) and optionally interrupt vector entries
(``box.vectors``: (vector, cycle); ``box.retis``: cycles of RETI), and injects input edges at chosen cycles.

Simulated time is the AVR cycle counter (16 MHz).  ``realtime=True`` paces the simulation so it never runs
ahead of CLOCK_MONOTONIC (it can fall behind on a loaded machine; ``now()`` tells where it is); with
``realtime=False`` it runs as fast as it can, usually much faster than real time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"
SIM_BUILD = HERE / "sim" / "build"
ELF = BUILD / "syncbox.elf"
SIM = SIM_BUILD / "syncbox-sim"
F_CPU = 16_000_000

_build_lock = threading.Lock()


def tools_missing() -> str:
    """Why the firmware cannot be built and simulated here ('' when it can)."""
    missing = [t for t in ("avr-gcc", "avr-objcopy", "avr-size", "make", "cc") if shutil.which(t) is None]
    if not Path("/usr/include/simavr/sim_avr.h").exists():
        missing.append("libsimavr-dev (/usr/include/simavr)")
    if not Path("/usr/lib/avr/include/avr/io.h").exists():
        missing.append("avr-libc")
    return ("missing: " + ", ".join(missing)) if missing else ""


def build(extra: dict[str, str] | None = None, build_dir: Path | None = None) -> Path:
    """``make`` the firmware (ELF, HEX, sizes) and the harness; return the ELF path.  ``extra`` passes make
    variables (e.g. {"BAUD": "115200UL"}) into ``build_dir``."""
    args = [f"{k}={v}" for k, v in (extra or {}).items()]
    bdir = build_dir or BUILD
    with _build_lock:
        for cmd in (["make", "-s", "-C", str(HERE), f"BUILD={bdir}", *args],
                    ["make", "-s", "-C", str(HERE / "sim"), f"BUILD={SIM_BUILD}"]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    return bdir / "syncbox.elf"


def sizes(elf: Path = ELF) -> dict[str, int]:
    """Flash and RAM use of the ELF (avr-size -A sections)."""
    out = subprocess.run(["avr-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sec = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sec[parts[0]] = int(parts[1])
    flash = sec.get(".text", 0) + sec.get(".data", 0)
    ram = sec.get(".data", 0) + sec.get(".bss", 0) + sec.get(".noinit", 0)
    return {"flash_bytes": flash, "ram_bytes": ram, "flash_total": 32768, "ram_total": 2048}


class SimBox:
    def __init__(self, elf: Path | None = None, realtime: bool = True, vectors: bool = False,
                 inject: list[tuple[int, int]] | None = None, max_cycles: int = 0, inject_file: Path | None = None,
                 link: str | None = None, backpressure: bool = False):
        self.elf = Path(elf) if elf else ELF
        self.realtime = realtime
        self.vectors_on = vectors
        self.inject_initial = inject or []
        self.max_cycles = max_cycles
        self.inject_file = inject_file
        self.link = link  # a stable path (symlink) to the pty, like /dev/serial/by-id on a real board
        self.backpressure = backpressure  # the simulation waits for a host that falls behind reading the pty
        self.proc: subprocess.Popen | None = None
        self.port = ""
        self.out_edges: list[tuple[int, int, int]] = []
        self.injected: list[tuple[int, int, int, int]] = []
        self.vectors: list[tuple[int, int]] = []
        self.resets: list[int] = []  # cycles of "reset" commands
        self.retis: list[int] = []  # cycles of RETI instructions (with vectors=True)
        self.other: list[str] = []
        self.tx_lost = 0  # UART bytes the host did not read in time (known after stop())
        self.finished = ""
        self._cond = threading.Condition()
        self._now: list[tuple[int, int]] = []
        self._peeks: list[int] = []
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SimBox:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if not self.elf.exists() or not SIM.exists():
            build()
        cmd = [str(SIM), "-c"] + (["-p", self.link] if self.link else ["-P"])
        if self.realtime:
            cmd.append("-r")
        if self.vectors_on:
            cmd.append("-v")
        if self.backpressure:
            cmd.append("-b")
        if self.max_cycles:
            cmd += ["-n", str(self.max_cycles)]
        if self.inject_initial:
            path = self.inject_file or Path(f"/tmp/syncbox-inject-{os.getpid()}-{id(self)}.txt")
            path.write_text("".join(f"{c} {lv}\n" for c, lv in self.inject_initial))
            cmd += ["-i", str(path)]
        cmd.append(str(self.elf))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, bufsize=1)
        first = self.proc.stdout.readline()
        if not first.startswith("PTY "):
            self.stop()
            raise RuntimeError(f"syncbox-sim did not start: {first!r}")
        self.port = self.link or first.split()[1]
        self._thread = threading.Thread(target=self._read, name="syncbox-sim", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            p = line.split()
            if not p:
                continue
            with self._cond:
                k = p[0]
                if k == "O":
                    self.out_edges.append((int(p[1]), int(p[2]), int(p[3])))
                elif k == "I":
                    self.injected.append((int(p[1]), int(p[2]), int(p[3]), int(p[4])))
                elif k == "V":
                    self.vectors.append((int(p[1]), int(p[2])))
                elif k == "R":
                    self.retis.append(int(p[1]))
                elif k == "N":
                    self._now.append((int(p[1]), int(p[2])))
                elif k == "P":
                    self._peeks.append(int(p[2], 16))
                elif k == "Z":
                    self.resets.append(int(p[1]))
                elif k == "U":
                    self.tx_lost = int(p[1])
                elif k == "X":
                    self.finished = line.strip()
                else:
                    self.other.append(line.rstrip())
                self._cond.notify_all()
        with self._cond:
            if not self.finished:
                self.finished = "X eof"
            self._cond.notify_all()

    def _send(self, text: str) -> None:
        assert self.proc and self.proc.stdin
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def inject(self, cycle: int, level: int) -> None:
        """Drive the capture input (PB0/ICP1, Arduino D8) to ``level`` at absolute ``cycle``."""
        self._send(f"edge {int(cycle)} {int(level)}\n")

    def hold(self, cycle: int) -> None:
        """Do not simulate past absolute ``cycle`` until told otherwise (``hold(0)``): makes a fast, unpaced
        simulation wait for the host, whatever the machine's load."""
        self._send(f"hold {int(cycle)}\n")

    def pace(self, realtime: bool) -> None:
        """Keep pace with real time from the current cycle on (``True``), or run flat out (``False``)."""
        self._send(f"pace {int(bool(realtime))}\n")

    def inject_in(self, cycles: int, level: int) -> None:
        self._send(f"edge +{int(cycles)} {int(level)}\n")

    def peek(self, addr: int, timeout: float = 5.0) -> int:
        """A byte of the AVR's data space (I/O registers at their data addresses, RAM)."""
        with self._cond:
            n = len(self._peeks)
            self._send(f"peek {addr:x}\n")
            if not self._cond.wait_for(lambda: len(self._peeks) > n or self.finished, timeout) or len(self._peeks) <= n:
                raise TimeoutError("syncbox-sim did not answer 'peek'")
            return self._peeks[n]

    def reset(self) -> None:
        """Press the reset button: the firmware reboots (its clock restarts at 0) and announces itself."""
        self._send("reset\n")

    def now(self, timeout: float = 5.0) -> tuple[int, int]:
        """(current cycle, host CLOCK_MONOTONIC ns) of the simulation."""
        with self._cond:
            n = len(self._now)
            self._send("now\n")
            if not self._cond.wait_for(lambda: len(self._now) > n or self.finished, timeout):
                raise TimeoutError("syncbox-sim did not answer 'now'")
            if len(self._now) <= n:
                raise RuntimeError(f"syncbox-sim stopped: {self.finished}")
            return self._now[n]

    def wait_for(self, pred, timeout: float = 10.0) -> bool:
        """Wait until ``pred(self)`` holds (evaluated under the lock as lines arrive)."""
        with self._cond:
            return self._cond.wait_for(lambda: pred(self) or bool(self.finished), timeout) and pred(self)

    def wait_cycle(self, cycle: int, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while self.now()[0] < cycle:
            if time.monotonic() > end:
                raise TimeoutError(f"simulation did not reach cycle {cycle}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self._send("quit\n")
        except (BrokenPipeError, ValueError, OSError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self._thread:
            self._thread.join(timeout=5)
        self.proc = None
