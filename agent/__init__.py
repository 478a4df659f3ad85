"""The agent and the collector: ``core`` (the data model), ``clock`` (the clock layer), ``align`` (alignment
without triggers), ``pipeline`` (hub, queue, shipper, runtime), ``transport`` (wire, sender, spool, keys),
``collector``, ``formats`` (MCAP, XDF), ``config``, ``deploy`` (systemd), ``cli`` (one module per command).
docs/ARCHITECTURE.md follows one sample through them."""
