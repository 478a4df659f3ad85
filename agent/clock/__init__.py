"""The clock layer: every stream's device time mapped onto the reference clock, with a 1-sigma uncertainty.  Pure.

From the bottom up:

* ``unwrap``: a device's raw wrapping tick counter -> monotone device ns, resets told apart from wraps (the one
  unwrapper of the tree; drivers and the benchmark's simulated drivers use it).
* ``kalman``: Kalman passes over a bank of (offset, skew) models, the two-filter smoother, the least-squares bound;
  ``bank``: ``FilterBank``, the live bank (gating, probation, steps); ``envelope``: the arrival-time lower envelope;
  ``probes``: round-trip probe bands and the min-RTT filter.
* ``segment``: one stretch of a device's timeline with its own estimators; ``timeline``: where segments begin (clock
  resets, jumps, steps); ``choice``: which estimate a mapped time gets; ``model``: ``ClockModel``, one stream's clock.
* ``triggers``: ``TriggerMatcher``, pairing a device's edges with the reference edges; ``barcode``: TTL barcodes and
  the Harp second code.
* ``layer``: ``StreamClocks``, the clock layer of an agent (evidence routed to each stream's model and matcher,
  chunks corrected, the reference -> UTC mapping).
* ``replay``: the one correction path: ``LiveCorrector`` (the agent's shipper), and the rerun of a recording live or
  two-sided (``synchub align``, ``synchub bench sync``).
"""
