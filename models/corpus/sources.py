"""Where the corpus's real signals come from: Debian packages installed on this machine.  Nothing is downloaded.

A *voice* is ``engine:name``: ``flite:<voice>`` (the voices built into Debian's ``flite``), ``festival:<voice>``
(a festvox package), or ``recorded:alsa`` (the human voice of the ``alsa-utils`` speaker-test WAVs).  A *sound* is
``package/file`` of a recorded sound effect.  ``missing(...)`` names the Debian package that would provide
something absent; the corpus and its tests use it to skip with a reason.  ``DATA_CARD.md`` lists the licences.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib
import shutil
import subprocess

#: flite's built-in voices (awb_time only says times of day: left out).
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
#: festival voice -> (its Debian package, the scheme call that selects it, how speed is set)
FESTIVAL_VOICES = {
    "kal_diphone": ("festvox-kallpc16k", "(voice_kal_diphone)", "stretch"),
    "ked_diphone": ("festvox-kdlpc16k", "(voice_ked_diphone)", "stretch"),
    "cmu_us_slt_arctic_hts": ("festvox-us-slt-hts", "(voice_cmu_us_slt_arctic_hts)", "hts"),
}
#: recorded human speech: the eight speaker-test phrases of alsa-utils ("Front left", ...; Noise.wav left out).
RECORDED = {"alsa": ("alsa-utils", "/usr/share/sounds/alsa", "*_*.wav")}
#: recorded sound effects: package -> (folder, glob)
SOUND_DIRS = {
    "sound-theme-freedesktop": ("/usr/share/sounds/freedesktop/stereo", "*.oga"),
    "oxygen-sounds": ("/usr/share/sounds", "Oxygen-*.ogg"),
    "sound-icons": ("/usr/share/sounds/sound-icons", "*.wav"),
}
#: sounds that are not sound effects: the ALSA developers' channel announcements (the recorded:alsa speaker,
#: which is held out) and a noise test signal.
NOT_EVENTS = ("sound-theme-freedesktop/audio-channel-", "sound-theme-freedesktop/audio-test-signal")
ENGINE_PACKAGES = {"flite": "flite", "festival": "festival"}
FESTIVAL_LEXICONS = ("festlex-cmu", "festlex-poslex")
#: every Debian package the corpus can use (the Makefile installs them for ``make test`` when root)
DEBIAN_PACKAGES = ("flite", "festival", *FESTIVAL_LEXICONS, *(v[0] for v in FESTIVAL_VOICES.values()),
                   "alsa-utils", *SOUND_DIRS)


class Unavailable(RuntimeError):
    """A voice, sound or engine that is not installed here; the message names the Debian package."""


@functools.cache
def package_version(pkg: str) -> str | None:
    """Installed version of a Debian package, or None."""
    if shutil.which("dpkg-query") is None:
        return None
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version} ${db:Status-Status}", pkg], capture_output=True,
                       text=True, check=False)
    parts = r.stdout.split()
    return parts[0] if r.returncode == 0 and len(parts) == 2 and parts[1] == "installed" else None


def package_of(item: str) -> str:
    """The Debian package that provides a voice (``engine:name``) or a sound (``package/file``)."""
    if ":" in item:
        engine, name = item.split(":", 1)
        if engine == "flite":
            return "flite"
        if engine == "festival":
            return FESTIVAL_VOICES[name][0] if name in FESTIVAL_VOICES else "festival"
        if engine == "recorded":
            return RECORDED[name][0] if name in RECORDED else "?"
        raise KeyError(f"unknown engine in {item!r}")
    return item.split("/", 1)[0]


@functools.cache
def flite_voices() -> tuple[str, ...]:
    exe = shutil.which("flite")
    if exe is None:
        return ()
    r = subprocess.run([exe, "-lv"], capture_output=True, text=True, check=False)
    listed = r.stdout.split(":", 1)[-1].split()
    return tuple(v for v in FLITE_VOICES if v in listed)


def missing(item: str) -> str:
    """Why ``item`` (a voice or a sound) cannot be used here, or "" when it can."""
    pkg = package_of(item)
    if ":" in item:
        engine, name = item.split(":", 1)
        if engine == "flite":
            if shutil.which("flite") is None:
                return "flite is not installed (apt-get install flite)"
            return "" if name in flite_voices() else f"flite has no voice {name!r}"
        if engine == "festival":
            if shutil.which("festival") is None:
                return "festival is not installed (apt-get install festival)"
            if name not in FESTIVAL_VOICES:
                return f"unknown festival voice {name!r}"
            lex = [p for p in FESTIVAL_LEXICONS if package_version(p) is None]
            if package_version(pkg) is None or lex:
                return f"festival voice {name} needs {' '.join([pkg, *lex])} (apt-get install)"
            return ""
        if engine == "recorded":
            return "" if recorded_files(name) else f"no recorded speech {name!r} ({pkg} not installed)"
        return f"unknown engine {engine!r}"
    path = sound_path(item)
    if path is None:
        return f"sound {item} not found ({pkg} not installed)"
    if path.suffix.lower() != ".wav" and importlib.util.find_spec("soundfile") is None:
        return "reading Ogg sounds needs soundfile (pip install 'synchub[bench]')"
    return ""


def require(items) -> None:
    why = [m for m in (missing(i) for i in items) if m]
    if why:
        raise Unavailable("; ".join(dict.fromkeys(why)))


def recorded_files(name: str) -> tuple[pathlib.Path, ...]:
    if name not in RECORDED:
        return ()
    _pkg, folder, pattern = RECORDED[name]
    return tuple(sorted(pathlib.Path(folder).glob(pattern)))


def recorded_text(path: pathlib.Path) -> str:
    """The phrase a recorded file says, from its name (``Front_Left.wav`` -> ``front left``)."""
    return path.stem.replace("_", " ").replace("-", " ").lower()


@functools.cache
def all_sounds() -> tuple[str, ...]:
    """Every sound effect installed here, as ``package/file``, sorted."""
    out = []
    for pkg, (folder, pattern) in SOUND_DIRS.items():
        for p in sorted(pathlib.Path(folder).glob(pattern)):
            sid = f"{pkg}/{p.name}"
            if not any(sid.startswith(n) for n in NOT_EVENTS):
                out.append(sid)
    return tuple(out)


def sound_path(sound: str) -> pathlib.Path | None:
    pkg, _, name = sound.partition("/")
    if pkg not in SOUND_DIRS or not name:
        return None
    p = pathlib.Path(SOUND_DIRS[pkg][0]) / name
    return p if p.is_file() else None


def versions(items) -> dict[str, str]:
    """``{package: version}`` of the packages behind ``items`` (and the engines they run on)."""
    pkgs = set()
    for i in items:
        pkgs.add(package_of(i))
        if i.startswith("festival:"):
            pkgs.update(("festival", *FESTIVAL_LEXICONS))
    return {p: package_version(p) or "not installed" for p in sorted(pkgs)}
