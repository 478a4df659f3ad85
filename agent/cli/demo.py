"""``synchub demo``: the simulated rig, an agent and a collector on loopback, end to end, then the error table.

The collector runs as its own process (``synchub collector``) on a free loopback port; the simulated rig and the agent
run in this process, exactly as ``synchub agent --config examples/sim-rig.toml`` would.  After recording, the MCAP file
is read back with the ``mcap`` library and every stream's corrected times are compared with the simulator's truth.
The demo fails (exit status 1) if any sample is lost or recorded twice.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np

from synchub.agent.clock.replay import correct_recording
from synchub.agent.config.loader import load_config
from synchub.agent.deploy.needs import preflight
from synchub.agent.formats.mcap_read import raw_recording, read_session
from synchub.agent.pipeline.runtime import Agent, AgentError
from synchub.agent.transport.security import new_pair
from synchub.argtypes import positive
from synchub.errors import UserError

from .align import clock_inputs

#: the simulated rig the demo runs: the shipped example (``synchub.examples``, examples/ in a checkout)
EXAMPLE = "sim-rig.toml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    # 60 s: the aligned streams' first ~20 s are mapped on arrival until their aligner has judged them (three
    # offsets); a 30 s run of seed 1 ended before the microphone's third
    p.add_argument("--duration", type=positive, default=60.0, help="seconds to record (default %(default)s)")
    p.add_argument("--out", default="demo-out", help="output directory (default %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="simulated world seed (default %(default)s)")
    p.add_argument("--config", help="agent config with a [sim] table (default: examples/sim-rig.toml)")
    p.add_argument("--no-plot", action="store_true", help="skip alignment.png")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_keys(keys: Path) -> dict[str, str]:
    """CURVE keys for the demo (Ironhouse, as in a real deployment): the collector's pair, the agent's pair, and an
    allow-list directory holding only the agent's public key."""
    col_pub, col_sec = new_pair("collector", keys / "collector")
    ag_pub, ag_sec = new_pair("demo-agent", keys / "agent")
    allow = keys / "allow"
    allow.mkdir(parents=True, exist_ok=True)
    shutil.copy(ag_pub, allow / ag_pub.name)
    return {"collector_public": str(col_pub), "collector_secret": str(col_sec), "agent_secret": str(ag_sec),
            "allow": str(allow)}


def _start_collector(endpoint: str, out: Path, log_path: Path, keys: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "synchub.cli", "collector", "--bind", endpoint, "--out", str(out),
           "--secret-key", keys["collector_secret"], "--allow-dir", keys["allow"], "--flush-ms", "50"]
    logf = open(log_path, "wb")  # noqa: SIM115 - kept open for the child's lifetime
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    return proc


COLLECTOR_START_S = 120.0  # a Pi Zero, or arm64 under qemu (~15 s), starts the collector's Python slowly


def _wait_listening(collector: subprocess.Popen, log_path: Path, timeout_s: float = COLLECTOR_START_S) -> None:
    """Until the collector says it is listening: the session's seconds count from then, so a slow machine's demo
    does not end (and stop the collector) before the agent's data could reach it."""
    t_end = time.monotonic() + timeout_s
    while b"listening on" not in log_path.read_bytes():
        if collector.poll() is not None:
            raise UserError(f"collector exited early (status {collector.returncode}); see {log_path}")
        if time.monotonic() > t_end:
            raise UserError(f"collector not listening after {timeout_s:.0f} s; see {log_path}")
        time.sleep(0.1)


