"""``synchub bench soak --minutes N``: the agent and the collector as their own processes for N minutes, memory and
file handles sampled over time, every sample accounted for at the end.

The agent runs ``synchub agent`` with an in-process simulated rig (``imu0`` 200 Hz imu-bin on a pty with a 1 Hz
trigger line, ``tlm0`` NMEA telemetry, ``mic0`` 16 kHz audio), CURVE on; a ``synchub collector`` records it on
loopback.  Every ``--every`` seconds: RSS (``VmRSS``) and open file descriptors (``/proc/PID/fd``) of both.  At the
end the agent stops cleanly (its summary line says what it spooled and what was delivered) and the recording is read
back: per stream, recorded samples plus in-sequence gap records must cover 0..N with nothing twice.

Result: the series, RSS growth from the end of the warm-up (the first fifth of the run, ``warmup_s``) to the end
(medians of 3 samples each; goal <= 5 %), the least-squares RSS slope after warm-up in MB per hour (a leak shows as a
steady slope even in a run too short for the growth to reach 5 %; a sawtooth that returns does not), the fd range after
warm-up (goal: flat), samples spooled / delivered / recorded and lost without a gap record (goal 0).
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from synchub.agent.formats.mcap_read import read_session
from synchub.argtypes import nonnegative, positive
from synchub.errors import UserError

from .harness import collector_process, free_port, make_keys

CONFIG = """[agent]
name = "soak"
collector = ["tcp://127.0.0.1:{port}"]
curve_secret_key = "{keys}/agent.key_secret"
collector_public_key = "{keys}/collector.key"
log_level = "warning"
[sim]
seed = 7
duration_s = {world}
[[trigger]]
name = "sync"
backend = "sim"
role = "sync"
period_s = 1.0
[[stream]]
name = "imu0"
type = "imu"
driver = "serial"
port = "sim:imu0"
format = "imu-bin"
nominal_rate = 200.0
trigger = "sync"
[[stream]]
name = "tlm0"
type = "telemetry"
driver = "serial"
port = "sim:tlm0"
format = "tlm-nmea"
tick_hz = 1000.0
nominal_rate = 10.0
[[stream]]
name = "mic0"
type = "audio"
driver = "sim"
device = "mic0"
"""
IN_SEQ = ("agent_crash", "spool_full", "queue_full")
GOAL_RSS_GROWTH_PCT = 5.0


def add_arguments(p) -> None:
    p.add_argument("--minutes", type=positive, default=30.0, help="length of the run")
    p.add_argument("--every", type=nonnegative, default=0.0, help="seconds between samples (0: 40 samples over the run)")
    p.add_argument("--json", help="write the result here (e.g. bench/results/soak.json)")


def proc_sample(pid: int) -> tuple[float, int]:
    """(RSS MB, open fds) of a process."""
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def growth(series: list[float], warm: int) -> float:
    """% from the median of the first samples after warm-up to the median of the last ones."""
    a = float(np.median(series[warm:warm + 3]))
    b = float(np.median(series[-3:]))
    return round(100.0 * (b - a) / a, 2) if a else 0.0


def slope_mb_per_h(t_s: list[float], series: list[float], warm: int) -> float | None:
    """Least-squares slope of ``series`` (MB) over ``t_s`` (s) from sample ``warm`` on, in MB per hour."""
    t, y = np.asarray(t_s[warm:], float), np.asarray(series[warm:], float)
    if len(t) < 3 or np.ptp(t) == 0:
        return None
    return round(float(np.polyfit(t, y, 1)[0]) * 3600.0, 2)


def account(session: dict) -> dict[str, dict]:
    """Per stream: recorded samples, in-sequence gap samples, and samples neither recorded nor gapped (or twice)."""
    out = {}
    for name, s in session["streams"].items():
        seq = s["seq"]
        gapped = [np.arange(g["seq"] - g["count"], g["seq"]) for g in session["gaps"]
                  if g["stream"] == name and g["cause"] in IN_SEQ]
        cover = np.concatenate([seq, *gapped]) if gapped else seq
        n = int(cover.max()) + 1 if len(cover) else 0
        uniq = np.unique(cover)
        out[name] = {"recorded": int(len(seq)), "gap_samples": int(sum(len(g) for g in gapped)),
                     "lost_without_gap": int(n - len(uniq)), "twice": int(len(cover) - len(uniq))}
    return out


def run(args) -> int:
    if not (0 < args.minutes <= 24 * 60):
        raise UserError("--minutes: allowed (0, 1440]")
    seconds = args.minutes * 60.0
    every = args.every or max(1.0, seconds / 40)
    tmp = Path(tempfile.mkdtemp(prefix="synchub-soak-"))
    keys = make_keys(tmp / "keys")
    port = free_port()
    cfg = tmp / "soak.toml"
    cfg.write_text(CONFIG.format(port=port, keys=keys, world=seconds + 120))
    col = collector_process(tmp / "rec", port, keys)
    env = {**os.environ, "XDG_STATE_HOME": str(tmp / "state")}
    agent = subprocess.Popen([sys.executable, "-m", "synchub.cli", "agent", "--config", str(cfg), "--duration",
                              str(seconds), "--status-every", "0", "--control", str(tmp / "control.sock")],
                             stderr=subprocess.PIPE, text=True, env=env)  # its own socket: soaks may run side by side
    t0 = time.monotonic()
    series = {"t_s": [], "agent_rss_mb": [], "agent_fds": [], "collector_rss_mb": [], "collector_fds": []}
    try:
        while agent.poll() is None and time.monotonic() - t0 < seconds - every / 2:
            time.sleep(min(every, max(0.0, seconds - (time.monotonic() - t0))))
            try:
                a, c = proc_sample(agent.pid), proc_sample(col.pid)
            except OSError:
                break
            series["t_s"].append(round(time.monotonic() - t0, 1))
            series["agent_rss_mb"].append(round(a[0], 1))
            series["agent_fds"].append(a[1])
            series["collector_rss_mb"].append(round(c[0], 1))
            series["collector_fds"].append(c[1])
        _, err = agent.communicate(timeout=120)
    finally:
        if agent.poll() is None:
            agent.kill()
        col.send_signal(signal.SIGINT)
        col.wait(60)
    summary = [x for x in err.splitlines() if "samples spooled" in x]
    m = re.search(r"(\d+) samples spooled, (\d+) delivered", summary[-1]) if summary else None
    files = sorted((tmp / "rec").glob("*.mcap"))
    per = account(read_session(files)) if files else {}
    warm = max(0, len(series["t_s"]) // 5)
    result = {
        "benchmark": "soak", "minutes": args.minutes, "machine": platform.machine(), "python": platform.python_version(),
        "agent_exit": agent.returncode, "agent_summary": summary[-1].strip() if summary else err[-500:],
        "samples_spooled": int(m[1]) if m else None, "samples_delivered": int(m[2]) if m else None,
        "streams": per, "lost_without_gap": sum(s["lost_without_gap"] for s in per.values()),
        "recorded_twice": sum(s["twice"] for s in per.values()),
        "samples_recorded": sum(s["recorded"] for s in per.values()),
        "agent_rss_growth_pct": growth(series["agent_rss_mb"], warm) if len(series["t_s"]) > 4 else None,
        "collector_rss_growth_pct": growth(series["collector_rss_mb"], warm) if len(series["t_s"]) > 4 else None,
        "warmup_s": series["t_s"][warm - 1] if warm else 0.0,
        "agent_rss_slope_mb_per_h": slope_mb_per_h(series["t_s"], series["agent_rss_mb"], warm),
        "collector_rss_slope_mb_per_h": slope_mb_per_h(series["t_s"], series["collector_rss_mb"], warm),
        "agent_fds_after_warmup": [min(series["agent_fds"][warm:], default=0), max(series["agent_fds"][warm:], default=0)],
        "collector_fds_after_warmup": [min(series["collector_fds"][warm:], default=0),
                                       max(series["collector_fds"][warm:], default=0)],
        "goal_rss_growth_pct": GOAL_RSS_GROWTH_PCT, "series": series,
    }
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "series"}, indent=2))
    ok = (agent.returncode == 0 and result["lost_without_gap"] == 0 and result["recorded_twice"] == 0 and files
          and result["samples_spooled"] == result["samples_delivered"] == result["samples_recorded"])
    return 0 if ok else 1
