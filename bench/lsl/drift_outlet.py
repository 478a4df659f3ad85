"""The outlet side of ``synchub bench lsl-inlet``, run in its own process under ``bench/lsl/clockshim.c`` (LD_PRELOAD):
an LSL outlet of one double64 channel (the sample's index) at ``--rate`` Hz whose clock drifts.  Sample ``k`` is
taken at outlet-clock time ``F0 + k / rate`` (a device sampling on its own clock) and pushed with that stamp
5-20 ms later (``--delay-ms``: delivery jitter, in order).  The truth, the host's real CLOCK_MONOTONIC at each
stamp, is the shim's inverse; it is written to ``--truth`` (npz) when the run ends."""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import sys
import time

import numpy as np


def real_of(fake_ns: np.ndarray, env) -> np.ndarray:
    """The shim's inverse: the real clock when the fake one read ``fake_ns`` (fixed-point iteration, sub-ns)."""
    r0 = float(env["r0"])
    real = fake_ns.astype(np.float64) - env["offset"]
    for _ in range(4):
        dt = real - r0
        real = fake_ns - env["offset"] - env["skew"] * dt - env["wander"] * np.sin(2 * math.pi * dt / (env["period"] * 1e9))
    return np.rint(real).astype(np.int64)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--delay-ms", type=float, nargs=2, default=(5.0, 20.0))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--go", required=True, help="start once this file exists")
    p.add_argument("--truth", required=True)
    a = p.parse_args(argv)
    lib = ctypes.CDLL(None)
    try:
        lib.shim_real_ns.restype = ctypes.c_int64
        lib.shim_r0_ns.restype = ctypes.c_int64
    except AttributeError:
        print("lsl_drift_outlet: not running under the clock shim (LD_PRELOAD)", file=sys.stderr)
        return 2
    import pylsl

    info = pylsl.StreamInfo(a.name, "Drift", 1, a.rate, "double64", f"bench-{a.name}")
    info.desc().append_child("channels").append_child("channel").append_child_value("label", "k")
    outlet = pylsl.StreamOutlet(info)
    while not os.path.exists(a.go):
        time.sleep(0.05)
    rng = np.random.default_rng(a.seed)
    n = int(a.duration * a.rate)
    f0 = pylsl.local_clock() + 0.2
    stamps = f0 + np.arange(n) / a.rate
    deliver = np.maximum.accumulate(stamps + rng.uniform(a.delay_ms[0], a.delay_ms[1], n) / 1e3)
    for k in range(n):
        wait = deliver[k] - pylsl.local_clock()
        if wait > 0:
            time.sleep(wait)
        outlet.push_sample([float(k)], float(stamps[k]))
    time.sleep(1.0)
    env = {"r0": lib.shim_r0_ns(), "offset": float(os.environ.get("SHIM_OFFSET_NS", 0)),
           "skew": float(os.environ.get("SHIM_SKEW", 0)), "wander": float(os.environ.get("SHIM_WANDER_NS", 0)),
           "period": float(os.environ.get("SHIM_WANDER_PERIOD_S", 1))}
    stamp_ns = np.rint(stamps * 1e9).astype(np.int64)
    np.savez(a.truth, stamp_ns=stamp_ns, true_ns=real_of(stamp_ns, env), **{k: np.array(v) for k, v in env.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
