"""``synchub bench encoders [--json OUT]``: encoder inference time on one core and agent RSS with all models.

Per modality, on a simulated held-out recording, pinned to one CPU core with one onnxruntime thread:

* ``ms_per_window``: one window (``window_frames`` frames, batch of 1) through the ONNX model, median;
* ``ms_per_window_batched``: the same when all windows of the recording go through ``run_windows`` (batches of
  the runner's ``max_batch``);
* ``features_ms_per_s`` / ``embed_ms_per_s``: milliseconds per second of stream data for the numpy features alone
  and for ``EncoderRunner.embed`` end to end (features + windows + stitching).

RSS: a fresh Python process imports the runtime, loads every encoder and embeds a little data of each modality,
then reads ``VmRSS``/``VmHWM`` from ``/proc/self/status`` (baseline: the same process before loading models).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

from synchub.argtypes import positive
from synchub.errors import UserError
from synchub.extras import require
from synchub.models import features as F
from synchub.models.runner import MODALITIES, EncoderRunner, NoModelError
from synchub.models.simdata import HELDOUT_SEED_BASE, make_recording

GOAL_MS_PER_WINDOW = 1.0
GOAL_RSS_MB = 120.0

_RSS_SCRIPT = r"""
import json, sys
import numpy as np
def status():
    out = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) / 1024.0
    return out
import onnxruntime
from synchub.models.runner import EncoderRunner, MODALITIES
from synchub.models.simdata import make_recording
rec = make_recording(9_000_321, 10.0)
base = status()
runners = {m: EncoderRunner.load(m, threads=1) for m in MODALITIES}
loaded = status()
for m, r in runners.items():
    r.embed(rec[m].samples, rec[m].times_ns)
after = status()
print(json.dumps({"baseline": base, "loaded": loaded, "after_embed": after}))
"""


def add_arguments(p) -> None:
    p.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    p.add_argument("--seconds", type=positive, default=60.0, help="length of the recording embedded per modality")
    p.add_argument("--repeats", type=int, default=50, help="timed repeats of a single window")
    p.add_argument("--cpu", type=int, default=None, help="CPU core to pin to (default: the first allowed)")


def _cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1e3)


def measure_rss() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _RSS_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args) -> int:
    require("onnxruntime", "the encoder benchmark")
    cpu = args.cpu
    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        cpu = allowed[0] if cpu is None else cpu
        os.sched_setaffinity(0, {cpu})
    rec = make_recording(HELDOUT_SEED_BASE + 4321, args.seconds)
    rows = []
    for m in MODALITIES:
        try:
            r = EncoderRunner.load(m, threads=1)
        except NoModelError as exc:
            raise UserError(str(exc)) from None
        s = rec[m]
        feats = F.featurize(m, s.samples, s.times_ns)
        step = r.window - 2 * r.margin
        nw = -(-feats.n_frames // step)
        padded = np.zeros((r.in_channels, nw * step + 2 * r.margin), np.float32)
        padded[:, r.margin : r.margin + feats.n_frames] = feats.x
        windows = np.stack([padded[:, i * step : i * step + r.window] for i in range(nw)])
        one = windows[nw // 2 : nw // 2 + 1]
        ms_one = _median_ms(lambda: r.run_windows(one), args.repeats)  # noqa: B023
        ms_batch = _median_ms(lambda: r.run_windows(windows), 5) / nw  # noqa: B023
        ms_feat = _median_ms(lambda: F.featurize(m, s.samples, s.times_ns), 3)  # noqa: B023
        ms_embed = _median_ms(lambda: r.embed(s.samples, s.times_ns), 3)  # noqa: B023
        data_s = feats.n_frames / F.FRAME_RATE_HZ
        rows.append({
            "modality": m,
            "window_frames": r.window,
            "window_s": r.window / F.FRAME_RATE_HZ,
            "step_frames": step,
            "windows": nw,
            "ms_per_window": round(ms_one, 4),
            "ms_per_window_batched": round(ms_batch, 4),
            "model_ms_per_s": round(ms_batch * nw / data_s, 4),
            "features_ms_per_s": round(ms_feat / data_s, 4),
            "embed_ms_per_s": round(ms_embed / data_s, 4),
            "max_batch": r.max_batch,
            "onnx_bytes": pathlib.Path(r.path).stat().st_size,
        })
    rss = measure_rss()
    result = {
        "bench": "encoders",
        "cpu": _cpu_name(),
        "pinned_cpu": cpu,
        "ort_threads": 1,
        "recording_s": args.seconds,
        "goal_ms_per_window": GOAL_MS_PER_WINDOW,
        "goal_rss_mb": GOAL_RSS_MB,
        "encoders": rows,
        "rss_mb": rss,
    }
    print(f"{'modality':10s} {'ms/window':>10s} {'batched':>9s} {'feat ms/s':>10s} {'embed ms/s':>11s}")
    for row in rows:
        print(f"{row['modality']:10s} {row['ms_per_window']:10.3f} {row['ms_per_window_batched']:9.3f} "
              f"{row['features_ms_per_s']:10.3f} {row['embed_ms_per_s']:11.3f}")
    if "loaded" in rss:
        print(f"RSS: baseline {rss['baseline']['VmRSS']:.1f} MB, all models loaded {rss['loaded']['VmRSS']:.1f} MB, "
              f"after embedding {rss['after_embed']['VmRSS']:.1f} MB (peak {rss['after_embed']['VmHWM']:.1f} MB)")
    else:
        print(f"RSS measurement failed: {rss}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0
