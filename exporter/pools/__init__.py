"""Library mode: Prometheus metrics for an application's own redis-py pools.

    from exporter.pools import instrument
    pool = redis.BlockingConnectionPool(host="cache", max_connections=20, client_name="checkout")
    instrument(pool, name="checkout")        # prometheus_client's default registry, or registry=

Public redis-py API only: `get_connection_count()`, `max_connections`, `connection_kwargs`, and
the pool's public methods wrapped on the instance (waits, timeouts, created connections).
Importing this package imports redis-py and prometheus_client, never the daemon (no yaml, no
HTTP server, no threads).
"""

from exporter.pools.discovery import discover
from exporter.pools.registry import (
    PoolRegistry,
    instrument,
    instrument_cluster,
    uninstrument,
)

__all__ = ["PoolRegistry", "discover", "instrument", "instrument_cluster", "uninstrument"]
