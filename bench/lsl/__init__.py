"""LSL benchmarks.

* ``inlet`` (``synchub bench lsl-inlet``): an outlet on a really drifting clock (``clockshim.c`` preloaded into
  ``drift_outlet``'s process) recorded by synchub's lsl driver and, side by side, the LabRecorder + pyxdf way;
* ``outlet`` (``synchub bench lsl-outlet``): corrected samples re-published through the agent's LSL outlet, per
  second on one core, every sample checked by an inlet in another process.
"""
