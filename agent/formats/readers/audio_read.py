"""Streaming audio reader (WAV, FLAC, ... through ``soundfile``): one stream, read in blocks.

The stream is named after the file's stem (``audio.wav`` -> ``audio``; ``InputOptions.name`` overrides) and its
device time is the sample clock: sample ``k`` at ``k / rate`` from 0, unless the file says when it started: a
Broadcast Wave ``bext`` chunk's TimeReference (samples since midnight) puts sample ``k`` at
``(TimeReference + k) / rate``.  Times are exact int64 ns (integer arithmetic, any length).  An unreadable file,
a file of zero frames, or one libsndfile does not know is a one-line ``InputError``.  A lossy file (Vorbis, Opus,
MP3) says its codec and how early it may show a sound's start in its quality (``pre_echo_ns``).  Samples clipped at
full scale (flat tops: a recorder's gain set too high) are counted (``stats["clipped"]``, where they are
``CLIP_WARN`` of the samples or more; not on the channel named as the sync channel: a TTL at full scale is not a
clipped microphone): ``synchub align`` warns of them.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator

import numpy as np

from synchub.agent.core.stream import StreamInfo
from synchub.extras import require

from .base import FileStream, InputError, InputOptions, Piece, stem_of, sync_channel

log = logging.getLogger(__name__)
NS = 1_000_000_000
BLOCK = 1 << 16  # frames per piece
CLIP_LEVEL = 0.99  # of full scale: a sample there equal to the one before it is clipped (a flat top)
CLIP_WARN = 0.001  # the share of the samples clipped from which it is counted in ``stats``
#: lossy codecs (libsndfile's subtypes and FFmpeg's decoders, lower case): samples before a sound's start their
#: pre-echo may reach (``pre_echo_ns``), about a short transform block: Vorbis 256, AAC 128 (measured, FFmpeg's
#: encoder: 6 ms at 16 kHz, 2 at 48), MP3 320 of its 576-sample granule (up to 20 ms at 16 kHz), AC-3 256, MPEG
#: layers I and II a frame / the filterbank's 512 taps
PRE_ECHO = {"vorbis": 256, "aac": 128, "mpeg_layer_iii": 320, "mp3": 320, "mp3float": 320, "ac3": 256, "eac3": 256,
            "mpeg_layer_ii": 512, "mp2": 512, "mp2float": 512, "mpeg_layer_i": 384, "mp1": 384}
OPUS_PRE_ECHO_NS = 2_500_000  # Opus: its short MDCT, 2.5 ms
#: Offset of TimeReferenceLow in a ``bext`` chunk (Description 256, Originator 32, OriginatorReference 32,
#: OriginationDate 10, OriginationTime 8).
BEXT_TIME_REF = 338


def bext_time_reference(path) -> int | None:
    """The BWF TimeReference (samples since midnight) of a RIFF/RF64/BW64 WAV file, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64", b"BW64") or head[8:12] != b"WAVE":
                return None
            while True:
                hdr = f.read(8)
                if len(hdr) < 8:
                    return None
                cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
                if cid == b"bext":
                    body = f.read(min(size, BEXT_TIME_REF + 8))
                    if len(body) < BEXT_TIME_REF + 8:
                        return None
                    lo, hi = struct.unpack_from("<II", body, BEXT_TIME_REF)
                    return (hi << 32) | lo
                if cid == b"data" or size == 0xFFFFFFFF:
                    return None  # bext comes before the samples
                f.seek(size + (size & 1), 1)
    except OSError:
        return None


