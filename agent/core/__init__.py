"""The data model every part of synchub shares; imports nothing of synchub above it.

* ``units``: time units (``NS`` and friends, the only definitions in the tree) and the host's two clocks.
* ``stream``: ``StreamInfo`` (LSL-style metadata), ``Chunk`` (samples with raw device, host receive and corrected
  times), ``Gap`` (lost samples and their cause), ``StreamStats``.
* ``evidence``: what drivers and aligners learn about a stream's clock (trigger edges, probes, aligner offsets,
  clock resets, UTC samples) and its plain-dict form for the recording.
* ``settings``: typed, frozen settings from TOML tables with errors that name the file, the key and a did-you-mean.
* ``options``: the options every driver shares (``StreamCommon``, ``TriggerSettings``).
"""
