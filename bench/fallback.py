"""``synchub bench fallback``: a trigger-wired, aligned stream whose trigger stops: its aligner as the fallback.

On the simulator's renderings (``synchub.drivers.sim``: a world of taps heard by a microphone and felt by an IMU), a
microphone whose device also sees the 1 s sync pulses (``trigger = "sync"``) is aligned to the IMU by the live
tracker (``AlignmentTracker``, classical path).  Its samples are stamped ``LAG_NS`` after the sound (buffering no
window shows); its clock drifts 40 ppm and wanders ``--wander`` ppm/sqrt(h); its link is USB-like (5-20 ms).  At
``--loss-s`` the trigger box stops.  Everything goes through the agent's clock layer (``StreamClocks`` with the
``[[trigger]]`` line, its matcher and the trigger fallback) and the session's latency calibration
(``SessionLatency``) in host-time order, each microphone chunk mapped as it arrives.  The same session with the
aligner's estimates withheld (the agent before the fallback) is the baseline.  Measured per time span after the loss:
median and p95 |mapped - true| of the microphone's samples, which estimator mapped them, and the latency the
fallback measured against the edges before the loss.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from synchub.agent.align.latency import PairKey
from synchub.agent.align.tracker import AlignmentTracker
from synchub.agent.clock.layer import StreamClocks
from synchub.agent.clock.settings import ClockLayerConfig, StreamClockOptions
from synchub.agent.core.evidence import TriggerEdge
from synchub.agent.core.options import TriggerSettings
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.core.units import NS
from synchub.agent.pipeline.latency_io import SessionLatency
from synchub.argtypes import positive
from synchub.drivers.sim import render as R
from synchub.drivers.sim.clocks import ClockSpec, DeviceClock
from synchub.drivers.sim.world import World

IMU = StreamInfo("imu0", "imu", 200.0, 6)
MIC = StreamInfo("mic0", "audio", 16000.0, 1)
KEY = PairKey("mic0", "audio", "imu0", "imu")
LAG_NS = 12_000_000
CONFIG = ClockLayerConfig(triggers=(TriggerSettings(name="sync", backend="sim", period_s=1.0),),
                          streams={"mic0": StreamClockOptions(trigger="sync", align_to="imu0")})


def add_arguments(p) -> None:
    p.add_argument("--duration-s", type=positive, default=400.0, help="simulated session length")
    p.add_argument("--loss-s", type=positive, default=70.0, help="when the trigger box stops")
    p.add_argument("--wander", default="2,50,200", help="clock drift random walks to run, ppm/sqrt(h), comma-separated")
    p.add_argument("--seed", type=int, default=3030)
    p.add_argument("--json", help="write the result here (e.g. bench/results/fallback.json)")


def _chunks(name: str, data, device, host, ref=None, every_s: float = 0.25) -> list[Chunk]:
    step = max(1, int(every_s * len(device) / ((device[-1] - device[0]) / NS)))
    return [Chunk(name, a, data[a:a + step], device[a:a + step], host[a:a + step],
                  ref_ns=None if ref is None else ref[a:a + step],
                  unc_ns=None if ref is None else np.zeros(len(device[a:a + step]), np.int64))
            for a in range(0, len(device), step)]


def session(workdir: Path, seed: int, fallback: bool, wander_ppm: float, duration_s: float, loss_s: float):
    """One session; returns (the clock layer, the calibration, [(true time, mapped error ns, method) per chunk])."""
    w = World(duration_s, seed=seed)
    rng = np.random.default_rng(seed)
    t_imu = np.arange(int(duration_s * 200), dtype=np.int64) * 5_000_000
    imu = R.render(w, "imu", t_imu, rng=rng)
    clock = DeviceClock(ClockSpec(offset_s=0.8123, drift_ppm=40.0, random_walk_ppm=wander_ppm, latency_min_ms=5,
                                  latency_max_ms=20, latency_kind="usb-buffer"), duration_s, seed=seed)
    true, dev, _ = clock.regular_samples(16000.0)
    audio = R.render(w, "audio", true - LAG_NS, rng=rng)  # the sample stamped at `true` holds the sound LAG before
    host = clock.arrivals(true)
    clocks = StreamClocks({"imu0": IMU, "mic0": MIC}, CONFIG, history=False)
    cal = SessionLatency(workdir / "latency.json", {"mic0": (KEY, True)}, session=f"seed {seed}")
    tr = AlignmentTracker("imu0", "mic0", IMU, MIC, runners={}, window_s=8.0, hop_s=4.0)
    pulses = np.arange(1, int(loss_s), dtype=np.int64) * NS
    events = [(int(t), 0, TriggerEdge("sync", int(t), "ref", 1)) for t in pulses]
    events += [(int(t) + 10_000_000, 0, TriggerEdge("mic0", int(d), "device", 1))
               for t, d in zip(pulses, clock.to_device(pulses, jitter=True), strict=True)]
    events += [(int(c.host_ns[-1]), 1, ("imu0", c)) for c in _chunks("imu0", imu, t_imu, t_imu, ref=t_imu)]
    mic = _chunks("mic0", audio, dev, host)
    events += [(int(c.host_ns[-1]), 1, ("mic0", c)) for c in mic]
    out = []
    for _, _, item in sorted(events, key=lambda e: (e[0], e[1])):
        if isinstance(item, TriggerEdge):
            clocks.feed(item)
            continue
        name, c = item
        if name == "mic0":
            clocks.feed_arrivals("mic0", c.device_ns, c.host_ns)
            fixed = clocks.correct(c)
            truth = true[c.seq:c.seq + c.n]
            out.append((int(truth[0]), float(np.median(fixed.ref_ns - truth)), fixed.method))
        tr.push(name, c)
        for est in tr.poll():
            est = cal(est)
            if fallback:
                clocks.feed(est)
    return clocks, cal, out


def spans(duration_s: float, loss_s: float) -> list[tuple[float, float]]:
    """The time spans after the loss the errors are summarized over."""
    edges = [loss_s + 5, loss_s + 80, loss_s + 180, duration_s]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


def summary(out, lo_s: float, hi_s: float) -> dict:
    sel = [(abs(e), m) for t, e, m in out if lo_s * NS <= t < hi_s * NS]
    if not sel:
        return {}
    err = np.array([e for e, _ in sel]) / 1e6
    return {"median_ms": round(float(np.median(err)), 3), "p95_ms": round(float(np.percentile(err, 95)), 3),
            "methods": sorted({m for _, m in sel})}


def run(args) -> int:
    started = time.time()
    res = {"bench": "fallback", "platform": platform.platform(), "duration_s": args.duration_s,
           "loss_s": args.loss_s, "seed": args.seed, "lag_ms": LAG_NS / 1e6, "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        for wander in [float(x) for x in str(args.wander).split(",") if x.strip()]:
            runs = {fb: session(Path(tmp), args.seed, fb, wander, args.duration_s, args.loss_s) for fb in (True, False)}
            clocks, cal, with_fb = runs[True]
            case = {"wander_ppm_per_sqrt_h": wander, "events": [line for _, line in clocks.take_events()],
                    "fallback": clocks.clocks["mic0"].model.fallback.state(), "spans": []}
            for lo, hi in spans(args.duration_s, args.loss_s):
                case["spans"].append({"from_s": lo, "to_s": hi, "with_fallback": summary(with_fb, lo, hi),
                                      "without": summary(runs[False][2], lo, hi)})
                print(f"wander {wander:g} ppm/sqrt(h), {lo:.0f}-{hi:.0f} s: {case['spans'][-1]}", flush=True)
            res["cases"].append(case)
    res["wall_s"] = round(time.time() - started, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0
