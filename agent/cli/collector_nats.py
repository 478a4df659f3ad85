"""``synchub collector --nats URL ...``: record from a NATS JetStream cluster (``agent/collector/jetstream.py``)."""

from __future__ import annotations

import sys

from synchub.agent.collector.jetstream import NatsCollector
from synchub.agent.transport.nats import bus
from synchub.agent.transport.nats.auth import CredentialError, client_tls, load_credentials
from synchub.argtypes import positive
from synchub.errors import UserError


def add_arguments(p) -> None:
    g = p.add_argument_group("NATS JetStream (instead of --bind)")
    g.add_argument("--nats", action="append", metavar="URL",
                   help="consume from this NATS cluster (tls://host:4222; repeat or comma-separate for several)")
    g.add_argument("--nats-credentials", metavar="FILE", help="the collector's key file (nkey seed, .creds, TOML)")
    g.add_argument("--nats-ca", metavar="FILE", help="the site CA the servers' TLS certificates are checked against")
    g.add_argument("--partition", type=int, default=-1, metavar="K",
                   help="consume partition K of a partitioned site (one collector per partition); default: all")
    g.add_argument("--stream", default=bus.DEFAULT_STREAM, help="the JetStream stream (default %(default)s)")
    g.add_argument("--durable", help="the durable consumer's name (default: collector, or collector-K)")
    g.add_argument("--ack-wait-s", type=positive, default=10.0,
                   help="JetStream redelivers what a collector has not acked within this (default %(default)s s)")


def make(args) -> NatsCollector:
    servers = [u.strip() for a in args.nats for u in a.split(",") if u.strip()]
    if args.partition < -1 or args.partition > 1023:
        raise UserError(f"--partition {args.partition}: 0..1023")
    if not args.ack_wait_s > 0:
        raise UserError("--ack-wait-s must be > 0")
    try:
        tls = client_tls(args.nats_ca, insecure=args.insecure)
        if args.nats_credentials:
            options = load_credentials(args.nats_credentials).connect_options()
        elif args.insecure:
            options = {}
        else:
            raise UserError("--nats needs --nats-credentials FILE (or --insecure)")
    except CredentialError as exc:
        raise UserError(str(exc)) from None
    part = args.partition
    filt = bus.partition_filter(part) if part >= 0 else f"{bus.DEFAULT_PREFIX}.>"
    durable = args.durable or ("collector" if part < 0 else f"collector-{part}")
    if tls is None:
        print("synchub collector: INSECURE: plain-text NATS (--insecure)", file=sys.stderr)
    try:
        return NatsCollector(servers, args.out, stream=args.stream, durable=durable, filter_subject=filt,
                             connect_options=options, tls=tls, name=args.name, flush_s=args.flush_ms / 1000.0,
                             compression=args.compression, ack_wait_s=args.ack_wait_s)
    except bus.BusError as exc:
        raise UserError(str(exc)) from None
