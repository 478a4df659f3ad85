"""Marker semantics: which marker lines a sensor sees, when, and why a window without any is abstained on."""

import pathlib
import re

import numpy as np
import pytest

from synchub.agent.align import markers as M
from synchub.agent.align.aligner import AlignerSettings
from synchub.agent.align.window import WindowAligner
from synchub.agent.core.stream import StreamInfo
from synchub.agent.core.units import NS
from synchub.drivers.sim.world import MARKER_RULES
from synchub.models.corpus import texts as TX
from synchub.models.features import marker_text

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_default_rules_hear_every_sound_style_of_the_corpus_and_none_of_its_silent_lines():
    sem = M.MarkerSemantics()
    rng = np.random.default_rng(0)
    for style in range(len(TX.SOUND_STYLES)):
        for n in range(5):
            line = TX.marker_line(style, n, TX.utterance(rng), "sound-icons/bell.wav")
            assert sem.rule_of(line) is not None and sem.rule_of(line).seen_by("audio"), line
    for style in range(len(TX.SILENT_STYLES)):
        for n in range(20):
            line = TX.silent_line(style, n, rng)
            r = sem.rule_of(line)
            assert r is None or not r.seen_by("audio"), line


@pytest.mark.parametrize("line,senses", [
    ("LED_ON", ("visible",)), ("photodiode_on 3", ("visible",)), ("screen_flip", ("visible",)),
    ("lights off", ("visible",)), ("Tone_Start", ("audible",)), ("buzzer 2", ("audible",)),
    ("cue=white_noise", ("audible",)), ("REWARD_BELL", ("audible",)), ("tap_left", ("audible", "motion")),
    ("ledger closed", None), ("horner task", None), ("TRIAL 3 start", None), ("fixation on", None),
])
def test_default_rules_read_words_joined_by_underscores_and_common_stimulus_words(line, senses):
    """Before 2026-11-28 the visible rule wanted a word boundary, which an underscore is not: LED_ON, photodiode_on
    and screen_flip were left out of every alignment with a camera (the audible rule already took Tone_Start)."""
    r = M.MarkerSemantics().rule_of(line)
    assert (r.senses if r is not None else None) == senses, line


@pytest.mark.parametrize("line,end", [
    ("tone_off", True), ("Sound tone stopped", True), ("LED_OFF", True), ("stimulus offset", True),
    ("cue 3 audio off", True), ("beep_stop", True), ("audio_end", True), ("key released", True),
    ("Sound tone started", False), ("tone_on", False), ("stop_signal tone", False), ("stop signal beep", False),
    ("STIM_ON word=stop", False), ('stim 7: play "turn it off"', False), ("cue 94 audio on (stop)", False),
    ("EVENT sound_start id=x", False), ('{"event": "tone_off", "trial": 3}', True), ('{"led": "on"}', False),
    # found by a review: parameter names are no ends, "on" as a preposition no start
    ("sound freq=440 end=1.5", False), ('{"event": "tone", "offset_ms": 20}', False), ("LED state: off", True),
    ("Sound tone stopped on trial 3", True), ("tone off on channel 2", True), ("LED off on pin 13", True),
])
def test_lines_that_log_an_end_are_told_from_starts(line, end):
    assert M.logs_end(line) is end


def test_an_end_is_seen_as_a_change_by_a_camera_but_no_onset_by_a_microphone():
    """"tone_off" used to count as another tone onset: a tone log with its ends was refused ("nothing to align
    on"), a PsychoPy "Sound tone stopped" line doubled the sigma.  A rule's end_senses say who sees an end."""
    sem = M.MarkerSemantics()
    t = np.arange(6, dtype=np.int64) * NS
    lines = ["tone_on", "tone_off", "LED_ON", "LED_OFF", "Sound s1 started", "Sound s1 stopped"]
    assert list(sem.events(t, lines, "audio").t_ns) == [0, 4 * NS]
    assert list(sem.events(t, lines, "video").t_ns) == [2 * NS, 3 * NS]
    assert list(sem.unseen_ends(lines, "audio")) == [False, True, False, False, False, True]
    assert not sem.unseen_ends(lines, "video").any()
    why = sem.events(t[:2], ["tone_off", "buzzer stopped"], "audio").problem
    assert "2 log an end, which audio does not see" in why
    mine = M.MarkerSemantics(M.rules_from([{"pattern": "valve", "senses": "audible", "end_senses": "audible"}]))
    assert list(mine.events(t[:2], ["valve open", "valve closed off"], "audio").t_ns) == [0, NS]


