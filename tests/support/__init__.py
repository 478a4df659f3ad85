"""What tests share besides fixtures (tests/conftest.py): the checkout's paths, driver sinks that record what a
driver reports, and helper programs and pytest plugins (a fault-injecting sender, a local NATS cluster, an arm64
root under qemu).  ``tests/`` is on ``sys.path`` (pytest puts the rootdir conftest's folder there), so test modules
``import support.sinks``; the fakes of gpiod/RPi.GPIO/the PPS API stay in ``tests/fakes``."""
