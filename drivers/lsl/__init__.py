"""Lab Streaming Layer (pylsl, the ``lsl`` extra).

* ``inlet``: ``LslInletDriver`` (``driver = "lsl"``): any LSL outlet on the network as a stream, LSL's own
  ``time_correction`` as probe evidence, its channel metadata as the stream's.
* ``outlet``: what an LSL outlet of a synchub stream announces and pushes (spec, stamps, samples; pure but for the
  pylsl calls), shared by the agent's ``[lsl] outlet`` and the collector's ``--lsl-outlet``.
"""