@pytest.mark.parametrize("line,senses", [
    ("New trial (rep=0, index=3): {'sound_file': 'a.wav', 'light': 1}", None),
    ('stim 56: play "The warm stop drops the island."', ("audible",)),
    ("0085 speech onset 'The quick blue drops the four.'", ("audible",)),
    ("text: text = 'Press the light key'", None), ("cue 4 audio on (drop)", ("audible",)),
    ("the subject's tone_on, it's loud", ("audible",)),  # an apostrophe opens no quote
    ('{"event": "tone_on", "trial": 3}', ("audible",)), ('["LED", "on"]', ("visible",)),  # JSON: keys and values
    ('{"event": "speech", "text": "the ball drops"}', ("audible",)),  # ... but a value of several words is content
])
def test_quoted_and_bracketed_text_is_content_not_the_event_s_kind(line, senses):
    """What was said or shown and a trial's conditions do not name the event: before 2026-11-28 a PsychoPy "New
    trial" line listing a sound file was a sound onset 0.5 s early (a PsychoPy log with its sounds was refused),
    and an utterance with "drops" in it was a knock an IMU should feel (1.7 % of the corpus's marker lines)."""
    r = M.MarkerSemantics().rule_of(line)
    assert (r.senses if r is not None else None) == senses, line


def test_no_line_of_the_corpus_or_the_simulator_reads_as_an_end():
    rng = np.random.default_rng(5)
    lines = [TX.marker_line(k % len(TX.SOUND_STYLES), k, TX.utterance(rng), "sound-icons/bell.wav")
             for k in range(3000)]
    lines += ["impact detected amp=0.40", "beep 880Hz dur=0.120s", "led on dur=0.050s", "motion start axis=y dur=1.20s"]
    assert not any(M.logs_end(x) for x in lines)


def test_first_matching_rule_decides_latency_spread_and_who_sees_it():
    sem = M.MarkerSemantics(M.rules_from([
        {"pattern": r"valve open", "senses": "audible", "latency_ms": 12.0, "spread_ms": 3.0},
        {"pattern": r"cue \d+ visual", "senses": ["visible"], "latency_ms": 16.7},
        {"pattern": r"lever", "senses": ["motion"], "streams": ["imu"]},
    ]))
    t = np.array([1, 2, 3, 4], dtype=np.int64) * NS
    lines = ["EVENT reward_valve open", "cue 7 visual on", "cue 7 lever press", "iti 2.0 s"]
    ev = sem.events(t, lines, "audio")
    assert list(ev.t_ns) == [1 * NS + 12_000_000] and list(ev.spread_ns) == [3e6]
    assert list(sem.events(t, lines, "video").t_ns) == [2 * NS + 16_700_000]
    assert list(sem.events(t, lines, "imu").t_ns) == [3 * NS]  # streams= overrides the senses
    assert list(sem.events(t, lines, "text").t_ns) == list(t)  # marker against marker: every line


