"""What a marker line means: which senses the event it logs reaches (``audible``, ``visible``, ``motion``), how
long after the line's stamp its onset comes (latency) and how precisely (spread).  Pure, no I/O.

A ``MarkerRule`` matches marker text with a regular expression (searched, case-insensitive, outside quoted and
parenthesized text: what was said or shown, a trial's conditions).  The first rule that matches a line decides; a line
no rule matches is left out of the alignment (a trial start, a lick, a reward: a log has many lines of things no
sensor sees).  Rules come from the stream's config (``[[stream]] markers``, the
same dictionaries ``rules_from`` reads) or ``DEFAULT_RULES``, which name common words of experiment and device logs
for sounds, light and movement.  A rig with its own vocabulary (the simulator's, a lab's) brings its own rules.

``SENSED_BY`` says which senses each stream modality sees with a sharp onset; a rule's ``streams`` overrides it
for that rule (an event only some of the rig's sensors register).  A ``smooth`` event (a slow movement) has no
sharp onset: only a still image's level sees it, at ``still_fraction`` of the duration the line logs
(``dur=<seconds>s``) plus ``still_lag_ms``.

A line that logs an end (``ENDS``: tone_off, "Sound tone stopped", stimulus end, key released) is the event's
offset, not its onset: only the rule's ``end_senses`` see it (default ``visible``: a light or an image going away is
as sharp a change as its coming; a sound's or a movement's end is no onset its detectors find).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from synchub.agent.core.units import NS
from synchub.models.features import marker_text

SENSES = ("audible", "visible", "motion")
#: the senses each stream modality registers with a sharp onset
SENSED_BY: dict[str, tuple[str, ...]] = {
    "audio": ("audible",),
    "imu": ("motion",),
    "video": ("visible", "motion"),
    "image": ("visible", "motion"),
    "telemetry": ("visible", "audible"),
    "text": SENSES,
}
_DURATION = re.compile(r"dur(?:ation)?=([0-9.]+)\s*s\b")
#: Words that log an event's end (words joined by underscores count: tone_off, LED_OFF); a "stop signal" starts one.
ENDS = re.compile(r"(\b|_)(off|offset|stop(s|ped)?(?![_ -]?sig)|end(s|ed)?|release[sd]?|finish(es|ed)?)(\b|_)",
                  re.IGNORECASE)
#: ... unless the line also names a start (STIM_ON word=stop; "on" as a start: tone_on, LED on, "on" last or before a
#: number or a bracket, not "stopped on trial 3"), or the word is quoted text (play "stop it") or a parameter's name
#: (end=1.5, offset_ms: 20).
STARTS = re.compile(r"(\b|_)(onset|start(s|ed)?|begins?|play(s|ed)?)(\b|_)|_on\b|\bon_|\bon\s*($|[\d(\[=:,;])",
                    re.IGNORECASE)
_QUOTED = re.compile(r"\"[^\"]*\"|(?<![A-Za-z0-9])'[^']*'(?![A-Za-z0-9])|\([^)]*\)")  # not it's
_KEY = re.compile(r"[\w.-]+\s*(=|:(?=\s))")  # a parameter's name: end=, offset_ms:


def _core(line: str, keys: bool = True) -> str:
    """The words of a line that name its event: outside quoted and parenthesized text, or, for a line that is one
    JSON object or list (LSL markers often are), its keys (with ``keys``) and its one-word string values (a value
    of several words is content: what was said or shown)."""
    text = line.strip()
    if text[:1] in "{[" and text[-1:] in "}]":
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, (dict, list)):
            words: list[str] = []
            todo = [doc]
            while todo:
                x = todo.pop()
                if isinstance(x, dict):
                    words += [str(k) for k in x] if keys else []
                    todo += list(x.values())
                elif isinstance(x, list):
                    todo += x
                elif isinstance(x, str) and len(x.split()) == 1:
                    words.append(x)
            return " ".join(words)
    core = _QUOTED.sub(" ", line)
    return core if keys else _KEY.sub(" ", core)


def logs_end(line: str) -> bool:
    """Whether a marker line logs an event's end (``ENDS``, outside quotes, parentheses and parameter names, and
    no start named)."""
    core = _core(line, keys=False)
    return ENDS.search(core) is not None and STARTS.search(core) is None


@dataclass(frozen=True)
class MarkerRule:
    """Marker lines matching ``pattern`` log an event that reaches ``senses``, with its onset ``latency_ms`` after
    the line's stamp (+- ``spread_ms``, one sigma)."""

    pattern: str
    senses: tuple[str, ...]
    latency_ms: float = 0.0
    spread_ms: float = 5.0
    streams: tuple[str, ...] = ()  # the stream modalities that see it (default: those sensing one of ``senses``)
    smooth: bool = False  # a slow rise: seen by a still image's level only
    still_fraction: float = 0.0  # where a still image sees it: this fraction of the logged duration ...
    still_lag_ms: float = 0.0  # ... plus this lag
    end_senses: tuple[str, ...] = ("visible",)  # the senses that see a line logging the event's end (``ENDS``)

    def __post_init__(self):
        bad = [s for s in (*self.senses, *self.end_senses) if s not in SENSES]
        if bad or not self.senses:
            raise ValueError(f"marker rule {self.pattern!r}: senses must be some of {', '.join(SENSES)}, got "
                             f"{list(self.senses)}")
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"marker rule {self.pattern!r}: not a regular expression ({exc})") from None
        odd = [s for s in self.streams if s not in STREAM_KINDS]
        if odd:
            raise ValueError(f"marker rule {self.pattern!r}: streams must be some of {', '.join(STREAM_KINDS)}, got "
                             f"{odd}")
        if not self.spread_ms >= 0 or not np.isfinite(self.latency_ms):
            raise ValueError(f"marker rule {self.pattern!r}: latency_ms must be finite and spread_ms >= 0")

    def seen_by(self, modality: str, end: bool = False) -> bool:
        """Whether a ``modality`` stream registers the event (``end``: a line logging its end)."""
        senses = [s for s in self.senses if s in self.end_senses] if end else self.senses
        if not senses:
            return False
        if self.streams:
            return modality in self.streams
        if self.smooth:
            return modality in ("image", "text")
        return any(s in SENSED_BY.get(modality, ()) for s in senses)


