"""Example agent configs, shipped with the package (``importlib.resources.files("synchub.examples")``):
``sim-rig.toml`` (the simulated rig ``synchub demo`` runs), ``lab-rig.toml`` (a sync box, two serial sensors and a
GPIO trigger line), ``field-pi.toml`` (a Raspberry Pi with a GPS PPS, an IMU and a microphone)."""
