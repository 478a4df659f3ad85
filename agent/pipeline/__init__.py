"""The agent's pipeline, one process: drivers -> hub -> queue -> shipper (clock layer) -> transport.

* ``hub``: ``Hub``, the sink every driver reports to (sequence numbers, gaps, clock resets, evidence);
* ``chunkqueue``: ``BoundedQueue`` (lossless by default) and the items it carries;
* ``shipper``: ``Shipper``, the thread that owns the clock state, corrects chunks after a short delay and sends them;
* ``runtime``: ``Agent``, which assembles all of it from a config (drivers, trigger inputs, clock layer, aligners,
  fusion, NTP, sender) and runs it;
* ``lsl_outlet``: ``LslPublisher``, corrected streams re-published as LSL outlets (``[lsl] outlet``), a shipper tap;
* ``notify``: systemd's ``sd_notify`` (READY, WATCHDOG, STATUS); ``status_view``: the agent's status, pure
  (stream states, the STATUS= line, the terminal table); ``liveness``: which loops stopped turning (pure: the
  watchdog pings only while none did); ``monitor``: reads a running ``Agent`` into its status and liveness;
  ``control``: the local control socket ``synchub status`` asks.
"""
