"""The daemon (``warpd serve``): listeners, producer and subscriber handling, the hub.

Start at :mod:`warpd.daemon.server` (the life cycle). This package may import
the core (protocol, ingest, blocks), config, address and tokens; nothing
below it imports it. The Redis broker (:mod:`warpd.broker`) is imported only
when ``[broker] url`` is set. See docs/architecture.md.
"""
