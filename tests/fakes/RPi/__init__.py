"""Fake RPi package (see tests/fakes/README.md)."""
