"""``bench align-files``, part 8: a camera's own video file (``agent/formats/readers/media.py``).  The rig plays a
50 ms tone and lights a lamp for 100 ms at random moments (1-3 s apart) for ``duration`` seconds; the rig's
microphone (a 16 kHz WAV) is the reference clock.  Two cameras, on their own crystal clocks (an offset of a second or
two, a drift, a slow random walk), written by FFmpeg (``media_files.write_clip``):
* a camera with a microphone (MPEG-4 video at 30 fps, AAC audio at 48 kHz in an MP4): tied to the rig's microphone
  by ``synchub align`` (the two-microphone path: GCC on the raw samples); the error of its clock's mapping against the
  simulated truth, every 20 ms of its recording, and the share within the reported 2-sigma;
* a silent camera (H.264 in a Matroska file) filming the lamp, and the rig's log of "lamp on" lines on a third
  clock, 20-40 s off the camera's (the file engine's whole-recording offset search): the log's lines mapped onto the
  camera's clock against the instants its frames saw the lamp go on (a frame is 33 ms: the lamp's onset between two
  frames is the limit of what the pictures say).
Files written here by the library that reads them (PyAV): real containers' quirks (an AAC encoder's priming, a
Matroska file's millisecond timestamps), not a real camera's (variable frame rate, dropped frames)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from synchub.agent.align.files.engine import FileAlignment, InputSpec
from synchub.drivers.sim.clocks import ClockSpec, DeviceClock
from synchub.extras import require

from .media_files import write_clip

NS = 1_000_000_000
MIC_HZ = 16000


def _rig(folder: Path, duration: float, seed: int) -> dict:
    require("av", "the camera part of bench align-files")
    sf = require("soundfile", "the camera part of bench align-files")
    rng = np.random.default_rng(seed)
    ev = np.cumsum(rng.uniform(1.0, 3.0, int(duration)))
    ev = (ev[ev < duration - 3.0] * NS).astype(np.int64)  # true instants (the rig's microphone's clock)
    clocks = {k: DeviceClock(ClockSpec(offset_s=float(rng.uniform(lo, hi)), drift_ppm=float(rng.uniform(-80, 80)),
                                       random_walk_ppm=0.5), duration + 60, seed + i)
              for i, (k, lo, hi) in enumerate((("cam", -2.0, -0.5), ("silent", 0.5, 2.0), ("log", 20.0, 40.0)))}
    x = rng.normal(0, 0.01, int(MIC_HZ * duration)).astype(np.float32)
    k = np.arange(int(0.05 * MIC_HZ))
    for t in ev:
        i = int(t * MIC_HZ // NS)
        x[i:i + len(k)] += (0.4 * np.sin(2 * np.pi * 640.0 * k / MIC_HZ)).astype(np.float32)[: max(0, len(x) - i)]
    sf.write(folder / "mic.wav", x, MIC_HZ)
    on = {}
    for name, fmt, video, audio in (("cam", "mp4", "mpeg4", "aac"), ("silent", "mkv", "libx264", None)):
        on[name] = clocks[name].to_device(ev)  # the events on that camera's clock
        inside = on[name] > 0
        write_clip(folder / f"{name}.{fmt}", on[name][inside] / NS, duration - 4.0, video=video, audio=audio, seed=seed)
    logged = clocks["log"].to_device(ev)
    (folder / "log.csv").write_text("time,event\n" + "".join(f"{t / NS:.6f},lamp on\n" for t in logged))
    return {"clocks": clocks, "ev": ev, "on": on, "logged": logged}


def camera_files(quick: bool, checks: list, check) -> list[dict]:
    duration = 40.0 if quick else 300.0
    out = []
    for seed in ([21] if quick else [21, 22, 23]):
        with tempfile.TemporaryDirectory() as d:
            folder = Path(d)
            rig = _rig(folder, duration, seed)
            fa = FileAlignment([InputSpec([str(folder / "mic.wav")]), InputSpec([str(folder / "cam.mp4")])])
            fa.gather()
            link, cam = fa.inputs[1].link, rig["clocks"]["cam"]
            pts = np.arange(max(int(cam.to_device(np.array([NS]))[0]), NS), int((duration - 6.0) * NS), 20_000_000,
                            dtype=np.int64)
            g, unc = link.map(pts, np.zeros(len(pts), dtype=np.int64))
            err = (g - cam.to_true(pts, 0)).astype(float)
            out.append({"camera": "with microphone (MP4: MPEG-4 + AAC)", "seed": seed, "method": link.method,
                        "rms_us": float(np.sqrt(np.mean(err ** 2))) / 1e3, "max_us": float(np.max(np.abs(err))) / 1e3,
                        "median_unc_us": float(np.median(unc)) / 1e3,
                        "within_2sigma_pct": 100.0 * float(np.mean(np.abs(err) <= 2 * unc))})
            fa = FileAlignment([InputSpec([str(folder / "silent.mkv")]), InputSpec([str(folder / "log.csv")])])
            fa.gather()
            link = fa.inputs[1].link
            seen = (rig["on"]["silent"] > NS) & (rig["on"]["silent"] < (duration - 5.0) * NS)
            g, unc = link.map(rig["logged"][seen], np.zeros(int(seen.sum()), dtype=np.int64))
            err = (g - rig["on"]["silent"][seen]).astype(float)
            out.append({"camera": "silent, filming the lamp (MKV: H.264) vs the lamp log", "seed": seed,
                        "method": link.method, "notes": link.notes[:1], "events": int(seen.sum()),
                        "median_ms": float(np.median(np.abs(err))) / 1e6, "max_ms": float(np.max(np.abs(err))) / 1e6,
                        "median_unc_ms": float(np.median(unc)) / 1e6,
                        "within_2sigma_pct": 100.0 * float(np.mean(np.abs(err) <= 2 * unc))})
    mic = [r for r in out if "microphone" in r["camera"]]
    lamp = [r for r in out if "silent" in r["camera"]]
    worst = max(r["max_us"] for r in mic)
    check(checks, "camera with a microphone -> the rig's microphone: largest error (us), lowest 2-sigma share (%)",
          [round(worst, 1), round(min(r["within_2sigma_pct"] for r in mic), 1)], "<= 500 us; >= 90 %",
          worst <= 500.0 and min(r["within_2sigma_pct"] for r in mic) >= 90.0)
    med = max(r["median_ms"] for r in lamp)
    check(checks, "silent camera <- lamp log 20-40 s off: largest median |error| (ms), lowest 2-sigma share (%)",
          [round(med, 2), round(min(r["within_2sigma_pct"] for r in lamp), 1)], "<= 16.7 ms (half a frame); >= 90 %",
          med <= 1000 / 60 and min(r["within_2sigma_pct"] for r in lamp) >= 90.0)
    return out
