"""The collector, its own process (``synchub collector``, unit ``synchub-collector.service``): records agent
sessions to MCAP with nothing lost and nothing recorded twice.

* ``ledger``: what is recorded of a session (message order, duplicates, sample continuity, the durable mid); pure.
* ``recorder``: the session's MCAP part files (write, flush, fsync on a thread, finish, recover a crashed file).
* ``server``: ``Collector``, the ZeroMQ ROUTER (hellos, acks after fsync, the lossy live-view PUB socket, CURVE like
  the data path); ``bind``: its socket (CURVE and the self-test); ``admission``: what one key may take (sessions,
  files, in-flight bytes) and when a session is forgotten; pure.
* ``liveview``: ``LiveView``, what a ``synchub live`` viewer makes of that socket (per agent/stream rate, method,
  sigma); pure.
* ``lsl_tap``: ``LslTap`` (``--lsl-outlet``), every recorded stream of every session as an LSL outlet on this host,
  the agent's reference times mapped through UTC onto its LSL clock.
"""
