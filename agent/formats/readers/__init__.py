"""Readers of recordings synchub did not make (and of its own sessions as a stream), for ``synchub align`` and
``synchub inspect``: bounded memory whatever the file's length, one-line ``InputError`` for a bad file.

* ``base``: what every reader gives (``FileStream``, ``Piece``, ``Offset``, ``Recorded``, ``Reset``, ``GapRecord``),
  ``InputOptions`` (per file), ``InputError``; ``opening``: ``open_input``, the reader by format or extension.
* ``xdf_read``: XDF (LabRecorder), a chunk at a time, ClockOffsets included; ``audio_read``: WAV/FLAC/... through
  ``soundfile``; ``table_read``: CSV/TSV (a time column, numeric channels, a text column as markers);
  ``psychopy_log``: a PsychoPy experiment's ``.log`` (its EXP and DATA entries as markers); ``brainvision``: a
  BrainVision recording (``.vhdr`` + ``.eeg`` + ``.vmrk``: channels and markers on the amplifier's sample clock);
  ``edf_read``: EDF/EDF+/BDF (a stream per sampling rate, EDF+ annotations as markers);
  ``mcap_parts``: synchub MCAP sessions, several part files as one; ``mcap_json``: MCAP files of JSON channels
  that other tools wrote.
* ``manifest``: a TOML manifest naming several input files with their options.
"""
