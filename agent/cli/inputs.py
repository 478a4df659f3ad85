"""The inputs of ``synchub align`` and ``synchub inspect`` for recordings synchub did not make: files (XDF,
WAV/FLAC, CSV/TSV, MCAP) with per-file options given as flags (they apply to every input) or a TOML manifest (per
file); turned into the engine's ``InputSpec``s.  Whether a command line names only synchub's own recording (the
rerun that keeps its layout) is decided here too."""

from __future__ import annotations

import argparse
from pathlib import Path

from synchub.agent.align.files.reference import AlignError, InputSpec
from synchub.agent.align.markers import rules_from
from synchub.agent.core.stream import MODALITIES
from synchub.agent.formats.readers.base import (
    ALIGN_MODES,
    FORMATS,
    SYNC_KINDS,
    TIME_UNITS,
    InputError,
    InputOptions,
)
from synchub.agent.formats.readers.manifest import Manifest, load_manifest
from synchub.agent.formats.readers.mcap_json import is_synchub_mcap
from synchub.argtypes import bit_index, finite, nonnegative, positive
from synchub.errors import UserError

#: flag -> (InputOptions field, argparse type or choices, help)
OPTION_FLAGS: dict[str, tuple[str, object, str]] = {
    "--format": ("format", tuple(FORMATS), "read the inputs as this format (default: by extension)"),
    "--name": ("name", str, "stream name of a single-stream input (default: the file's stem)"),
    "--time-col": ("time_col", str, "CSV/TSV: the time column, in seconds or the unit its name ends with (time_ms; "
                                    "default: time/timestamp/t/onset); MCAP of JSON channels: a time field (e.g. "
                                    "header.stamp; default: log_time)"),
    "--time-unit": ("time_unit", tuple(u for u in TIME_UNITS if u), "CSV/TSV: the time column's unit where its name "
                                                                   "does not end with it (ms: an Arduino's millis() "
                                                                   "in a column named time)"),
    "--delimiter": ("delimiter", str, "CSV/TSV: the delimiter (default: detected)"),
    "--rate-hz": ("rate_hz", nonnegative, "CSV/TSV: the numeric stream's nominal rate (0: irregular)"),
    "--type": ("type", tuple(m for m in MODALITIES if m != "fused"), "CSV/TSV, MCAP of JSON: the numeric stream's type"),
    "--sync": ("sync", str, "the channel carrying sync pulses (label or 0-based index; stream:channel)"),
    "--sync-kind": ("sync_kind", SYNC_KINDS, "how to find the pulses in the sync channel"),
    "--sync-min-width-s": ("sync_min_width_s", positive, "shortest sync pulse (s)"),
    "--sync-max-width-s": ("sync_max_width_s", positive, "longest sync pulse (s)"),
    "--sync-threshold": ("sync_threshold", finite, "a fixed level for the sync channel instead of the automatic one"),
    "--sync-bit": ("sync_bit", bit_index, "the pulses are this bit of the sync channel's integer values (a "
                                                "digital word; SpikeGLX's declared sync line is found by itself)"),
    "--offset-s": ("offset_s", finite, "a guess of the reference's clock minus this input's (s)"),
    "--align": ("align", ALIGN_MODES, "how an input is tied to the reference (auto: sync edges, else the aligner)"),
}


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """The per-file option flags and ``--manifest``/``--session`` (shared by align and inspect)."""
    g = p.add_argument_group("inputs synchub did not make (options apply to every input; a manifest sets them per "
                             "file)")
    g.add_argument("--manifest", metavar="TOML", help="a TOML manifest naming the inputs and their options")
    g.add_argument("--session", action="store_true", help="the MCAP inputs are the parts of one session")
    for flag, (field, kind, help_text) in OPTION_FLAGS.items():
        if isinstance(kind, tuple):
            g.add_argument(flag, dest=field, choices=kind, default=None, help=help_text)
        else:
            g.add_argument(flag, dest=field, type=kind, default=None, metavar=field.split("_")[-1].upper(),
                           help=help_text)
    g.add_argument("--marker", dest="markers", action="append", type=marker_rule, default=None,
                   metavar="SENSES[~][>STREAMS][@MS[/MS]]:REGEX",
                   help="what a marker log's lines matching REGEX mean: the senses their event reaches (audible, "
                        "visible, motion; joined by +; ~ after them: a slow rise, seen by a still image's level "
                        "only), the stream kinds that see it if not those of the senses (>audio+imu; audio, imu, "
                        "video, image, telemetry, other), its onset's latency after the line and spread (ms); "
                        "repeat for more kinds of line; first match decides; replaces the default words (sound, "
                        "tone, click, LED, flash, tap, ...). E.g. --marker audible:cue --marker visible@16:flip "
                        "--marker visible~>image:fade")
    g.add_argument("--barcode", action="store_true", default=None, help="decode 32-bit barcodes in the sync channel")
    g.add_argument("--no-dejitter", dest="dejitter", action="store_false", default=None,
                   help="keep a regular stream's stamps as they are (default: a line per segment, as pyxdf)")


