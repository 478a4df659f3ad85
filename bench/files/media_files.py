"""Video files as a webcam or a phone writes them, for the tests and the benchmark: an MP4 (or MKV) with an H.264 or
MPEG-4 video track and an AAC (or Opus) audio track, encoded by FFmpeg through PyAV, the same library that reads
them back (``agent/formats/readers/media.py``), so the container's quirks (an AAC encoder's priming samples, the
edit list that hides them, B-frames' reordered timestamps) are FFmpeg's own, not synchub's idea of them.  The scene:
a lamp (a bright square) that lights for 100 ms at each event while a 50 ms tone sounds, over faint noise."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

NS = 1_000_000_000


def write_clip(path: Path, events_s, seconds: float, fps: int = 30, rate: int = 48000, video: str | None = "mpeg4",
               audio: str | None = "aac", size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    """A ``seconds`` long clip whose events (s, on its own presentation clock from 0) light the lamp and sound the
    tone; ``video``/``audio``: the FFmpeg encoder of that track, or None for none."""
    import av

    rng = np.random.default_rng(seed)
    ev = np.asarray(sorted(events_s), dtype=np.float64)
    with av.open(str(path), "w") as c:
        vs = c.add_stream(video, rate=fps) if video else None
        if vs is not None:
            vs.width, vs.height = size
            vs.pix_fmt = "yuv420p"
        aus = c.add_stream(audio, rate=rate) if audio else None
        if aus is not None:
            aus.layout = "mono"
        n_v = int(seconds * fps)
        n_a = int(seconds * rate)
        x = (rng.normal(0.0, 0.01, n_a)).astype(np.float32)
        k = np.arange(int(0.05 * rate))
        for t in ev:
            i = int(round(t * rate))
            x[i:i + len(k)] += (0.5 * np.sin(2 * np.pi * 640.0 * k / rate)).astype(np.float32)[: max(0, n_a - i)]
        step = 1024
        a_at = 0
        for f in range(n_v):
            t = f / fps
            if vs is not None:
                img = np.full((size[1], size[0], 3), 40, dtype=np.uint8)
                if np.any((t >= ev) & (t < ev + 0.1)):
                    img[8:24, 8:24] = 250
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = f
                frame.time_base = Fraction(1, fps)
                for p in vs.encode(frame):
                    c.mux(p)
            while aus is not None and a_at < n_a and a_at / rate <= t + 1.0 / fps:
                chunk = x[a_at:a_at + step]
                af = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                af.sample_rate = rate
                af.pts = a_at
                af.time_base = Fraction(1, rate)
                for p in aus.encode(af):
                    c.mux(p)
                a_at += len(chunk)
        for s in (vs, aus):
            if s is not None:
                for p in s.encode(None):
                    c.mux(p)
    return Path(path)
