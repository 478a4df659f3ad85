"""Alignment of streams that see no trigger: their clock offset against a reference stream from what both sensed.
Pure: arrays in, results out.

* ``onsets``: per modality, where something started happening and how strongly (IMU, audio, video, telemetry,
  text); ``correlation``: onsets on a common grid, normalized cross-correlation, GCC, embedding similarity, peaks.
* ``markers``: what marker lines mean (regex rules -> audible / visible / motion, latency, spread; config
  ``[[stream]] markers``).
* ``aligner``: ``Aligner`` (coarse search over a prior, fine onset correlation, confidence, abstention) and its
  ``AlignResult``; ``drift``: offset, drift and drift sigma from the windows of the whole recording
  (``DriftTracker``); ``calibration``: sigma coverage and the per-pair sigma floor.
* ``window``: ``WindowAligner``, one window of two streams through the classical, neural (ONNX encoders, loaded by
  ``load_runners``) and hybrid methods; ``tracker``: ``AlignmentTracker``, the live version the agent runs, whose
  ``OffsetEstimate`` evidence feeds the target's clock model.
* ``fusion``: ``Fuser``, the fused multimodal vector and per-stream anomaly scores per window (stream ``fused``).
"""