#: the stream kinds a rule may name as those that see its event (``streams``; "other": a file's channels of no
#: known kind, an amplifier's photodiode input)
STREAM_KINDS = (*(k for k in SENSED_BY if k != "text"), "other")


#: words of experiment and device logs for events a sensor registers; no rig's own vocabulary
DEFAULT_RULES: tuple[MarkerRule, ...] = (
    MarkerRule(r"\b(tap|hit|knock|bump|drop|collision|shock)\w*", ("audible", "motion")),
    MarkerRule(r"(\b|_)(sound|audio|tone|click|chirp|speech|speak|said|say|utter\w*|voice|play(s|ed)?|clap|buzz(er)?"
               r"|bells?|chimes?|ding|alarm|whistle|siren|horn|noise[_ ]?burst|white[_ ]?noise|auditory|acoustic)"
               r"(\b|_)|\bstim(ulus)?[_ ]?on\b|event=stimulus", ("audible",)),
    # words joined by underscores (LED_ON, screen_flip) count as words, as in the rule above
    MarkerRule(r"(\b|_)(leds?|lights?|flash(es|ed)?|lamps?|screens?|displays?|visual|photodiode|strobe|flicker)(\b|_)",
               ("visible",)),
    # PsychoPy: a visual stimulus drawn from the next flip on or no more ("<name>: autoDraw = True|False" in its log),
    # and the Builder's visual components by their default names ("image started" in its data file)
    MarkerRule(r"\bautoDraw\s*=\s*(True|False)\b|(\b|_)(image|picture|grating|gabor|polygon|movie)(\b|_)",
               ("visible",), end_senses=("visible",)),
)


def rules_from(items) -> tuple[MarkerRule, ...]:
    """Rules from config dictionaries ``{pattern, senses, latency_ms?, spread_ms?, streams?, smooth?,
    still_fraction?, still_lag_ms?, end_senses?}``; ``ValueError`` with one line naming the bad entry."""
    out = []
    known = set(MarkerRule.__dataclass_fields__)
    for i, d in enumerate(items):
        if isinstance(d, MarkerRule):
            out.append(d)
            continue
        if not isinstance(d, dict) or "pattern" not in d or "senses" not in d:
            raise ValueError(f"marker rule {i}: needs 'pattern' and 'senses'")
        extra = set(d) - known
        if extra:
            raise ValueError(f"marker rule {i}: unknown keys {sorted(extra)}; allowed: {sorted(known)}")
        senses = (d["senses"],) if isinstance(d["senses"], str) else tuple(d["senses"])
        streams = (d["streams"],) if isinstance(d.get("streams"), str) else tuple(d.get("streams", ()))
        ends = d.get("end_senses", ("visible",))
        ends = (ends,) if isinstance(ends, str) else tuple(ends)
        out.append(MarkerRule(**{**d, "senses": senses, "streams": streams, "end_senses": ends}))
    return tuple(out)


