"""LSL benchmarks.

* ``inlet`` (``synchub bench lsl-inlet``): an outlet on a really drifting clock (``clockshim.c`` preloaded into
  ``drift_outlet``'s process) recorded by synchub's lsl driver and, side by side, the LabRecorder + pyxdf way.
"""
