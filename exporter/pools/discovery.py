"""Optional: instrument every pool that clients made with a given redis-py EventDispatcher
create, through its public `AfterPooledConnectionsInstantiationEvent` (redis-py 5.3+).

    dispatcher = EventDispatcher()
    discover(dispatcher)
    cache = redis.Redis(host="cache", client_name="checkout", event_dispatcher=dispatcher)

A pool is named by its client name, else its server; a name held by another live pool gets
`#2`, `#3`... A pool instrumented already (by name or by this) is left as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from redis.event import (
    AfterPooledConnectionsInstantiationEvent,
    EventDispatcher,
    EventListenerInterface,
)

from exporter.pools.registry import PoolRegistry, for_registry
from exporter.pools.tracked import server_of

log = logging.getLogger(__name__)


def default_name(pool: Any) -> str:
    kwargs = getattr(pool, "connection_kwargs", {}) or {}
    return str(kwargs.get("client_name") or server_of(kwargs) or "redis")


class DiscoverPools(EventListenerInterface):
    """The listener: each new pool of a dispatched event is instrumented."""

    def __init__(self, registry: PoolRegistry, name: Callable[[Any], str]) -> None:
        self._registry = registry
        self._name = name

    def listen(self, event: object) -> None:
        """Runs inside redis.Redis(): it must never make that fail."""
        if not isinstance(event, AfterPooledConnectionsInstantiationEvent):
            return
        for pool in event.connection_pools:
            try:
                self._registry.add_unique(pool, self._name(pool))
            except Exception:
                log.warning("redis pool not instrumented", exc_info=True)


def discover(dispatcher: EventDispatcher, registry: CollectorRegistry = REGISTRY,
             name: Callable[[Any], str] = default_name) -> None:
    """Instrument the pools of every client made with `dispatcher` from now on."""
    dispatcher.register_listeners({
        AfterPooledConnectionsInstantiationEvent: [DiscoverPools(for_registry(registry), name)]})
