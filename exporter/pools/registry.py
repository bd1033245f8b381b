"""The pools instrumented into one prometheus_client registry, and their metrics.

Single process: a collector reads each live pool's public count at scrape time; a pool the
application drops leaves the registry (weak references) and its series go. prometheus_client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR set: gunicorn workers, multiprocessing) never reads
collectors, so there the gauges are pushed (`livesum`: summed over live processes) from inside
the wrapped get_connection and release, and a collected pool's gauges go to 0 (multiprocess
mode cannot remove a series).
"""

from __future__ import annotations

import os
import queue
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.expose.families import (
    LIBRARY_POOL_CONNECTIONS,
    LIBRARY_POOL_CREATED,
    LIBRARY_POOL_INFO,
    LIBRARY_POOL_MAX,
    LIBRARY_POOL_TIMEOUTS,
    LIBRARY_POOL_WAIT,
    Family,
)
from exporter.pools.tracked import TrackedPool, server_of
from exporter.pools.wrapping import Events, unwrap, wrap

WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0)
_STATES = (("idle", 0), ("in_use", 1))


class _Pushed:
    """Multiprocess mode: the gauges, set by the process that owns the pool."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        def gauge(family: Family, mode: str) -> Gauge:
            return Gauge(family.name, family.help, family.labels, registry=registry,
                         multiprocess_mode=mode)  # type: ignore[arg-type]
        self.connections = gauge(LIBRARY_POOL_CONNECTIONS, "livesum")
        self.max = gauge(LIBRARY_POOL_MAX, "livesum")
        self.info = gauge(LIBRARY_POOL_INFO, "livemax")

    def push(self, tracked: TrackedPool) -> None:
        counts = tracked.counts() or (0, 0)
        for state, index in _STATES:
            self.connections.labels(tracked.name, state).set(counts[index])
        self.max.labels(tracked.name).set(tracked.max_connections)
        if tracked.pushed_server not in (None, tracked.server):  # a Sentinel pool's new master
            self.info.labels(tracked.name, tracked.client_name, tracked.pushed_server).set(0)
        self.info.labels(tracked.name, tracked.client_name, tracked.server).set(1)
        tracked.pushed_server = tracked.server

    def zero(self, tracked: TrackedPool, server: str) -> None:
        for state, _ in _STATES:
            self.connections.labels(tracked.name, state).set(0)
        self.max.labels(tracked.name).set(0)
        self.info.labels(tracked.name, tracked.client_name, server).set(0)


class _Reaper:
    """Forgets collected pools outside the garbage collector.

    A pool's finalizer runs wherever a collection happens to start, possibly inside
    prometheus_client while it holds a metric's (non-reentrant) lock: touching metrics there
    could deadlock. The finalizer only queues (SimpleQueue.put is safe in a finalizer); this
    thread, started by the first instrumented pool of a process (never at import), does the
    work.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[PoolRegistry, str, TrackedPool]] = \
            queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pid = 0  # the thread does not survive a fork: started again in the child

    def ensure(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="redis-pool-reaper",
                                 daemon=True).start()

    def put(self, registry: PoolRegistry, name: str, tracked: TrackedPool) -> None:
        self._queue.put((registry, name, tracked))

    def _run(self) -> None:
        while True:
            registry, name, tracked = self._queue.get()
            registry.forget(name, tracked)


_REAPER = _Reaper()


