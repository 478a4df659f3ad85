"""Video files (a webcam's or a phone's MP4, MKV, MOV, AVI, WebM) through PyAV (FFmpeg): their audio and video tracks.

A camera that records sound hears what the rig's microphone hears, so its recording ties to the rig by its audio
track (the aligner's two-microphone path: GCC on the raw samples), and its frames come along on the same clock.
Both tracks are on the file's *presentation clock*: each decoded frame's timestamp (pts x the stream's time base,
exact in integer ns) as FFmpeg gives it, after the container's edit list (an AAC encoder's priming samples are not
sound).  An audio track is one stream ``<stem>.audio`` (float32 samples, every channel; sample k of a decoded frame
at the frame's time + k / rate; a lossy codec's name and pre-echo in its quality); a video track ``<stem>.video``:
each frame scaled to 32 x 24 grey (uint8, the aligner's camera features pool it further; a recording of full frames
is the camera file itself).  A file with
one track of either kind names its stream after its stem alone.

Faults are one line: not a media file FFmpeg can open (a foreign or truncated file whose index is missing), no
audio or video track, a decode error part-way (how far it read is said).  Frames whose timestamp does not rise are
dropped and counted (``stats``: a muxer's duplicated or reordered timestamps), never put out of time order.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import numpy as np

from synchub.agent.core.stream import StreamInfo
from synchub.extras import require

from .audio_read import codec_quality
from .base import FileStream, InputError, InputOptions, Piece, stem_of

log = logging.getLogger(__name__)
NS = 1_000_000_000
FRAME_SHAPE = (24, 32)  # rows, columns of the grey frames a video track gives
AUDIO_BLOCK = 1 << 15  # samples per audio piece (about)
VIDEO_BLOCK = 256  # frames per video piece


def _ns(pts: int, time_base) -> int:
    """``pts`` x ``time_base`` (a Fraction) in exact integer ns."""
    return (int(pts) * time_base.numerator * NS) // time_base.denominator


class MediaInput:
    """One video file (see the module docstring)."""

    kind = "media"

    def __init__(self, path, options: InputOptions | None = None):
        self.path = str(path)
        self.options = options or InputOptions()
        av = require("av", "reading video files")
        try:
            with av.open(self.path) as c:
                tracks = [s for s in c.streams if s.type in ("audio", "video")]
                found = [(s.index, s.type, s.codec_context.sample_rate if s.type == "audio" else None,
                          s.codec_context.channels if s.type == "audio" else None,
                          float(s.average_rate) if s.type == "video" and s.average_rate else 0.0,
                          s.codec_context.name or "") for s in tracks]
        except av.FFmpegError as exc:
            raise InputError(self.path, f"not a media file FFmpeg can read ({_first_line(exc)})") from None
        if not found:
            raise InputError(self.path, "no audio or video track")
        stem = self.options.name or stem_of(self.path)
        single = len(found) == 1
        self.streams: list[FileStream] = []
        self.stats: dict[str, int] = {}
        for index, kind, rate, channels, fps, codec in found:
            name = stem if single else f"{stem}.{kind}" if sum(f[1] == kind for f in found) == 1 \
                else f"{stem}.{kind}{index}"
            if kind == "audio":
                if not rate or not channels:
                    raise InputError(self.path, f"audio track {index}: no sample rate or channel count")
                info = StreamInfo(name=name, type="audio", nominal_srate=float(rate), channel_count=int(channels),
                                  channel_format="float32",
                                  channel_labels=tuple(f"ch{i}" for i in range(channels)) if channels > 1 else (),
                                  quality=(("clock", "presentation timestamps"),) + codec_quality(codec, rate))
            else:
                h, w = FRAME_SHAPE
                info = StreamInfo(name=name, type="video", nominal_srate=fps, channel_count=h * w,
                                  channel_format="uint8", shape=FRAME_SHAPE,
                                  quality=(("clock", "presentation timestamps"), ("frames", "grey, scaled")))
            self.streams.append(FileStream(key=name, info=info, local=index, on_file_clock=True))

    def read(self, evidence: bool = True, streams: set[str] | None = None) -> Iterator[Piece]:
        av = require("av", "reading video files")
        want = {s.local: s for s in self.streams if streams is None or s.key in streams}
        if not want:
            return
        self.stats = {}
        seqs = {i: 0 for i in want}
        last = {i: None for i in want}
        bufs: dict[int, list] = {i: [] for i in want}
        clocks: dict[int, _SampleClock] = {}
        done = 0
        try:
            with av.open(self.path) as c:
                picked = [s for s in c.streams if s.index in want]
                resample = {s.index: av.AudioResampler(format="flt") for s in picked if s.type == "audio"}
                for packet in c.demux(*picked):
                    i = packet.stream.index
                    for frame in packet.decode():
                        if frame.pts is None:
                            self._count("frames without a timestamp")
                            continue
                        t0 = _ns(frame.pts, frame.time_base)
                        if i in resample:
                            clock = clocks.setdefault(i, _SampleClock(int(frame.sample_rate), frame.time_base))
                            for out in resample[i].resample(frame):
                                t = clock.times(t0, out.samples)
                                if t is None:
                                    self._count("audio_overlap")
                                    continue
                                bufs[i].append((t, out.to_ndarray().reshape(out.samples, -1).astype(np.float32)))
                                t0 = int(t[-1]) + clock.period_ns
                                last[i] = int(t[-1])
                            self.stats.update(clock.stats)
                        elif last[i] is not None and t0 <= last[i]:
                            self._count("frames whose timestamp does not rise")
                        else:
                            bufs[i].append((np.array([t0], dtype=np.int64), self._grey(frame)))
                            last[i] = t0
                        done += 1
                    piece = self._flush(i, want[i], bufs, seqs)
                    if piece is not None:
                        yield piece
                declared = c.duration  # microseconds (FFmpeg's AV_TIME_BASE), where the header says
        except av.FFmpegError as exc:
            raise InputError(self.path, f"decoding failed after {done} frames ({_first_line(exc)})") from None
        ends = [t for t in last.values() if t is not None]
        if declared and ends and max(ends) < declared * 1000 - NS:
            self.stats["cut_short"] = 1
            log.warning("%s: cut short: its tracks end at %.1f s of the %.1f s its header declares (the rest of the "
                        "recording is not in the file)", self.path, max(ends) / NS, declared / 1e6)
        for i in want:
            piece = self._flush(i, want[i], bufs, seqs, final=True)
            if piece is not None:
                yield piece

    @staticmethod
    def _grey(frame) -> np.ndarray:
        h, w = FRAME_SHAPE
        g = frame.reformat(width=w, height=h, format="gray").to_ndarray()
        return np.ascontiguousarray(g[:h, :w], dtype=np.uint8)[None]

    def _flush(self, i: int, fs: FileStream, bufs, seqs, final: bool = False) -> Piece | None:
        parts = bufs[i]
        n = sum(len(t) for t, _ in parts)
        if not parts or (not final and n < (AUDIO_BLOCK if fs.info.type == "audio" else VIDEO_BLOCK)):
            return None
        t = np.concatenate([p[0] for p in parts])
        x = np.concatenate([p[1] for p in parts])
        bufs[i] = []
        piece = Piece(fs.key, seqs[i], t, x)
        seqs[i] += len(t)
        return piece

    def _count(self, why: str) -> None:
        self.stats[why] = self.stats.get(why, 0) + 1


class _SampleClock:
    """An audio track's samples on its sample clock: each frame follows the one before it by its samples, its own
    timestamp (rounded to the container's time base: 1 ms in Matroska, where a 1024-sample AAC frame lasts 21.33 ms)
    only checked against that; a frame later than its place by more than ``tolerance`` starts the clock again after a
    gap (counted), one earlier overlaps what was read (left out, counted)."""

    def __init__(self, rate: int, time_base):
        self.rate = rate
        self.period_ns = NS // rate
        self.tolerance = max(2 * _ns(1, time_base), 2_000_000)
        self.start: int | None = None  # the time of sample 0 of the current run
        self.k = 0  # samples since then
        self.stats: dict[str, int] = {}

    def times(self, pts_ns: int, n: int) -> np.ndarray | None:
        if self.start is not None:
            expected = self.start + (self.k * NS) // self.rate
            if pts_ns < expected - self.tolerance:
                return None
            if pts_ns > expected + self.tolerance:
                self.stats["audio_gaps"] = self.stats.get("audio_gaps", 0) + 1
                self.start = None
        if self.start is None:
            self.start, self.k = pts_ns, 0
        k = np.arange(self.k, self.k + n, dtype=np.int64)
        self.k += n
        return self.start + (k * NS) // self.rate


def _first_line(exc: Exception) -> str:
    """FFmpeg's reason, without its error number and the file's name again."""
    s = str(exc).strip()
    s = s.splitlines()[0] if s else type(exc).__name__
    return re.sub(r"^\[Errno -?\d+\] |: '[^']*'$", "", s)
