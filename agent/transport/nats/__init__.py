"""NATS JetStream transport (groundwork, docs/FLEET.md): ``bus`` (subjects, message ids, partitions), ``auth``
(nkeys credentials, TLS), ``conf`` (a local TLS cluster's server configs), ``publish`` (the acked async publisher).
nats-py is the ``nats`` extra, imported where it is used."""