class PoolRegistry(Collector):
    """Instrumented pools of one prometheus_client registry (one per registry: `for_registry`)."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY,
                 multiprocess: bool | None = None) -> None:
        if multiprocess is None:
            multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self._lock = threading.RLock()
        self._pools: dict[str, TrackedPool] = {}
        self._clusters: dict[str, weakref.ref[Any]] = {}
        self.wait = Histogram(LIBRARY_POOL_WAIT.name, LIBRARY_POOL_WAIT.help,
                              LIBRARY_POOL_WAIT.labels, buckets=WAIT_BUCKETS,
                              registry=registry)
        self.timeouts = Counter(LIBRARY_POOL_TIMEOUTS.name.removesuffix("_total"),
                                LIBRARY_POOL_TIMEOUTS.help, LIBRARY_POOL_TIMEOUTS.labels,
                                registry=registry)
        self.created = Counter(LIBRARY_POOL_CREATED.name.removesuffix("_total"),
                               LIBRARY_POOL_CREATED.help, LIBRARY_POOL_CREATED.labels,
                               registry=registry)
        self.pushed = _Pushed(registry) if multiprocess else None
        if not multiprocess and registry is not None:
            registry.register(self)
        self.events = Events(self._waited, self._timed_out, self._created, self._changed)

    # -- the application's calls ---------------------------------------------------------

    def add(self, pool: Any, name: str) -> None:
        with self._lock:
            known = self._pools.get(name)
            if known is not None:
                if known.pool() is pool:
                    return
                if known.pool() is not None:
                    raise ValueError(f"a pool named {name!r} is instrumented already")
                self.forget(name, known)  # collected, its finalizer not run yet: replaced
            kwargs = getattr(pool, "connection_kwargs", {}) or {}
            tracked = TrackedPool(name, weakref.ref(pool), str(kwargs.get("client_name") or ""),
                                  server_of(kwargs), int(getattr(pool, "max_connections", 0)))
            self._pools[name] = tracked
            wrap(pool, tracked, self.events)
            # The label children, looked up once: a get_connection pays no label lookup.
            tracked.children = (self.wait.labels(name), self.timeouts.labels(name),
                                self.created.labels(name))
            _REAPER.ensure()
            weakref.finalize(pool, _REAPER.put, self, name, tracked)
        self._changed(tracked)

    def add_unique(self, pool: Any, base: str) -> str | None:
        """Instrument `pool` as `base`, else `base#2`, `base#3`...: the name, or None when it
        is instrumented already. One step under the lock (discovery runs in any thread)."""
        with self._lock:
            if any(tracked.pool() is pool for tracked in self._pools.values()):
                return None
            name, number = base, 1
            while name in self._pools and self._pools[name].pool() is not None:
                number += 1
                name = f"{base}#{number}"
            self.add(pool, name)
            return name

    def remove(self, pool: Any) -> bool:
        """Stop instrumenting `pool`; False when it was not instrumented here."""
        with self._lock:
            found = [t for t in self._pools.values() if t.pool() is pool]
            for tracked in found:
                unwrap(pool)
                self.forget(tracked.name, tracked)
        return bool(found)

    def add_cluster(self, cluster: Any, name: str) -> None:
        """Sync RedisCluster: one pool per node, `<name>/<host:port>`; nodes appear lazily, so
        new ones are picked up at each collect (multiprocess: at each call of this)."""
        with self._lock:
            self._clusters[name] = weakref.ref(cluster)
        self._add_nodes(name, cluster)

    def _add_nodes(self, name: str, cluster: Any) -> None:
        for node in cluster.get_nodes():
            connection = getattr(node, "redis_connection", None)
            if connection is None:
                continue
            try:
                self.add(connection.connection_pool, f"{name}/{node.name}")
            except ValueError:  # a node's old pool still alive: picked up at a later scrape
                continue

    def forget(self, name: str, tracked: TrackedPool) -> None:
        """Drop `tracked` (if it is still the pool of that name) and its series; never from
        a finalizer (see _Reaper)."""
        with self._lock:
            if self._pools.get(name) is not tracked:
                return
            del self._pools[name]
            if self.pushed is not None:  # multiprocess files keep series: zero them
                self.pushed.zero(tracked, tracked.server)
                return
            for metric in (self.wait, self.timeouts, self.created):
                metric.remove(name)

    # -- wrapper events ------------------------------------------------------------------

    def _waited(self, tracked: TrackedPool, seconds: float) -> None:
        tracked.children[0].observe(seconds)

    def _timed_out(self, tracked: TrackedPool) -> None:
        tracked.children[1].inc()

    def _created(self, tracked: TrackedPool) -> None:
        tracked.children[2].inc()

    def _changed(self, tracked: TrackedPool) -> None:
        if self.pushed is not None:
            self.pushed.push(tracked)

    # -- scrape ----------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            clusters = [(name, ref()) for name, ref in self._clusters.items()]
        for name, cluster in clusters:
            if cluster is not None:
                self._add_nodes(name, cluster)
        connections = GaugeMetricFamily(LIBRARY_POOL_CONNECTIONS.name,
                                        LIBRARY_POOL_CONNECTIONS.help,
                                        labels=LIBRARY_POOL_CONNECTIONS.labels)
        maximum = GaugeMetricFamily(LIBRARY_POOL_MAX.name, LIBRARY_POOL_MAX.help,
                                    labels=LIBRARY_POOL_MAX.labels)
        info = GaugeMetricFamily(LIBRARY_POOL_INFO.name, LIBRARY_POOL_INFO.help,
                                 labels=LIBRARY_POOL_INFO.labels)
        with self._lock:
            tracked_pools = sorted(self._pools.values(), key=lambda t: t.name)
        for tracked in tracked_pools:
            counts = tracked.counts()
            if counts is not None:
                for state, index in _STATES:
                    connections.add_metric([tracked.name, state], counts[index])
            maximum.add_metric([tracked.name], tracked.max_connections)
            info.add_metric([tracked.name, tracked.client_name, tracked.server], 1)
        yield from (connections, maximum, info)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the families vary with the pools: collect at registration is avoided

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._pools)


_REGISTRIES: weakref.WeakKeyDictionary[CollectorRegistry, PoolRegistry] = \
    weakref.WeakKeyDictionary()
_REGISTRIES_LOCK = threading.Lock()


def for_registry(registry: CollectorRegistry = REGISTRY) -> PoolRegistry:
    """The PoolRegistry of `registry`, made on first use (metrics register only once)."""
    with _REGISTRIES_LOCK:
        found = _REGISTRIES.get(registry)
        if found is None:
            found = _REGISTRIES[registry] = PoolRegistry(registry)
        return found


def instrument(pool: Any, name: str, registry: CollectorRegistry = REGISTRY) -> Any:
    """Instrument a redis-py ConnectionPool or BlockingConnectionPool (sync or asyncio) under
    `name`; returns the pool. The same pool again is a no-op; another pool of that name is an
    error."""
    for_registry(registry).add(pool, name)
    return pool


def instrument_cluster(cluster: Any, name: str, registry: CollectorRegistry = REGISTRY) -> Any:
    """Instrument every node pool of a sync RedisCluster, as `<name>/<host:port>`."""
    for_registry(registry).add_cluster(cluster, name)
    return cluster


def uninstrument(pool: Any, registry: CollectorRegistry = REGISTRY) -> bool:
    """Stop instrumenting `pool`: its wrappers go and its series disappear."""
    return for_registry(registry).remove(pool)