def sample_times(k0: int, n: int, rate: int, t0_samples: int = 0) -> np.ndarray:
    """Exact ns times of samples ``k0 .. k0+n-1`` of an integer-rate clock started ``t0_samples`` samples in."""
    k = np.arange(k0, k0 + n, dtype=np.int64) + int(t0_samples)
    return (k // rate) * NS + ((k % rate) * NS) // rate


def pre_echo_ns(codec: str, rate: int) -> int:
    """How far before a sound's start a lossy file's ``codec`` (libsndfile's subtype or FFmpeg's decoder) may spread
    it, at ``rate`` (0: a lossless one): a transform codec quantizes a block at a time, and the noise it adds to a
    block where a sound starts sounds from the block's start (pre-echo), where an onset detector finds it.  Measured
    on the held-out sound effects at 5 dB SNR (encoders at their defaults), the average's rise before the sounds'
    start: Vorbis 16 ms at 16 kHz (2 at 48), MP3 10-20 ms at 16 kHz (1 at 48), AAC 6 and 2, Opus 1-2 ms at either;
    bounds ``PRE_ECHO`` in samples of the file's rate (Opus: in time, it codes at 48 kHz whatever the file's rate)."""
    codec = codec.lower()
    if codec in ("opus", "libopus"):
        return OPUS_PRE_ECHO_NS
    n = PRE_ECHO.get(codec, 0)
    return n * NS // rate if n and rate > 0 else 0


def codec_quality(codec: str, rate: int) -> tuple:
    """A stream's quality entries for a lossy ``codec`` (libsndfile's subtype or FFmpeg's decoder): its name and
    its pre-echo bound (``pre_echo_ns``); none for a lossless one."""
    echo = pre_echo_ns(codec, rate)
    return (("codec", codec.lower()), ("pre_echo_ns", str(echo))) if echo else ()


def clipped_samples(x: np.ndarray) -> int:
    """Samples of ``x`` (frames, channels; full scale 1) at ``CLIP_LEVEL`` or beyond and equal to the one before
    them in their channel: an ADC's flat tops (a loud sound's peak alone is not flat)."""
    x = np.asarray(x)
    flat = (np.abs(x[1:]) >= CLIP_LEVEL) & (x[1:] == x[:-1])
    return int(np.count_nonzero(flat))


class AudioInput:
    """One sound file (see the module docstring)."""

    kind = "audio"

    def __init__(self, path, options: InputOptions | None = None):
        self.path = str(path)
        self.options = options or InputOptions()
        sf = require("soundfile", "reading audio files")
        try:
            info = sf.info(self.path)
        except Exception as exc:  # noqa: BLE001 - libsndfile's message says what it did not like
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(self.path, f"not a readable audio file ({msg})") from None
        if info.frames <= 0:
            raise InputError(self.path, "no audio samples (0 frames)")
        self.rate = int(round(info.samplerate))
        if self.rate <= 0 or abs(info.samplerate - self.rate) > 1e-9:
            raise InputError(self.path, f"unsupported sample rate {info.samplerate}")
        self.frames = int(info.frames)
        self.channels = int(info.channels)
        self.time_reference = bext_time_reference(self.path) or 0
        name = self.options.name or stem_of(self.path)
        labels = tuple(f"ch{i}" for i in range(self.channels)) if self.channels > 1 else ()
        quality = (("clock", "sample index"),) + ((("bext_time_reference", str(self.time_reference)),)
                                                  if self.time_reference else ())
        quality += codec_quality(info.subtype, self.rate)  # a lossy file: how early it may show a sound's start
        si = StreamInfo(name=name, type="audio", nominal_srate=float(self.rate), channel_count=self.channels,
                        channel_format="float32", channel_labels=labels, quality=quality)
        self.stats: dict[str, int] = {}
        self.streams = [FileStream(key=name, info=si, local=0, on_file_clock=True,
                                   meta={"frames": self.frames, "format": info.format})]

    def read(self, evidence: bool = True, streams: set[str] | None = None) -> Iterator[Piece]:
        sf = require("soundfile", "reading audio files")
        key = self.streams[0].key
        if streams is not None and key not in streams:
            return
        k = clipped = 0
        self.fraction = 0.0
        try:  # the sync channel's pulses are not sound: a TTL recorded at full scale is not a clipped microphone
            sync = sync_channel(self.streams[0], self.options, True)
        except InputError:  # a channel it does not have: the file engine says so
            sync = None
        sound = [c for c in range(self.channels) if sync is None or c != sync[0]]  # clipping is counted on these
        try:
            with sf.SoundFile(self.path) as f:
                while True:
                    block = f.read(BLOCK, dtype="float32", always_2d=True)
                    if len(block) == 0:
                        break
                    clipped += clipped_samples(block[:, sound]) if sound else 0
                    yield Piece(key, k, sample_times(k, len(block), self.rate, self.time_reference), block)
                    k += len(block)
                    self.fraction = k / max(self.frames, 1)
        except RuntimeError as exc:
            raise InputError(self.path, f"audio read failed after {k} frames ({exc})") from None
        if k < self.frames:
            raise InputError(self.path, f"truncated audio: {k} of {self.frames} frames readable")
        if clipped and clipped >= CLIP_WARN * k * len(sound):
            if not self.stats:  # told once, as it is found (a refusal later says nothing of it)
                log.warning("%s: %d of its %d samples clipped at full scale (a recorder's gain set too high)",
                            self.path, clipped, k * len(sound))
            self.stats = {"clipped": clipped}