def _progress(frac: float, status: dict, width: int = 30) -> str:
    filled = int(width * min(1.0, frac))
    sent = sum(v["sent"] for v in status["streams"].values())
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {100 * frac:5.1f}%  {sent:,} samples sent"


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("session.mcap", "report.json", "alignment.png", "truth.npz"):
        (out / stale).unlink(missing_ok=True)
    rec_dir = Path(tempfile.mkdtemp(prefix="synchub-demo-", dir=out))
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    keys = _make_keys(rec_dir / "keys")
    if args.config:
        config = load_config(args.config)
        if config.sim is None:
            raise UserError(f"{args.config}: the demo needs a config with a [sim] table")
    else:  # the example, its world as long as the run (plus a margin) and seeded from the command line
        with resources.as_file(resources.files("synchub.examples").joinpath(EXAMPLE)) as path:
            config = load_config(path)
        config = replace(config, sim=replace(config.sim, seed=args.seed, duration_s=args.duration + 30))
    config = replace(config, agent=replace(config.agent, collector=(endpoint,), spool_dir=str(rec_dir / "spool"),
                                           curve_secret_key=keys["agent_secret"],
                                           collector_public_key=keys["collector_public"]))
    refused = [p for p in preflight(config, insecure=True, exists=lambda _p: True) if p.level == "error"]
    if refused:  # e.g. the encoders without onnxruntime: one line before anything starts
        raise UserError(str(refused[0]))

    collector = _start_collector(endpoint, rec_dir / "rec", out / "collector.log", keys)
    try:
        _wait_listening(collector, out / "collector.log")
        try:
            agent = Agent(config)
        except AgentError as exc:
            raise UserError(str(exc)) from None
        print(f"synchub demo: simulated rig with {len(agent.drivers)} streams + {len(agent.triggers)} trigger line(s), "
              f"collector on {endpoint}, {args.duration:.0f} s", file=sys.stderr)
        try:
            agent.start()
            t0 = last_line = time.monotonic()
            tty = sys.stderr.isatty()
            while (elapsed := time.monotonic() - t0) < args.duration:
                time.sleep(0.25)
                agent.check()
                if collector.poll() is not None:
                    raise UserError(f"collector exited early (status {collector.returncode}); see {out}/collector.log")
                if tty:
                    print(_progress(elapsed / args.duration, agent.status()), end="", file=sys.stderr, flush=True)
                elif time.monotonic() - last_line >= 5.0:  # a log file gets a line every 5 s, not a carriage-return bar
                    last_line = time.monotonic()
                    print(_progress(elapsed / args.duration, agent.status()).lstrip("\r"), file=sys.stderr, flush=True)
        except AgentError as exc:
            raise UserError(str(exc)) from None
        finally:
            agent.stop()
        print(_progress(1.0, agent.status()).lstrip("\r"), file=sys.stderr)
        truth = agent.rig.truth()
        sent = dict(agent.shipper.sent_samples)
        hub_stats = dict(agent.hub.stats)
        flushed = agent.outlet.stats() if hasattr(agent.outlet, "stats") else {}
    finally:
        if collector.poll() is None:
            collector.send_signal(signal.SIGINT)
            try:
                collector.wait(30)
            except subprocess.TimeoutExpired:
                collector.kill()
    files = sorted((rec_dir / "rec").rglob("*.mcap"))
    if not files:
        print(f"synchub demo: the collector wrote no MCAP file; see {out}/collector.log", file=sys.stderr)
        return 1
    session = out / "session.mcap"
    shutil.move(str(files[-1]), session)
    for extra in files[:-1]:  # one session -> one file; anything else is reported, not hidden
        shutil.move(str(extra), out / extra.name)
    shutil.rmtree(rec_dir, ignore_errors=True)

    truth.save(out / "truth.npz")  # the simulator's ground truth, kept apart from the recording

    data = read_session(session)  # read once: the report, the offline rerun and the plot all use it
    report = build_report(data, truth, sent, hub_stats, args.duration)
    add_offline_errors(report, data, truth)
    report["transport"] = {k: v for k, v in flushed.items() if isinstance(v, (int, float, str))}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print_table(report)
    if not args.no_plot:
        try:
            plot_alignment(data, truth, out / "alignment.png")
        except ImportError:
            print("synchub demo: matplotlib missing, no alignment.png (pip install 'synchub[plot]')", file=sys.stderr)
    lost = [s["name"] for s in report["streams"] if s["samples_recorded"] != s["samples_sent"] or s["duplicates"]
            or s["samples_sent"] != s["samples_delivered"]]
    if lost:
        print(f"synchub demo: FAILED: samples lost or duplicated in {', '.join(lost)}", file=sys.stderr)
        return 1
    print(f"synchub demo: every sample of every stream recorded exactly once -> {out}/", file=sys.stderr)
    return 0


SETTLE_S = 20.0  # the live figures "after the first 20 s": the aligners have converged by then


def stream_errors(rec: dict, st) -> tuple[np.ndarray, np.ndarray]:
    """Corrected time minus true time (ns), and the true time, of every recorded sample that has a truth entry."""
    if rec["ref_ns"] is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return st.errors(rec["seq"], rec["ref_ns"])


def chunk_errors(chunks, st) -> tuple[np.ndarray, np.ndarray]:
    """``stream_errors`` of one stream's corrected chunks."""
    return st.errors(np.concatenate([np.arange(c.seq, c.seq_end) for c in chunks]),
                     np.concatenate([c.ref_ns for c in chunks]))


