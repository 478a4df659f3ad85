"""Drivers: everything that touches a device (serial ports, GPIO chips, the sync box, NTP, simulated devices)."""
