"""Lab Streaming Layer (pylsl, the ``lsl`` extra).

* ``inlet``: ``LslInletDriver`` (``driver = "lsl"``): any LSL outlet on the network as a stream, LSL's own
  ``time_correction`` as probe evidence, its channel metadata as the stream's.
"""
