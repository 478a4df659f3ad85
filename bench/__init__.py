"""Benchmarks (``synchub bench NAME``, dispatched by ``main``): each writes JSON (this machine's in bench/results/).

One module or package per benchmark: ``sync/`` (timestamp error against truth per clock method), ``align/``
(alignment accuracy, simulated held-out worlds and the real-signal corpus), ``encoders``, ``firmware``,
``footprint``, ``throughput``, ``transport``, ``nats_publish``, ``lsl/`` (LSL inlet/outlet), ``export`` (a long session to XDF).  Shared: ``harness`` (a collector process, ports,
keys), ``nats_local`` (a local TLS NATS cluster), ``debs`` (programs unpacked from Debian packages).  Scenario
files: ``scenarios/``.  Benchmarks use the public API of the packages they measure.
"""
