"""Library mode (exporter/pools) against real Redis servers: counts, waits, timeouts, created
connections, asyncio pools, a cluster's node pools, collected pools, and the seed's recipe as a
contrast. Multiprocess mode with real worker processes is in test_pools_multiprocess.py."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import redis.asyncio
from prometheus_client import CollectorRegistry, generate_latest
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.event import EventDispatcher
from redis.retry import Retry
from redis.sentinel import Sentinel

from exporter.pools import (
    PoolRegistry,
    discover,
    instrument,
    instrument_cluster,
    uninstrument,
)
from tests.support.clients import RawClient
from tests.support.redis_server import RedisServer, free_port
from tests.support.scrape import value, values, wait_for
from tests.support.servers import build


def _text(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def _registry() -> CollectorRegistry:
    return CollectorRegistry()


def _forgotten(registry: CollectorRegistry, pool: str) -> str | None:
    """The exposition once no series of `pool` is left in it."""
    text = _text(registry)
    return None if f'pool="{pool}"' in text else text


def _state(text: str, pool: str, state: str) -> float | None:
    return value(text, "redis_pool_connections", pool=pool, state=state)


def test_a_blocking_pool_of_three_held_times_out_the_fourth_and_counts_everything(
        redis_server: RedisServer) -> None:
    registry = _registry()
    pool = redis.BlockingConnectionPool(host="127.0.0.1", port=redis_server.port,
                                        max_connections=3, timeout=0.2, client_name="checkout")
    instrument(pool, name="checkout", registry=registry)
    held = [pool.get_connection() for _ in range(3)]
    for connection in held:
        connection.send_command("PING")
        assert connection.read_response() == b"PONG"
    text = _text(registry)
    assert (_state(text, "checkout", "in_use"), _state(text, "checkout", "idle")) == (3, 0)
    assert value(text, "redis_pool_max_connections", pool="checkout") == 3
    assert value(text, "redis_pool_connections_created_total", pool="checkout") == 3
    assert value(text, "redis_pool_wait_timeouts_total", pool="checkout") == 0
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError, match="No connection available"):
        pool.get_connection()
    waited = time.monotonic() - started
    text = _text(registry)
    assert value(text, "redis_pool_wait_timeouts_total", pool="checkout") == 1
    assert value(text, "redis_pool_wait_seconds_count", pool="checkout") == 4
    total = value(text, "redis_pool_wait_seconds_sum", pool="checkout")
    assert total is not None and 0.2 <= total <= waited + 0.1  # the timed-out wait is in it
    for connection in held:
        pool.release(connection)
    text = _text(registry)
    assert (_state(text, "checkout", "in_use"), _state(text, "checkout", "idle")) == (0, 3)
    (labels, one), = values(text, "redis_pool_info", pool="checkout")
    assert one == 1
    assert labels == {"pool": "checkout", "client_name": "checkout",
                      "server": f"127.0.0.1:{redis_server.port}"}
    names = RawClient(redis_server.port)
    try:
        listing = names.call("CLIENT", "LIST").decode()
    finally:
        names.close()
    assert listing.count("name=checkout ") == 3  # the server-side group the join meets
    pool.disconnect()


def test_a_refused_server_is_not_a_wait_timeout() -> None:
    registry = _registry()
    pool = redis.BlockingConnectionPool(host="127.0.0.1", port=free_port(),
                                        max_connections=2, timeout=0.2)
    instrument(pool, name="nowhere", registry=registry)
    with pytest.raises(redis.ConnectionError) as caught:
        redis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0)).ping()
    assert "No connection available" not in str(caught.value)  # same class, other message
    text = _text(registry)
    assert value(text, "redis_pool_wait_timeouts_total", pool="nowhere") == 0


def test_a_plain_pool_at_max_connections_counts_a_timeout(redis_server: RedisServer) -> None:
    registry = _registry()
    pool = redis.ConnectionPool(host="127.0.0.1", port=redis_server.port, max_connections=1)
    instrument(pool, name="small", registry=registry)
    first = pool.get_connection()
    with pytest.raises(redis.ConnectionError, match="Too many connections"):
        pool.get_connection()
    pool.release(first)
    text = _text(registry)
    assert value(text, "redis_pool_wait_timeouts_total", pool="small") == 1
    assert (_state(text, "small", "in_use"), _state(text, "small", "idle")) == (0, 1)
    pool.disconnect()


def test_asyncio_pools_are_counted_and_timed(redis_server: RedisServer) -> None:
    registry = _registry()

    async def run() -> tuple[str, str, str]:
        blocking = redis.asyncio.BlockingConnectionPool(
            host="127.0.0.1", port=redis_server.port, max_connections=2, timeout=0.2)
        plain = redis.asyncio.ConnectionPool(host="127.0.0.1", port=redis_server.port)
        instrument(blocking, name="async-blocking", registry=registry)
        instrument(plain, name="async-plain", registry=registry)
        client = redis.asyncio.Redis(connection_pool=plain)
        assert await client.ping()
        held = [await blocking.get_connection() for _ in range(2)]
        during = _text(registry)
        with pytest.raises(redis.ConnectionError, match="No connection available"):
            await blocking.get_connection()
        for connection in held:
            await blocking.release(connection)
        after = _text(registry)
        await blocking.disconnect()
        await client.aclose()
        await plain.disconnect()
        return during, after, _text(registry)

    during, after, _ = asyncio.run(run())
    assert (_state(during, "async-blocking", "in_use"),
            _state(during, "async-blocking", "idle")) == (2, 0)
    assert value(after, "redis_pool_wait_timeouts_total", pool="async-blocking") == 1
    assert _state(after, "async-blocking", "in_use") == 0
    assert value(after, "redis_pool_connections_created_total", pool="async-plain") == 1
    assert value(after, "redis_pool_wait_seconds_count", pool="async-plain") == 1


def test_a_collected_pool_leaves_the_registry_and_uninstrument_unwraps(
        redis_server: RedisServer) -> None:
    registry = _registry()
    kept = redis.ConnectionPool(host="127.0.0.1", port=redis_server.port)
    dropped = redis.ConnectionPool(host="127.0.0.1", port=redis_server.port)
    instrument(kept, name="kept", registry=registry)
    instrument(dropped, name="dropped", registry=registry)
    dropped.release(dropped.get_connection())
    assert _state(_text(registry), "dropped", "idle") == 1
    dropped.disconnect()
    del dropped
    gc.collect()  # redis-py 8 pools hold reference cycles of their own (maint notifications)
    # Forgotten by the reaper thread, outside the collector (see registry._Reaper).
    text = str(wait_for(lambda: _forgotten(registry, "dropped"), timeout=5,
                        message="the collected pool forgotten"))
    assert _state(text, "dropped", "idle") is None
    assert value(text, "redis_pool_connections_created_total", pool="dropped") is None
    assert _state(text, "kept", "idle") == 0
    assert uninstrument(kept, registry=registry)
    assert "get_connection" not in vars(kept)
    assert _state(_text(registry), "kept", "idle") is None


def test_a_name_is_one_pool(redis_server: RedisServer) -> None:
    registry = PoolRegistry(_registry(), multiprocess=False)
    first = redis.ConnectionPool(host="127.0.0.1", port=redis_server.port)
    registry.add(first, "app")
    registry.add(first, "app")  # the same pool again: nothing changes
    with pytest.raises(ValueError, match="'app' is instrumented already"):
        registry.add(redis.ConnectionPool(host="127.0.0.1", port=redis_server.port), "app")
    assert registry.names() == ["app"]


def test_a_cluster_gets_one_pool_per_node_as_nodes_appear(
        redis_factory: Callable[..., RedisServer]) -> None:
    # The cluster bus listens on port + 10000: the port must be 55535 or less.
    port = next(port for port in iter(free_port, None) if port <= 55535)
    server = redis_factory(port=port, extra_args=["--cluster-enabled", "yes",
                                                  "--cluster-config-file", "nodes.conf"])
    admin = RawClient(server.port)
    try:
        assert admin.call("CLUSTER", "ADDSLOTSRANGE", 0, 16383) == b"+OK"
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in admin.call("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "the single-node cluster never became ok"
            time.sleep(0.1)
    finally:
        admin.close()
    registry = _registry()
    cluster = RedisCluster(host="127.0.0.1", port=server.port)
    try:
        instrument_cluster(cluster, name="shop", registry=registry)
        cluster.set("k", "v")
        text = _text(registry)
        pool = f"shop/127.0.0.1:{server.port}"
        assert value(text, "redis_pool_max_connections", pool=pool) is not None
        assert value(text, "redis_pool_connections", pool=pool, state="idle") == 1
        (labels, _), = values(text, "redis_pool_info", pool=pool)
        assert labels["server"] == f"127.0.0.1:{server.port}"
    finally:
        cluster.close()


SEED_RECIPE = """
import redis
pool = redis.BlockingConnectionPool(host="127.0.0.1", port=1, max_connections=2)
print(len(pool._available_connections), len(pool._in_use_connections), pool.max_connections)
"""


def test_the_seed_recipe_fails_on_a_blocking_pool_where_ours_counts() -> None:
    """A documented contrast, not a test of redis-py: the private attributes the seed's recipe
    reads do not exist on BlockingConnectionPool."""
    seed = subprocess.run([sys.executable, "-c", SEED_RECIPE], capture_output=True, text=True,
                          timeout=60, check=False)
    assert seed.returncode != 0
    assert "has no attribute '_available_connections'" in seed.stderr
    registry = _registry()
    pool = redis.BlockingConnectionPool(host="127.0.0.1", port=1, max_connections=2)
    instrument(pool, name="seed", registry=registry)
    text = _text(registry)
    assert (_state(text, "seed", "idle"), _state(text, "seed", "in_use")) == (0, 0)
    assert value(text, "redis_pool_max_connections", pool="seed") == 2


def test_importing_the_pools_starts_no_thread_and_imports_no_daemon() -> None:
    # prometheus_client itself imports http.server (for its start_http_server): not ours.
    script = ("import sys, threading; import exporter.pools; "
              "bad = sorted(m for m in sys.modules if m == 'yaml' or m.startswith(("
              "'exporter.app', 'exporter.cli', 'exporter.config', 'exporter.conn', "
              "'exporter.poll', 'exporter.pipeline', 'exporter.expose.web', "
              "'exporter.expose.http_front', 'exporter.runtime'))); "
              "print(bad, threading.active_count())")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[] 1"


def test_discovery_instruments_the_pools_of_clients_made_with_the_dispatcher(
        redis_server: RedisServer) -> None:
    registry = _registry()
    dispatcher = EventDispatcher()
    discover(dispatcher, registry=registry)
    first = redis.Redis(host="127.0.0.1", port=redis_server.port, client_name="checkout",
                        event_dispatcher=dispatcher)
    second = redis.Redis(host="127.0.0.1", port=redis_server.port, client_name="checkout",
                         event_dispatcher=dispatcher)
    unnamed = redis.Redis(host="127.0.0.1", port=redis_server.port,
                          event_dispatcher=dispatcher)
    outside = redis.Redis(host="127.0.0.1", port=redis_server.port, client_name="other")
    for client in (first, second, unnamed, outside):
        assert client.ping()
    text = _text(registry)
    assert _state(text, "checkout", "idle") == 1
    assert _state(text, "checkout#2", "idle") == 1
    assert _state(text, f"127.0.0.1:{redis_server.port}", "idle") == 1
    assert _state(text, "other", "idle") is None  # made without the dispatcher
    for client in (first, second, unnamed, outside):
        client.close()


def test_a_sentinel_pool_names_the_master_as_its_server(redis_server: RedisServer) -> None:
    """A Sentinel client's pool has no host of its own: its server is the master it hands out
    connections to."""
    workdir = tempfile.mkdtemp(prefix="rce-sentinel-")
    config = Path(workdir, "sentinel.conf")  # Sentinel rewrites its config file: a private one
    config.write_text(f"sentinel monitor main 127.0.0.1 {redis_server.port} 1\n")
    port = free_port()
    sentinel_server = RedisServer(port=port, workdir=workdir, build=build(), args=[
        str(config), "--sentinel", "--port", str(port), "--bind", "127.0.0.1"])
    sentinel_server.start()
    try:
        registry = _registry()
        client = Sentinel([("127.0.0.1", port)], socket_timeout=2).master_for(
            "main", client_name="orders")
        instrument(client.connection_pool, name="orders", registry=registry)
        assert _text(registry).count('redis_pool_info{client_name="orders",pool="orders",'
                                     'server=""}') == 1  # no server known yet
        assert client.ping()
        (labels, _), = values(_text(registry), "redis_pool_info", pool="orders")
        assert labels["server"] == f"127.0.0.1:{redis_server.port}"
        client.close()
    finally:
        sentinel_server.stop()
