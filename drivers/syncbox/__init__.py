"""The synchub sync box (ATmega328P firmware in firmware/): ``protocol`` is its pure COBS/CRC message codec,
``driver`` the client (``SyncBoxClient``) and the stream driver (pulses, barcodes, Harp code, edge capture, probes)."""
