"""Which real sources train the encoders, which validate them, and which are held out (never trained on).

* **Voices** (speakers) are split whole: a held-out voice's speaker is never heard in training or validation, not
  even as babble.  slt is held out in both engines that have her (flite's clustergen voice and festival's HTS
  voice), and the only recorded human voice (alsa-utils) is held out too.
* **Sound effects** are split per *family* by a stable hash (``sound_split``): 1 in 5 held out, 1 in 5
  validation, the rest training.  A family is a set of files that are copies or variants of one sound (found by
  cross-correlating every installed sound: peak > 0.8; ``SOUND_FAMILIES``), so no held-out sound is trained on
  under another name.  Sounds serve as events and, in music backgrounds, as distractors of the same split.
* **Recordings** are seeded: recording ``i`` of a split has seed ``SEED_BASE[split] + i`` (``seed_of``); seeds
  draw texts, speeds, placement, backgrounds, SNRs and clocks.  The bases are far from the simulator's training
  seeds (``models/simdata.py``: 1e6, 9e6).
* **Speeds** differ per split, so held-out speech is also at speeds never trained on.
* **Calibration** (``calibration``): what the aligner's sigma is fitted on (``synchub.agent.align.calibration``),
  so that its coverage is judged on recordings it was not fitted on.  Its recordings have their own seeds
  (``SEED_BASE["calibration"]``) and draw the *validation* material (voice, speeds, sound families:
  ``MATERIAL_OF``), which no encoder is trained on; so they share no voice, sound or seed with training or with the
  held-out split the benchmark judges, and no speaker with the held-out split (kal is a training speaker under
  other engines, as for validation).

``DATA_CARD.md`` documents the same; ``tests/test_corpus.py`` checks that no two splits share a voice, a sound or
a seed.
"""

from __future__ import annotations

import zlib

from . import sources as S

SPLITS = ("train", "validation", "heldout", "calibration")
#: the split whose voices, speeds and sounds a split draws (its own, but for calibration)
MATERIAL_OF = {"calibration": "validation"}

VOICES: dict[str, tuple[str, ...]] = {
    "train": ("flite:kal16", "flite:awb", "flite:rms", "festival:kal_diphone"),
    "validation": ("flite:kal",),
    "heldout": ("flite:slt", "festival:cmu_us_slt_arctic_hts", "festival:ked_diphone", "recorded:alsa"),
}
SPEEDS: dict[str, tuple[float, ...]] = {
    "train": (0.8, 0.9, 1.0, 1.15, 1.3),
    "validation": (0.85, 1.1),
    "heldout": (0.95, 1.05, 1.2),
}
SEED_BASE = {"train": 20_000_000, "validation": 27_000_000, "heldout": 28_000_000, "calibration": 29_000_000}
SEEDS_PER_SPLIT = 1_000_000


def _check(split: str) -> str:
    """``split``'s material (``MATERIAL_OF``); a ValueError for an unknown split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; one of: {', '.join(SPLITS)}")
    return MATERIAL_OF.get(split, split)


def seed_of(split: str, i: int) -> int:
    _check(split)
    if not 0 <= int(i) < SEEDS_PER_SPLIT:
        raise ValueError(f"recording index {i} out of range 0..{SEEDS_PER_SPLIT - 1}")
    return SEED_BASE[split] + int(i)


def split_of_seed(seed: int) -> str:
    for s, base in SEED_BASE.items():
        if base <= seed < base + SEEDS_PER_SPLIT:
            return s
    raise ValueError(f"seed {seed} belongs to no split")


_FD, _OX, _SI = "sound-theme-freedesktop/", "oxygen-sounds/Oxygen-", "sound-icons/"
#: copies and variants of one sound under several names (cross-correlation peak > 0.8, or the same name stem)
SOUND_FAMILIES: tuple[tuple[str, ...], ...] = (
    (_FD + "camera-shutter.oga", _FD + "screen-capture.oga"),
    (_FD + "device-added.oga", _FD + "network-connectivity-established.oga", _FD + "power-plug.oga"),
    (_FD + "device-removed.oga", _FD + "network-connectivity-lost.oga", _FD + "power-unplug.oga"),
    (_FD + "dialog-error.oga", _FD + "dialog-warning.oga", _FD + "window-attention.oga", _FD + "window-question.oga"),
    (_FD + "message-new-instant.oga", _OX + "Im-Message-In.ogg", _OX + "Im-New-Mail.ogg"),
    (_OX + "Im-Highlight-Msg.ogg", _OX + "Im-Low-Priority-Message.ogg"),
    (_OX + "Sys-App-Error.ogg", _OX + "Sys-App-Error-Serious.ogg", _OX + "Sys-App-Error-Serious-Very.ogg",
     _OX + "Sys-App-Error-Critical.ogg"),
    (_OX + "Sys-List-Match-No.ogg", _OX + "Sys-Log-Out.ogg"),
    (_OX + "Sys-Log-In.ogg", _OX + "Sys-Log-In-Long.ogg", _OX + "Sys-Log-In-Short.ogg", _OX + "Sys-Log-Out-Long.ogg"),
    (_SI + "pisk-up.wav", _SI + "pisk-up-cink.wav"),
    (_SI + "pisk-down.wav", _SI + "pisk-down-cink.wav"),
)
_FAMILY_OF = {s: fam[0] for fam in SOUND_FAMILIES for s in fam}


def sound_split(sound_id: str) -> str:
    """The split of a sound effect (stable: crc32 of its family's first member, ``package/file``)."""
    h = zlib.crc32(_FAMILY_OF.get(sound_id, sound_id).encode()) % 5
    return "heldout" if h == 0 else "validation" if h == 1 else "train"


def voices(split: str, installed: bool = True) -> tuple[str, ...]:
    """The split's voices (only those installed here, by default)."""
    return tuple(v for v in VOICES[_check(split)] if not installed or not S.missing(v))


def sounds(split: str) -> tuple[str, ...]:
    """The split's sound effects installed here."""
    m = _check(split)
    return tuple(s for s in S.all_sounds() if sound_split(s) == m)


def speeds(split: str) -> tuple[float, ...]:
    return SPEEDS[_check(split)]
