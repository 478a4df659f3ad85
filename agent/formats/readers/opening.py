"""``open_input``: the reader of an input file, by its ``--format`` or its extension, opened and checked (an MCAP
file: synchub's own, or one of JSON channels written by other tools)."""

from __future__ import annotations

from .audio_read import AudioInput
from .base import InputOptions, check_readable, format_of
from .brainvision import BrainVisionInput
from .edf_read import EdfInput
from .mcap_json import JsonMcapInput, is_synchub_mcap
from .mcap_parts import McapInput
from .media import MediaInput
from .openephys import OpenEphysInput
from .psychopy_log import PsychopyLogInput
from .spikeglx import SpikeGlxInput
from .table_read import TableInput
from .xdf_read import XdfInput


def open_input(path, options: InputOptions | None = None):
    """The reader for ``path`` (by ``options.format`` or extension), opened and checked."""
    options = options or InputOptions()
    check_readable(path)
    fmt = format_of(path, options)
    if fmt == "xdf":
        return XdfInput(path, options)
    if fmt == "audio":
        return AudioInput(path, options)
    if fmt == "table":
        return TableInput(path, options)
    if fmt == "psychopy":
        return PsychopyLogInput(path, options)
    if fmt == "brainvision":
        return BrainVisionInput(path, options)
    if fmt == "edf":
        return EdfInput(path, options)
    if fmt == "spikeglx":
        return SpikeGlxInput(path, options)
    if fmt == "openephys":
        return OpenEphysInput(path, options)
    if fmt == "media":
        return MediaInput(path, options)
    if is_synchub_mcap(path):
        return McapInput([path], options)
    return JsonMcapInput(path, options)
