"""Sync-box firmware (AVR C) and its simavr harness; the Python side runs the harness."""
