"""Agent -> collector transport: nothing lost, nothing recorded twice.

* ``wire``: the pure message codec (msgpack envelopes, little-endian array frames, limits checked on decode).
* ``sender``: ``Sender``, the agent's ZeroMQ DEALER (acked, spooled, credit-limited delivery; reconnect and
  failover); ``session``: one session's go-back-N state; ``configure``: a ``Sender`` from the ``[agent]`` settings.
* ``spool``: the bounded spool of unacked messages (memory or disk; the full policy: lowest priority first, recorded
  as gaps); ``spool_entry``: its records and gap spans; ``spool_log``: its segment files; ``marks``: what a
  session read and spooled, through a kill -9; ``restart``: what a restarted agent finds in its spool;
  ``dealer``: the sender's socket and end-of-run summary.
* ``security``: CURVE Ironhouse keys (``new_pair``), the collector's self-test.
* ``nats/``: NATS JetStream groundwork: subjects and ids (``bus``), credentials (``auth``), cluster config
  (``conf``), the publisher (``publish``).
"""
