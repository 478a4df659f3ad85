"""Aligning recordings synchub did not make (``synchub align`` on XDF, audio, CSV/TSV, MCAP): every stream mapped
onto one reference clock from the evidence the files hold.

* ``sync_edges``: ``PulseFinder``, sync pulses in a data channel (TTL, photodiode, click, tone; width rules);
* ``tracks``: ``StreamTrack``, one stream's evidence gathered in the first pass (XDF offsets, pulses, dejitter);
* ``links``: a stream tied to the reference (TPrime-style edge pairs through a ``ClockModel``, or the aligner);
* ``reference``: ``ReferenceLinks``, the reference chosen and every stream's link to it; ``InputSpec``, ``AlignError``;
* ``engine``: ``FileAlignment`` (inspect, write) and ``align_files``; ``report``: the per-stream report and plot.
"""
