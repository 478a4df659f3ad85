"""``synchub bench align-files``: ``synchub align`` on recordings it did not make, against pyxdf on LabRecorder's
example files, against the truth on simulated files (``simulate``: XDF with wandering clocks, sync pulses in a CSV
and a WAV, one hour of eight streams), with the least-squares bound.  The command: ``run``."""
