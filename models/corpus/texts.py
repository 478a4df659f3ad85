"""What the corpus says and logs: utterance texts (single words, commands, sentences, as a behaviour experiment
plays them) and the marker lines a rig writes (several styles, with lines of things that make no sound: trial
starts, licks, rewards).  Deterministic from a ``numpy`` Generator.  No simulator vocabulary: nothing here says
"impact" or "beep"."""

from __future__ import annotations

import numpy as np

WORDS = (
    "left right up down go stop wait yes no red green blue yellow white black one two three four five six seven "
    "eight nine ten house tree water apple river window paper garden music candle bottle pencil table chair "
    "doctor teacher mother father sister brother morning evening winter summer circle square button light "
    "sound picture number letter answer question kitchen station market forest mountain island ocean bridge"
).split()
ADJECTIVES = "small large old new quiet loud bright dark warm cold quick slow soft heavy empty full".split()
VERBS = "opens closes finds takes moves holds brings paints reads lifts drops counts".split()
NAMES = "Anna Ben Clara David Emma Felix Grace Henry Iris Jonas Kate Leo".split()
COMMANDS = ("press the {c} button", "look at the {n}", "touch the {a} {n}", "turn {d}", "find the {n}",
            "say {w} again", "count to {k}", "point {d} now")
COLOURS = ("red", "green", "blue", "yellow")
DIRECTIONS = ("left", "right", "up", "down")
NUMBERS = ("three", "four", "five", "six", "seven", "ten")


def utterance(rng: np.random.Generator) -> str:
    """One stimulus: a word (30 %), a command (30 %) or a sentence (40 %)."""
    u = rng.uniform()
    if u < 0.3:
        return str(rng.choice(WORDS))
    if u < 0.6:
        t = str(rng.choice(COMMANDS))
        return t.format(c=rng.choice(COLOURS), n=rng.choice(WORDS), a=rng.choice(ADJECTIVES),
                        d=rng.choice(DIRECTIONS), w=rng.choice(WORDS), k=rng.choice(NUMBERS))
    if rng.uniform() < 0.5:
        return (f"The {rng.choice(ADJECTIVES)} {rng.choice(WORDS)} {rng.choice(VERBS)} "
                f"the {rng.choice(WORDS)}.")
    return f"{rng.choice(NAMES)} {rng.choice(VERBS)} {rng.choice(NUMBERS)} {rng.choice(WORDS)}s."


#: marker line styles for sounds: ``{n}`` trial, ``{text}`` what is said (or the sound's name), ``{w}`` its first
#: word, ``{id}`` a stimulus id
SOUND_STYLES = (
    "TRIAL {n} STIM_ON word={w}",
    "{n:04d} speech onset '{text}'",
    "stim {n}: play \"{text}\"",
    "EVENT sound_start id={id}",
    "cue {n} audio on ({w})",
    "trial={n} event=stimulus stim={id} text=\"{text}\"",
)
#: lines of the same rig that make no sound
SILENT_STYLES = (
    ("TRIAL {n} start", "TRIAL {n} end", "lick left", "lick right", "reward 4 ul", "iti {iti:.1f} s"),
    ("{n:04d} trial start", "{n:04d} response key=space", "{n:04d} fixation on", "{n:04d} trial end"),
    ("stim {n}: wait", "stim {n}: response {d}", "session note: ok"),
    ("EVENT trial_start", "EVENT response", "EVENT reward_valve open", "EVENT camera_sync"),
    ("cue {n} visual on", "cue {n} lever press", "cue {n} timeout"),
    ("trial={n} event=start", "trial={n} event=choice side={d}", "trial={n} event=reward"),
)


def marker_line(style: int, n: int, text: str, stim_id: str) -> str:
    w = text.split()[0].strip(".,").lower() if text.split() else stim_id
    return SOUND_STYLES[style % len(SOUND_STYLES)].format(n=n, text=text, w=w, id=stim_id)


def silent_line(style: int, n: int, rng: np.random.Generator) -> str:
    opts = SILENT_STYLES[style % len(SILENT_STYLES)]
    return str(rng.choice(opts)).format(n=n, iti=float(rng.uniform(1, 4)), d=rng.choice(DIRECTIONS))


def sound_name(sound_id: str) -> str:
    """A short name for a sound effect's marker (``sound-icons/glass-water-1.wav`` -> ``glass_water_1``)."""
    stem = sound_id.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return stem.lower().replace("oxygen-", "").replace("-", "_")
