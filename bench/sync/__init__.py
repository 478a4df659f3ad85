"""``synchub bench sync``: every simulated device's samples, edges, probes and arrival times generated in virtual
time (``simulate``, from a ``scenario`` file), corrected by the code users run, and the error against truth with the
least-squares bound (``report``).  The command: ``run``."""
