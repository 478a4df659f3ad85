"""``synchub bench footprint``: the agent's memory and CPU with the field example (examples/field-pi.toml) on one core.

The agent runs as ``synchub agent`` would under the unit (its own process, CURVE on, pinned to one CPU with
``sched_setaffinity``), with simulated devices standing in for the real ones, since this machine has none:

* ``imu0`` (200 Hz ``imu-bin`` on the UART): the simulated IMU of ``synchub sim``, a separate process (on another
  core) writing its real wire format to a pty, read through pyserial exactly like ``/dev/serial0``;
* ``mic0`` (16 kHz S16_LE USB microphone): the alsa driver's ``command`` is a small program writing 16 kHz PCM to
  stdout at the real-time pace in 20 ms periods, as ``arecord`` does (it inherits the agent's core, as arecord would);
* the GPS PPS trigger and the NTP health queries are left out (one edge and one UDP query a second or minute: no
  device here to read them from; noted in the result).

Measured from /proc/PID: CPU (utime + stime of the agent process over the measured window, as % of one core), RSS
every second (median, max) and VmHWM (peak).  A collector records the session on loopback (another process, not
measured); the run fails if the collector did not receive samples of both streams.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synchub.agent.formats.mcap_read import read_session
from synchub.argtypes import nonnegative, positive
from synchub.errors import UserError

from .harness import collector_process, free_port, make_keys, sim_process, stop_processes

ROOT_EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PCM = r"""
import sys, time
rate, period = 16000, 320
buf = bytes(2 * period)
t0 = time.monotonic()
n = 0
while True:
    n += 1
    d = t0 + n * period / rate - time.monotonic()
    if d > 0:
        time.sleep(d)
    sys.stdout.buffer.write(buf); sys.stdout.buffer.flush()
"""
GOAL_RSS_MB = 120.0  # the encoders benchmark's goal for the whole agent with all models; the field example has none
GOAL_CPU_PCT = 25.0  # of one core: a Pi Zero 2's core is ~4x slower than this machine's


def add_arguments(p) -> None:
    p.add_argument("--seconds", type=positive, default=60.0, help="measured window (after --warmup)")
    p.add_argument("--warmup", type=nonnegative, default=10.0, help="seconds before measuring (imports, first chunks)")
    p.add_argument("--cpu", type=int, default=0, help="the CPU the agent is pinned to")
    p.add_argument("--json", help="write the result here (e.g. bench/results/footprint.json)")


def field_config(text: str, endpoint: str, imu_port: str, keys: Path) -> str:
    """examples/field-pi.toml with the stand-ins: loopback collector, this run's keys, the simulated IMU's pty, the
    PCM program for the microphone, no PPS line and no NTP server."""
    text = text.replace('collector = ["tcp://10.0.0.2:7100"]', f'collector = ["{endpoint}"]')
    text = re.sub(r'curve_secret_key = "[^"]*"', f'curve_secret_key = "{keys / "agent.key_secret"}"', text)
    text = re.sub(r'collector_public_key = "[^"]*"', f'collector_public_key = "{keys / "collector.key"}"', text)
    text = text.replace('port = "/dev/serial0"', f'port = "{imu_port}"')
    text = re.sub(r'(?ms)^\[\[trigger\]\].*?(?=^\[\[stream\]\])', "", text)  # the PPS line
    text = text.replace('trigger = "pps"\n', "")
    text = re.sub(r'(?m)^reference = "pps"', 'reference = "monotonic"', text)
    text = re.sub(r'(?m)^utc = "pps".*$', 'utc = "system"', text)
    text = re.sub(r'(?m)^ntp_servers = .*$', "ntp_servers = []", text)
    command = json.dumps([sys.executable, "-c", PCM])
    text = text.replace('restart_s = 2.0', f'restart_s = 2.0\ncommand = {command}')
    return text


def _proc_stat(pid: int) -> tuple[float, float, float]:
    """(cpu seconds of the process, RSS MB, peak RSS MB)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    st = {k: v for k, _, v in (line.partition(":") for line in Path(f"/proc/{pid}/status").read_text().splitlines())}
    return cpu, int(st["VmRSS"].split()[0]) / 1024, int(st["VmHWM"].split()[0]) / 1024


def run(args) -> int:
    with tempfile.TemporaryDirectory(prefix="synchub-footprint-") as tmp:
        tmp = Path(tmp)
        keys = make_keys(tmp / "keys")
        port = free_port()
        procs = []
        try:
            procs.append(sim_process(ROOT_EXAMPLES / "sim-rig.toml", tmp / "links"))
            procs.append(collector_process(tmp / "rec", port, keys))
            cfg = tmp / "field.toml"
            cfg.write_text(field_config((ROOT_EXAMPLES / "field-pi.toml").read_text(), f"tcp://127.0.0.1:{port}",
                                        str(tmp / "links" / "imu0"), keys))
            agent = subprocess.Popen([sys.executable, "-m", "synchub.cli", "agent", "--config", str(cfg),
                                      "--status-every", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, preexec_fn=lambda: os.sched_setaffinity(0, {args.cpu}),
                                     env=dict(os.environ, RUNTIME_DIRECTORY=str(tmp)))  # its control socket
            procs.append(agent)
            time.sleep(args.warmup)
            if agent.poll() is not None:
                raise UserError(f"the agent exited: {agent.stderr.read()[-500:]}")
            cpu0, _, _ = _proc_stat(agent.pid)
            t0 = time.monotonic()
            rss = []
            while time.monotonic() - t0 < args.seconds and agent.poll() is None:
                time.sleep(1.0)
                rss.append(_proc_stat(agent.pid)[1])
            cpu1, _, peak = _proc_stat(agent.pid)
            wall = time.monotonic() - t0
            agent.terminate()
            agent.wait(30)
        finally:
            stop_processes(procs)
        session = read_session(sorted((tmp / "rec").rglob("*.mcap")))
        counts = {name: int(len(s["seq"])) for name, s in session["streams"].items()}
    res = {
        "what": "synchub agent with examples/field-pi.toml on one core, simulated devices standing in (see doc)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({platform.processor() or 'cpu'})",
        "stand_ins": {"imu0": "synchub sim IMU on a pty (200 Hz imu-bin)", "mic0": "16 kHz S16_LE PCM program",
                      "left_out": ["pps trigger (no PPS device here)", "ntp health (no server)"]},
        "seconds": round(wall, 1), "cpu_pct_one_core": round(100 * (cpu1 - cpu0) / wall, 2),
        "rss_mb_median": round(statistics.median(rss), 1), "rss_mb_max": round(max(rss), 1),
        "rss_mb_peak_hwm": round(peak, 1), "samples_recorded": counts,
        "goals": {"rss_mb": GOAL_RSS_MB, "cpu_pct_one_core": GOAL_CPU_PCT},
    }
    if not {"imu0", "mic0"} <= {k for k, v in counts.items() if v > 0}:
        raise UserError(f"the collector did not record both streams: {counts}")
    print(f"agent, field example, one core, {res['seconds']} s: CPU {res['cpu_pct_one_core']} % of one core, "
          f"RSS median {res['rss_mb_median']} MB (max {res['rss_mb_max']}, peak {res['rss_mb_peak_hwm']}); "
          f"recorded {counts}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0