def test_abstain_reasons_say_what_was_missing():
    sem = M.MarkerSemantics()
    t = np.arange(3, dtype=np.int64) * NS
    assert "no marker lines" in sem.events(t[:0], [], "audio").problem
    nothing = sem.events(t, ["TRIAL 1 start", "lick left", "TRIAL 1 end"], "audio").problem
    assert "none of the 3 marker lines matches a marker rule" in nothing
    unseen = sem.events(t, ["cue 1 visual on", "lick", "cue 2 visual on"], "audio").problem
    assert "2 of 3 marker lines match a rule, none for audible events" in unseen
    # and the aligner abstains with that reason, not with "no log lines"
    wa = WindowAligner(StreamInfo("mic", "audio", 16000.0, 1), StreamInfo("log", "marker", 0.0, 1, "string"))
    mic_t = np.arange(0, 4 * NS, NS // 16000, dtype=np.int64)
    mic = np.random.default_rng(1).normal(0, 0.01, (len(mic_t), 1)).astype(np.float32)
    r = wa.estimate(mic_t, mic, t, ["TRIAL 1 start", "lick left", "TRIAL 1 end"], (0, 3 * NS), 0,
                    methods=("classical",))["classical"]
    assert not r.ok and "matches a marker rule" in r.reason


@pytest.mark.parametrize("bad,msg", [
    ({"pattern": "x", "senses": "audible", "end_senses": "smell"}, "senses must be some of"),
    ({"pattern": "x"}, "needs 'pattern' and 'senses'"),
    ({"pattern": "x", "senses": ["smell"]}, "senses must be some of"),
    ({"pattern": "(", "senses": ["audible"]}, "not a regular expression"),
    ({"pattern": "x", "senses": ["audible"], "latency": 3}, "unknown keys"),
    ({"pattern": "x", "senses": ["audible"], "spread_ms": -1}, "spread_ms >= 0"),
])
def test_bad_rules_are_one_line_errors(bad, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        M.rules_from([bad])


def test_the_simulator_brings_its_own_vocabulary_and_the_agent_names_none_of_it():
    assert AlignerSettings(markers=M.rules_from(MARKER_RULES)).markers[0].pattern.startswith("^impact")
    for path in (ROOT / "agent").rglob("*.py"):
        text = path.read_text().lower()
        assert not re.search(r"\b(impact|beep)\b", text), path


def test_a_config_brings_marker_rules_and_a_bad_one_is_a_one_line_error(tmp_path):
    from synchub.agent.config.loader import load_config
    from synchub.agent.core.settings import ConfigError

    base = ('[agent]\nname = "a"\n[sim]\nseed = 1\n'
            '[[stream]]\nname = "mic0"\ntype = "audio"\ndriver = "sim"\ndevice = "mic0"\n'
            '[[stream]]\nname = "log0"\ntype = "marker"\ndriver = "sim"\ndevice = "log0"\nalign_to = "mic0"\n')
    good = tmp_path / "good.toml"
    good.write_text(base + '[[stream.markers]]\npattern = "valve"\nsenses = ["audible"]\nlatency_ms = 12.0\n')
    cfg = load_config(good)
    rules = M.rules_from(cfg.streams[1].common.markers)
    assert rules[0].pattern == "valve" and rules[0].latency_ms == 12.0
    bad = tmp_path / "bad.toml"
    bad.write_text(base + '[[stream.markers]]\npattern = "valve"\nsenses = ["smell"]\n')
    with pytest.raises(ConfigError, match=r"stream\[1\]\.markers: marker rule 'valve': senses must be"):
        load_config(bad)


@pytest.mark.parametrize("sample, line", [([1.0], "1"), (np.array([12.0]), "12"), (np.array([2.5, 1.0]), "2.5 1"),
                                          (np.int32(7), "7"), (b"tone", "tone"), (None, ""), ("tone 1", "tone 1"),
                                          (np.array([np.nan]), "nan")])
def test_a_numeric_marker_sample_is_the_code_it_logs(sample, line):
    """An LSL marker stream of int or float codes, a table's code column read as markers: the rules saw '[1.]'."""
    assert marker_text(sample) == line
    rules = M.MarkerSemantics([{"pattern": "^12$", "senses": "audible"}])
    assert len(rules.events([0], [np.array([12.0])], "audio").t_ns) == 1


@pytest.mark.parametrize("line, seen", [
    ("text: autoDraw = True", "video"), ("fixation: autoDraw = False", "video"), ("image started", "video"),
    ("polygon_2 stopped", "video"), ("Sound sound_1 started", "audio"), ("key_resp started", None),
    ("imageFile=x.png", None)])
def test_psychopy_s_visual_stimuli_are_seen_by_a_camera_by_default(line, seen):
    """PsychoPy logs a visual stimulus as '<name>: autoDraw = True' (drawn from the next flip on) and '... = False'
    (gone), and its data file as '<component> started' under the Builder's default names (image, polygon, ...): no
    default rule matched them, so a camera filming the screen could not be tied to a PsychoPy log without rules."""
    m = M.MarkerSemantics()
    got = {p for p in ("audio", "video", "imu") if len(m.events([0], [line], p).t_ns)}
    assert got == ({seen} if seen else set())