def marker_rule(text: str) -> dict:
    """``SENSES[~][>STREAMS][@LATENCY_MS[/SPREAD_MS]]:REGEX`` -> a marker rule's dictionary
    (``align.markers.rules_from``): ``~`` a slow rise (``smooth``), ``>STREAMS`` the stream kinds that see it."""
    head, sep, pattern = text.partition(":")
    who, _, timing = head.partition("@")
    senses, _, streams = who.partition(">")
    senses = senses.strip()
    latency, _, spread = timing.partition("/")
    rule: dict = {"pattern": pattern, "senses": tuple(s.strip() for s in senses.rstrip("~").split("+"))}
    if senses.endswith("~"):
        rule["smooth"] = True
    if streams:
        rule["streams"] = tuple(s.strip() for s in streams.split("+"))
    try:
        if latency:
            rule["latency_ms"] = float(latency)
        if spread:
            rule["spread_ms"] = float(spread)
        if not sep or not pattern:
            raise ValueError("no ':REGEX'")
        rules_from([rule])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc} (SENSES[~][>STREAMS][@LATENCY_MS[/SPREAD_MS]]:REGEX, e.g. "
                                         "audible:cue, visible+motion@16/4:flip or visible~>image:fade)") from None
    return rule


def option_values(args) -> dict:
    """The per-file options given on the command line (only those given)."""
    fields = [f for f, _, _ in OPTION_FLAGS.values()] + ["barcode", "dejitter", "markers"]
    return {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}


def mcap_only(args, files: list[str]) -> bool:
    """Only synchub's ``.mcap`` files, with no per-file option, manifest or ``--session``: its own recording, read
    whole (``mcap_read.read_session``), as ``synchub inspect`` and ``synchub align`` always did."""
    return (bool(files) and not args.manifest and not args.session and not option_values(args)
            and all(f.lower().endswith(".mcap") and is_synchub_mcap(f) for f in files))


def own_recording(args, files: list[str]) -> bool:
    """``mcap_only`` and nothing asked that only the file engine does (a reference, a plot, an XDF output): the
    rerun of the recording, which keeps its layout and can run causally (``--live``)."""
    out = args.out
    return (mcap_only(args, files) and not args.ref and not args.plot
            and (out is None or out.lower().endswith(".mcap")))


def specs_of(args, files: list[str]) -> tuple[list[InputSpec], Manifest | None]:
    """The engine's inputs from the command line (or its manifest); one-line ``UserError`` for bad ones."""
    try:
        if args.manifest:
            if files:
                raise UserError("give the inputs as files or in --manifest, not both")
            if option_values(args):
                raise UserError("per-file options go in the manifest's [[input]] entries, not on the command line")
            m = load_manifest(args.manifest)
            return [InputSpec(paths, opts) for paths, opts in m.inputs], m
        if not files:
            raise UserError("no inputs (give files or --manifest)")
        opts = InputOptions(**option_values(args))
        if args.session:
            return [InputSpec(list(files), opts)], None
        return [InputSpec([f], opts) for f in files], None
    except (InputError, AlignError, ValueError) as exc:
        raise UserError(str(exc)) from None


def check_distinct(output: str | None, inputs: list[InputSpec]) -> None:
    """An output that would overwrite an input is refused before anything is read."""
    if not output:
        return
    o = Path(output).resolve()
    for spec in inputs:
        for p in spec.paths:
            if Path(p).resolve() == o:
                raise UserError(f"{output}: is also an input; choose another output")
