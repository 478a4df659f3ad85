"""``synchub bench fleet``: agents, collectors and a 3-node NATS JetStream cluster on one machine (``run``), the
simulated agents' worker process (``agents``), and what the recordings say (``count``)."""