def build_report(data: dict, truth, sent: dict, hub_stats: dict, duration: float) -> dict:
    """Per-stream figures of a recording (``read_session``'s dict) against the simulator's truth."""
    streams = []
    for name, st in truth.streams.items():
        rec = data["streams"].get(name)
        n_rec = 0 if rec is None else len(rec["seq"])
        dup = 0 if rec is None else int(len(rec["seq"]) - len(np.unique(rec["seq"])))
        err, t_true = stream_errors(rec, st) if rec is not None else (np.zeros(0), np.zeros(0))
        abs_us = np.abs(err) / 1e3
        settled = t_true >= truth.origin_ns + SETTLE_S * 1e9
        methods = [] if rec is None else sorted(set(rec["method"].tolist()))
        hs = hub_stats.get(name)
        streams.append({
            "name": name,
            "modality": st.modality,
            "samples_delivered": int(len(st.true_ns)),
            "samples_sent": int(sent.get(name, 0)),
            "samples_recorded": int(n_rec),
            "duplicates": dup,
            "dropped_by_device": int(st.dropped),
            "gaps_recorded": int(sum(g.get("count", 0) for g in data["gaps"] if g.get("stream") == name)),
            "malformed": int(hs.malformed) if hs else 0,
            "method": methods[-1] if len(methods) == 1 else "+".join(methods),
            "error_us": _error_summary(abs_us),
            "error_us_after_20s": _error_summary(abs_us[settled]),
        })
    return {"duration_s": duration, "streams": streams}


def _error_summary(abs_us: np.ndarray) -> dict:
    """Median, p95 and max of absolute errors in us (``None`` each when there are none)."""
    if not len(abs_us):
        return {"median": None, "p95": None, "max": None}
    return {"median": float(np.median(abs_us)), "p95": float(np.percentile(abs_us, 95)), "max": float(np.max(abs_us))}


def add_offline_errors(report: dict, data: dict, truth) -> None:
    """The same recording re-corrected offline (``synchub align``: evidence on both sides of every sample)."""

    corrected, _ = correct_recording(*clock_inputs(raw_recording(data)), smooth=True)
    by_stream: dict[str, list] = {}
    for c in corrected:
        by_stream.setdefault(c.stream, []).append(c)
    for s in report["streams"]:
        chunks = by_stream.get(s["name"])
        st = truth.streams.get(s["name"])
        if not chunks or st is None:
            continue
        err, t_true = chunk_errors(chunks, st)
        err = np.abs(err) / 1e3
        settled = t_true >= truth.origin_ns + SETTLE_S * 1e9  # as the live figure: live / offline
        s["offline"] = {"method": chunks[-1].method, "error_us": _error_summary(err),
                        "error_us_after_20s": _error_summary(err[settled])}


def print_table(report: dict) -> None:
    head = (f"{'stream':8} {'modality':10} {'sent':>9} {'recorded':>9} {'live method':>15} {'median us':>10} "
            f"{'p95 us':>10} {'max us':>10} | {'offline method':>15} {'median us':>10} {'p95 us':>10}")
    print(head)
    print("-" * len(head))

    def f(v):
        return f"{v:10.1f}" if v is not None else f"{'-':>10}"

    for s in report["streams"]:
        e = s["error_us"]
        off = s.get("offline", {"method": "-", "error_us": {"median": None, "p95": None}})
        print(f"{s['name']:8} {s['modality']:10} {s['samples_sent']:9d} {s['samples_recorded']:9d} {s['method']:>15} "
              f"{f(e['median'])} {f(e['p95'])} {f(e['max'])} | {off['method']:>15} {f(off['error_us']['median'])} "
              f"{f(off['error_us']['p95'])}")
    settled = [f"{s['name']} {s['error_us_after_20s']['median']:.1f}{_offline_after(s)}" for s in report["streams"]
               if s.get("error_us_after_20s", {}).get("median") is not None]
    if settled:
        print(f"live median us after the first {SETTLE_S:g} s (offline): {', '.join(settled)}")


def _offline_after(s: dict) -> str:
    off = s.get("offline", {}).get("error_us_after_20s", {}).get("median")
    return f" ({off:.1f})" if off is not None else ""


def plot_alignment(data: dict, truth, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    for name, st in truth.streams.items():
        rec = data["streams"].get(name)
        if rec is None or rec["ref_ns"] is None:
            continue
        seq = rec["seq"]
        ok = seq < len(st.true_ns)
        t = (st.true_ns[seq[ok]] - truth.origin_ns) / 1e9
        err_ms = (rec["ref_ns"][ok] - st.true_ns[seq[ok]]) / 1e6
        step = max(1, len(t) // 4000)
        ax.plot(t[::step], err_ms[::step], ".", ms=2, label=f"{name} ({rec['method'][-1]})")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("corrected - true (ms)")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_title("synchub demo: timestamp error per stream")
    ax.grid(True, alpha=0.3)
    ax.legend(markerscale=5, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

