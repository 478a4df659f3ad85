"""The simulated rig: a seeded world of shared events rendered by simulated devices with their own clocks, in real
time on real ptys (what ``synchub demo``, ``synchub sim`` and many tests run) and, vectorized, for the benchmarks
and the encoders' training data.

* ``world``: the events (taps, motions, flashes, tones, log markers); ``render``: the world as each modality's
  samples (``events``: what the renderers share);
* ``clocks``: a device's true clock (offset, drift and its random walk, resets, counter wraps, latency, drops);
* ``devices``: a device's wire output packet by packet; ``ports``: serial devices behind ptys and in-process
  capture sources; ``rig``: ``SimRig``, which runs them with the trigger lines and keeps the truth (``truth``);
* ``settings``: the ``[sim]`` table; ``capture``: the ``sim`` stream driver (the rig's microphone and camera).
"""