@dataclass
class MarkerEvents:
    """The events of some marker lines a partner modality can see: expected onset times (ns, sorted), the spread
    of each (ns), and a reason when there are none."""

    t_ns: np.ndarray
    spread_ns: np.ndarray
    problem: str = ""


class MarkerSemantics:
    """Marker lines -> the expected onsets a partner modality sees (see module doc)."""

    def __init__(self, rules=DEFAULT_RULES):
        self.rules = rules_from(rules)
        self._res = [re.compile(r.pattern, re.IGNORECASE) for r in self.rules]

    def rule_of(self, line: str) -> MarkerRule | None:
        """The first rule matching the line outside its quoted and parenthesized text (what was said or shown, a
        trial's conditions: play "it drops", New trial {'sound': 'a.wav'}; a JSON line: its keys and one-word
        values), or None."""
        core = _core(line)
        for r, rx in zip(self.rules, self._res, strict=True):
            if rx.search(core):
                return r
        return None

    def _sight(self, line: str, partner: str) -> tuple[MarkerRule | None, bool, bool]:
        """(the line's rule, whether ``partner`` registers what it logs, whether it logs the end of an event
        ``partner`` sees start but not end)."""
        r = self.rule_of(line)
        if r is None:
            return None, False, False
        end = logs_end(line)
        seen = r.seen_by(partner, end)
        return r, seen, end and not seen and r.seen_by(partner)

    def unseen_ends(self, lines, partner: str) -> np.ndarray:
        """True for the lines that log the end of an event ``partner`` sees start but not end (the neural path
        leaves them out too: its encoder learnt logs of starts)."""
        return np.array([self._sight(marker_text(s), partner)[2] for s in lines], dtype=bool)

    def events(self, t_ns, lines, partner: str | None = None) -> MarkerEvents:
        """Expected onsets of ``lines`` stamped ``t_ns`` as ``partner`` sees them (``None``/``text``: every line,
        at its stamp)."""
        t = np.asarray(t_ns, dtype=np.int64)
        lines = [marker_text(s) for s in lines]
        if partner in (None, "text", "marker"):
            return MarkerEvents(t.copy(), np.zeros(len(t)),
                                "" if len(t) else "no events (no marker lines in the window)")
        out_t, out_s = [], []
        n_rule = n_end = 0
        for ti, s in zip(t, lines, strict=True):
            r, seen, unseen_end = self._sight(s, partner)
            if r is None:
                continue
            n_rule += 1
            if not seen:
                n_end += unseen_end
                continue
            shift = r.latency_ms * 1e-3
            if partner == "image":
                m = _DURATION.search(s)
                shift += (r.still_fraction * float(m.group(1)) if m else 0.0) + r.still_lag_ms * 1e-3
            out_t.append(int(ti) + int(round(shift * NS)))
            out_s.append(r.spread_ms * 1e6)
        order = np.argsort(np.asarray(out_t, dtype=np.int64), kind="stable")
        ev = MarkerEvents(np.asarray(out_t, dtype=np.int64)[order], np.asarray(out_s, dtype=np.float64)[order])
        if not len(ev.t_ns):
            senses = "/".join(SENSED_BY.get(partner, ())) or "no"
            if not len(lines):
                ev.problem = "no events (no marker lines in the window)"
            elif n_rule == 0:
                ev.problem = (f"no events: none of the {len(lines)} marker lines matches a marker rule (say what "
                              f"they mean: the stream's markers in the agent's config, --marker SENSES:REGEX in "
                              f"synchub align; e.g. {lines[0][:40]!r})")
            else:
                ends = f" ({n_end} log an end, which {partner} does not see)" if n_end else ""
                ev.problem = (f"no events {partner} can see: {n_rule} of {len(lines)} marker lines match a rule, "
                              f"none for {senses} events{ends}")
        return ev
