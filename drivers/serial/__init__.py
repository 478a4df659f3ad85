"""Serial/USB devices through pyserial (``driver = "serial"``).

* ``frames``: the imu-bin binary format (and what all formats share: ping/pong, ``Malformed``, the CRC);
  ``lines``: the text formats tlm-nmea and log-text;
* ``protocol``: ``SerialProtocol``, pure: bytes in, samples, gaps, clock resets, trigger edges and probes out to
  the driver sink; ``SerialSettings``;
* ``port``: ``SerialStreamDriver``, the reading thread (open, read, reconnect, probes on schedule).
"""
