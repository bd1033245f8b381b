"""A pub/sub connection used as a trigger only: a Sentinel's +switch-master says "read the
topology now". Events sent while it is disconnected are lost, so the caller re-reads the
topology after every (re)connect and keeps polling on its interval as the source of truth.
"""

from __future__ import annotations

from typing import Any

import redis

from exporter.config.model import TargetConfig
from exporter.conn.connection import connection_factory


class Subscriber:
    """Subscribed to `channel` on `target` once `open()` returns."""

    def __init__(self, target: TargetConfig, channel: str, timeout: float) -> None:
        cls, kwargs = connection_factory(target, timeout, named=True)
        self._pool = redis.ConnectionPool(connection_class=cls, max_connections=1, **kwargs)
        client: Any = redis.Redis(connection_pool=self._pool)
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._channel = channel

    def open(self) -> None:
        self._pubsub.subscribe(self._channel)

    def wait(self, timeout: float) -> bool:
        """True when a message arrived within `timeout`; raises when the connection broke."""
        return self._pubsub.get_message(timeout=timeout) is not None

    def close(self) -> None:
        try:
            self._pubsub.close()
        finally:
            self._pool.disconnect()
