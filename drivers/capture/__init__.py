"""Devices read through a capture program's stdout, on one base (``base.CaptureDriver``: the subprocess, reads,
restarts, outages as gaps and a new clock segment): ``alsa`` (a USB microphone through ``arecord``) and ``v4l2`` (a
UVC webcam as small gray frames through ``ffmpeg``)."""
