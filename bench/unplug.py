"""``synchub bench unplug``: the field example with its IMU unplugged for minutes, under a systemd-like watchdog.

``synchub agent`` runs with examples/field-pi.toml (as ``bench footprint`` sets it up: CURVE on, the simulated IMU
of a separate ``synchub sim`` process on a pty behind a symlink like a udev link, a PCM program as the microphone)
and a ``NOTIFY_SOCKET`` this benchmark binds, with ``WATCHDOG_USEC`` of the unit's ``WatchdogSec``.  The sim
unplugs the IMU (its pty goes away, the link dangles) for ``--minutes``, then plugs it back on a new pty.

Measured: the watchdog pings (systemd would restart the agent whenever two are further apart than ``WatchdogSec``:
``restarts`` counts those, plus an agent that exited), the distinct ``STATUS=`` lines, whether they named the
missing stream, the resume latency (the sim's replug to the agent's reconnect, both from their logs; and to the
first ``synchub status`` that shows the stream ok again, polled every 0.1 s), the control socket's answer time, the
``synchub status`` command's wall time, and the recording's gap (cause, samples) for the unplugged minutes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synchub.agent.pipeline.control import request
from synchub.argtypes import nonnegative, positive

from .footprint import ROOT_EXAMPLES, field_config
from .harness import collector_process, free_port, make_keys, sim_process, stop_processes

UNPLUG = '\n[[sim.unplug]]\ndevice = "imu0"\nat_s = {at:.1f}\nfor_s = {secs:.1f}\n'


def add_arguments(p) -> None:
    p.add_argument("--minutes", type=positive, default=5.0, help="how long the IMU stays unplugged")
    p.add_argument("--warmup", type=nonnegative, default=10.0, help="seconds of normal running before the unplug")
    p.add_argument("--after", type=nonnegative, default=15.0, help="seconds of running after the replug")
    p.add_argument("--watchdog-s", type=positive, default=20.0, help="WatchdogSec of the unit (pings every half)")
    p.add_argument("--json", help="write the result here (e.g. bench/results/unplug.json)")
    p.add_argument("--workdir", help="keep the logs, configs and recording here (default: a temporary directory)")


def _log_times(path: Path, needle: str) -> list[float]:
    """Unix times of the log lines holding ``needle`` (the ``2026-11-26 19:05:29,403`` logging stamp)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if needle in line:
            try:
                out.append(dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp())
            except ValueError:
                continue
    return out


def _percentiles(xs: list[float]) -> dict:
    if not xs:
        return {}
    xs = sorted(xs)
    return {"n": len(xs), "p50_ms": round(1e3 * statistics.median(xs), 2),
            "p99_ms": round(1e3 * xs[min(len(xs) - 1, int(0.99 * len(xs)))], 2), "max_ms": round(1e3 * xs[-1], 2)}


