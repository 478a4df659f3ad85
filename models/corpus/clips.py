"""Clean clips: one utterance from a TTS engine (flite, festival), one recorded phrase, or one recorded sound
effect, as 16 kHz float32 with its truth: the sample where the sound starts (``audio.sound_onset``) and, for
speech, the engine's segment (phone) and word end times.  Clips are cached on disk (``ClipCache``) keyed by
everything that makes them, the engine's Debian version included, so a changed engine never serves stale audio.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np

from . import sources as S
from .audio import RATE_HZ, read_sound, resample, sound_onset

CLIP_FORMAT = "3"  # bump when the rendering of a clip changes
MAX_SOUND_S = 3.0  # longer sound effects are cut (with a 50 ms fade) to this


@dataclass(frozen=True)
class Clip:
    source: str  # voice (engine:name) or sound (package/file)
    text: str  # what is said ("" for a sound effect)
    speed: float
    samples: np.ndarray  # float32 (n,) at RATE_HZ, peak-normalized to 0.5
    onset: int  # sample index where the sound starts
    seg_names: tuple[str, ...] = ()  # engine's segments (phones, "pau" = silence)
    seg_ends_s: tuple[float, ...] = ()  # their end times, seconds from the clip's first sample
    word_names: tuple[str, ...] = ()
    word_ends_s: tuple[float, ...] = ()

    @property
    def duration_s(self) -> float:
        return len(self.samples) / RATE_HZ


def default_cache_dir() -> pathlib.Path:
    env = os.environ.get("SYNCHUB_CORPUS_CACHE")
    if env:
        return pathlib.Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "synchub" / "corpus"


class ClipCache:
    """npz files under ``root`` (never pickle); ``root=None`` keeps nothing."""

    def __init__(self, root=None):
        self.root = pathlib.Path(root) if root is not None else None

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha1(json.dumps([CLIP_FORMAT, *parts]).encode()).hexdigest()[:20]

    def get(self, key: str) -> Clip | None:
        if self.root is None:
            return None
        p = self.root / key[:2] / f"{key}.npz"
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                return Clip(meta["source"], meta["text"], meta["speed"], z["samples"], int(meta["onset"]),
                            tuple(meta["seg_names"]), tuple(meta["seg_ends_s"]), tuple(meta["word_names"]),
                            tuple(meta["word_ends_s"]))
        except (OSError, ValueError, KeyError):
            return None  # a torn or foreign file: made again

    def put(self, key: str, c: Clip) -> None:
        if self.root is None:
            return
        d = self.root / key[:2]
        d.mkdir(parents=True, exist_ok=True)
        meta = {"source": c.source, "text": c.text, "speed": c.speed, "onset": c.onset,
                "seg_names": list(c.seg_names), "seg_ends_s": list(c.seg_ends_s),
                "word_names": list(c.word_names), "word_ends_s": list(c.word_ends_s)}
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".npz")
        os.close(fd)
        np.savez(tmp, samples=c.samples, meta=np.array(json.dumps(meta)))
        os.replace(tmp, d / f"{key}.npz")


def _finish(source: str, text: str, speed: float, x: np.ndarray, fs: int, segs=(), words=()) -> Clip:
    y = resample(x, fs, RATE_HZ)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0:
        y = (y * (0.5 / peak)).astype(np.float32)
    on = sound_onset(y, RATE_HZ)
    if on is None:
        raise S.Unavailable(f"{source}: silent output for {text!r}")
    return Clip(source, text, float(speed), y, on, tuple(n for n, _ in segs), tuple(float(e) for _, e in segs),
                tuple(n for n, _ in words), tuple(float(e) for _, e in words))


_SEG = re.compile(r"([a-z]+):([0-9.]+)")


def _flite(voice: str, text: str, speed: float, tmp: pathlib.Path) -> Clip:
    out = tmp / "u.wav"
    r = subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={1.0 / speed:.4f}", "-psdur",
                        "-t", text, "-o", str(out)], capture_output=True, text=True, check=False, timeout=60)
    if r.returncode != 0 or not out.is_file():
        raise S.Unavailable(f"flite -voice {voice} failed: {r.stderr.strip()[:200]}")
    segs = [(m.group(1), float(m.group(2))) for m in _SEG.finditer(r.stdout)]
    x, fs = read_sound(out)
    return _finish(f"flite:{voice}", text, speed, x, fs, segs)


def _scheme_str(s: str) -> str:
    return '"' + s.replace("\\", " ").replace('"', "'") + '"'


def _festival(voice: str, texts: list[str], speed: float, tmp: pathlib.Path) -> list[Clip]:
    """One festival process for all ``texts`` (its start-up costs ~0.3 s)."""
    _pkg, select, how = S.FESTIVAL_VOICES[voice]
    lines = [select]
    if how == "hts":
        lines.append(f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {speed:.4f}))))')
    else:
        lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / speed:.4f})")
    for i, t in enumerate(texts):
        wav = tmp / f"{i}.wav"
        lines += [f"(set! utt (SynthText {_scheme_str(t)}))",
                  f"(utt.save.wave utt {_scheme_str(str(wav))} 'riff)",
                  f'(mapcar (lambda (s) (format t "S {i} %s %f\\n" (item.name s) (item.feat s "end"))) '
                  f"(utt.relation.items utt 'Segment))",
                  f'(mapcar (lambda (s) (format t "W {i} %s %f\\n" (item.name s) (item.feat s "word_end"))) '
                  f"(utt.relation.items utt 'Word))"]
    script = tmp / "synth.scm"
    script.write_text("\n".join(lines) + "\n")
    r = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, check=False,
                       timeout=60 + 10 * len(texts))
    segs: dict[int, list] = {i: [] for i in range(len(texts))}
    words: dict[int, list] = {i: [] for i in range(len(texts))}
    for ln in r.stdout.splitlines():
        p = ln.split()
        if len(p) == 4 and p[0] in ("S", "W") and p[1].isdigit():
            (segs if p[0] == "S" else words)[int(p[1])].append((p[2], float(p[3])))
    out = []
    for i, t in enumerate(texts):
        wav = tmp / f"{i}.wav"
        if not wav.is_file():
            raise S.Unavailable(f"festival {voice} failed on {t!r}: {(r.stderr or r.stdout).strip()[-200:]}")
        x, fs = read_sound(wav)
        out.append(_finish(f"festival:{voice}", t, speed, x, fs, segs[i], words[i]))
    return out


def speech(voice: str, texts, speed: float = 1.0, cache: ClipCache | None = None) -> list[Clip]:
    """Clips of ``texts`` said by ``voice`` (``flite:NAME`` or ``festival:NAME``) at ``speed`` (1 = normal)."""
    cache = cache or ClipCache(None)
    texts = [str(t) for t in texts]
    S.require([voice])
    engine, name = voice.split(":", 1)
    version = S.package_version(S.package_of(voice)) or "?"
    keys = [ClipCache.key(voice, version, S.package_version(engine) or "?", round(speed, 4), t) for t in texts]
    got: list[Clip | None] = [cache.get(k) for k in keys]
    todo = [i for i, c in enumerate(got) if c is None]
    if todo:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="synchub-tts-"))
        try:
            if engine == "flite":
                made = [_flite(name, texts[i], speed, tmp) for i in todo]
            else:
                made = _festival(name, [texts[i] for i in todo], speed, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for i, c in zip(todo, made, strict=True):
            cache.put(keys[i], c)
            got[i] = c
    return [c for c in got if c is not None]


def recorded(voice: str, cache: ClipCache | None = None) -> list[Clip]:
    """The phrases of a recorded voice (``recorded:alsa``), each with its onset."""
    S.require([voice])
    name = voice.split(":", 1)[1]
    out = []
    for p in S.recorded_files(name):
        x, fs = read_sound(p)
        out.append(_finish(voice, S.recorded_text(p), 1.0, x, fs))
    return out


def sound(sound_id: str, cache: ClipCache | None = None) -> Clip:
    """A recorded sound effect (``package/file``), cut to ``MAX_SOUND_S``."""
    cache = cache or ClipCache(None)
    S.require([sound_id])
    key = ClipCache.key(sound_id, S.package_version(S.package_of(sound_id)) or "?")
    c = cache.get(key)
    if c is not None:
        return c
    x, fs = read_sound(S.sound_path(sound_id))
    n = int(MAX_SOUND_S * fs)
    if len(x) > n:
        fade = int(0.05 * fs)
        x = x[:n].copy()
        x[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    c = _finish(sound_id, "", 1.0, x, fs)
    cache.put(key, c)
    return c
