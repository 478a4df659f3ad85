"""Serial/USB devices through pyserial (``driver = "serial"``): synchub's own formats and generic ones.

* ``frames``: the imu-bin binary format (and what all formats share: ping/pong, ``Malformed``, the CRC);
  ``lines``: the text formats tlm-nmea and log-text;
* ``protocol``: ``SerialProtocol``, pure: bytes in, samples, gaps, clock resets, trigger edges and probes out to
  the driver sink; ``SerialSettings``;
* generic formats, set up in config (``formats``: which format, its table and decoder; ``records``: parsed
  records -> samples, gaps, resets): ``textrecords`` (csv, regex, keyvalue), ``nmea`` (pynmea2), ``binframes``
  (struct + COBS/length prefix + CRC), ``harp`` (Harp binary messages);
* ``port``: ``SerialStreamDriver``, the reading thread (open, read, reconnect, probes on schedule).
"""