class _Notify:
    """The NOTIFY_SOCKET systemd would hold: every datagram with its arrival (unix) time."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.msgs: list[tuple[float, str]] = []

    def drain(self) -> None:
        while True:
            try:
                self.msgs.append((time.time(), self.sock.recv(4096).decode(errors="replace")))
            except BlockingIOError:
                return


def _status(sock_path: Path, times: list[float]) -> dict | None:
    t = time.monotonic()
    try:
        answer = request(sock_path, timeout=2.0)
    except (OSError, ValueError):
        return None
    times.append(time.monotonic() - t)
    return answer.get("status")


def run(args) -> int:
    unplug_s = args.minutes * 60.0
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        res = _run(args, Path(args.workdir), unplug_s)
    else:
        with tempfile.TemporaryDirectory(prefix="synchub-unplug-") as tmp:
            res = _run(args, Path(tmp), unplug_s)
    print(f"IMU unplugged {res['unplugged_s']} s: restarts {res['restarts']}, {res['pings']} watchdog pings (max "
          f"{res['max_ping_interval_s']} s apart, WatchdogSec {args.watchdog_s:g}), STATUS= named it: "
          f"{res['status_named_missing']}; resumed {res['resume_latency_s']} s after replug (status ok after "
          f"{res['status_ok_after_replug_s']} s); gap {res['gap']}; control socket {res['control_answer']}, "
          f"synchub status command {res['status_command_s']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


def _run(args, tmp: Path, unplug_s: float) -> dict:
    keys = make_keys(tmp / "keys")
    port = free_port()
    (tmp / "run").mkdir()
    sim_cfg = tmp / "sim.toml"
    at = args.warmup + 8.0  # the agent's start (imports, first chunks) comes first
    sim_cfg.write_text((ROOT_EXAMPLES / "sim-rig.toml").read_text() + UNPLUG.format(at=at, secs=unplug_s))
    notify = _Notify(tmp / "notify.sock")
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp / "notify.sock"), WATCHDOG_USEC=str(int(args.watchdog_s * 1e6)),
               RUNTIME_DIRECTORY=str(tmp / "run"))
    procs, logs = [], []
    answer_times: list[float] = []
    ok_again = None
    sock_path = tmp / "run" / "agent-field-pi-07.sock"
    try:
        logs = [open(tmp / "sim.log", "w"), open(tmp / "agent.log", "w")]
        procs.append(sim_process(sim_cfg, tmp / "links", stderr=logs[0]))
        procs.append(collector_process(tmp / "rec", port, keys))
        cfg = tmp / "field.toml"
        cfg.write_text(field_config((ROOT_EXAMPLES / "field-pi.toml").read_text(), f"tcp://127.0.0.1:{port}",
                                    str(tmp / "links" / "imu0"), keys))
        agent = subprocess.Popen([sys.executable, "-m", "synchub.cli", "agent", "--config", str(cfg),
                                  "--status-every", "0"], stdout=subprocess.DEVNULL, stderr=logs[1], env=env)
        procs.append(agent)
        t_end = time.time() + at + unplug_s + args.after  # generous: the sim's clock started a little earlier
        replugged = None
        while time.time() < t_end and agent.poll() is None:
            time.sleep(0.1)
            notify.drain()
            st = _status(sock_path, answer_times) if sock_path.exists() else None
            if replugged is None:
                plugs = _log_times(tmp / "sim.log", "plugged in again")
                replugged = plugs[0] if plugs else None
            elif ok_again is None and st is not None:
                imu = next((s for s in st["streams"] if s["name"] == "imu0"), {})
                if imu.get("state") == "ok":
                    ok_again = time.time() - replugged
        exited = agent.poll()
        command_s = []
        for _ in range(3):
            t = time.monotonic()
            r = subprocess.run([sys.executable, "-m", "synchub.cli", "status", "--json", "--socket", str(sock_path)],
                               capture_output=True, text=True, env=env, timeout=30)
            if r.returncode == 0:
                command_s.append(time.monotonic() - t)
        agent.terminate()
        agent.wait(30)
        notify.drain()
    finally:
        stop_processes(procs)
        for f in logs:
            f.close()
        notify.sock.close()
    return _result(args, tmp, notify.msgs, exited, answer_times, command_s, ok_again, unplug_s)


def _result(args, tmp: Path, msgs, exited, answer_times, command_s, ok_again, unplug_s) -> dict:
    pings = [t for t, m in msgs if m == "WATCHDOG=1"]
    ready = [t for t, m in msgs if m.startswith("READY=1")]
    stopping = [t for t, m in msgs if m.startswith("STOPPING=1")]
    marks = ready[:1] + pings + stopping[:1]
    gaps = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    statuses = []
    for t, m in msgs:
        for part in m.split("\n"):
            if part.startswith("STATUS=") and (not statuses or statuses[-1][1] != part[7:]):
                statuses.append((t, part[7:]))
    unplugged = _log_times(tmp / "sim.log", "sim imu0: unplugged")
    replugged = _log_times(tmp / "sim.log", "plugged in again")
    reconnected = [t for t in _log_times(tmp / "agent.log", "imu0: reconnected") if replugged and t >= replugged[0]]
    t0 = unplugged[0] if unplugged else (ready[0] if ready else 0.0)
    inspect = subprocess.run([sys.executable, "-m", "synchub.cli", "inspect", "--json",
                              *map(str, sorted((tmp / "rec").rglob("*.mcap")))], capture_output=True, text=True,
                             timeout=300)
    streams = {s["name"]: s for s in json.loads(inspect.stdout)["streams"]} if inspect.returncode == 0 else {}
    imu = streams.get("imu0", {})
    during = [s for t, s in statuses if unplugged and replugged and unplugged[0] <= t <= replugged[0]]
    return {
        "what": "synchub agent, examples/field-pi.toml, IMU (synchub sim on a pty behind a link) unplugged, under a "
                "test NOTIFY_SOCKET with WATCHDOG_USEC; see bench/unplug.py",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs: timings are loaded)",
        "unplug_requested_s": unplug_s,
        "unplugged_s": round(replugged[0] - unplugged[0], 1) if unplugged and replugged else None,
        "watchdog_sec": args.watchdog_s,
        "restarts": sum(g > args.watchdog_s for g in gaps) + (1 if exited is not None else 0),
        "agent_exited_early": exited is not None,
        "pings": len(pings), "max_ping_interval_s": round(max(gaps), 2) if gaps else None,
        "late_pings": [{"t_s": round(b - t0, 2), "after_s": round(b - a, 2)} for a, b in zip(marks, marks[1:],
                       strict=False) if b - a > 0.75 * args.watchdog_s][:20],
        "status_named_missing": bool(during) and all("imu0 missing" in s for s in during[1:] or during),
        "status_lines": [{"t_s": round(t - t0, 2), "status": s} for t, s in statuses[:40]],
        "status_changes": len(statuses),
        "resume_latency_s": round(reconnected[0] - replugged[0], 3) if reconnected else None,
        "status_ok_after_replug_s": None if ok_again is None else round(ok_again, 2),
        "gap": {"causes": imu.get("gap_causes"), "samples": imu.get("gap_samples"),
                "expected_samples": round(200 * unplug_s), "seq_missing": imu.get("seq_missing")},
        "samples_recorded": {n: s["samples"] for n, s in streams.items()},
        "control_answer": _percentiles(answer_times),
        "status_command_s": [round(x, 3) for x in command_s],
    }
