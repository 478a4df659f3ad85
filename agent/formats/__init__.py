"""File formats users read with their own tools; writers take file objects (no sockets, no fsync policy here).

* ``mcap_layout``: synchub's MCAP layout (channels, JSON schemas of the msgpack messages, metadata);
  ``mcap_write``: the writer setup, recovery of a torn file, a copy with a new correction layer;
  ``mcap_read``: a session back as arrays, and as the raw inputs of the clock layer (``RawRecording``), older
  recordings included.
* ``xdf``: ``XdfWriter``, XDF files that pyxdf and LabRecorder's tools load.
* ``session_stream``: a session a record at a time (bounded memory); ``export``: XDF with ClockOffsets to UTC, CSV
  and .npy exporters fed by it (``synchub export``); ``foxglove``: the Foxglove view (JSON channels, log_time UTC).
"""
