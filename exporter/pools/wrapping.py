"""Wrap a pool's public methods on the instance: waits, timeouts and created connections.

The wrappers hold a weak reference to the pool and the class's own functions, never a bound
method, so instrumenting adds no reference to the pool: it is freed, and leaves the registry,
when the application drops it (redis-py 8 pools hold reference cycles of their own, so that is
at the next garbage collection).
"""

from __future__ import annotations

import inspect
import time
import weakref
from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from exporter.pools.tracked import NO_CONNECTION_MESSAGES, TrackedPool

WRAPPED = ("get_connection", "release", "make_connection")


class Events:
    """What the wrappers report; the registry turns them into metrics."""

    def __init__(self, waited: Callable[[TrackedPool, float], None],
                 timed_out: Callable[[TrackedPool], None],
                 created: Callable[[TrackedPool], None],
                 changed: Callable[[TrackedPool], None]) -> None:
        self.waited, self.timed_out, self.created, self.changed = (waited, timed_out, created,
                                                                   changed)


def _pool(ref: weakref.ref[Any]) -> Any:
    pool = ref()
    if pool is None:  # only reachable through a method of the pool itself
        raise ReferenceError("the pool is gone")
    return pool


def wrap(pool: Any, tracked: TrackedPool, events: Events) -> None:
    """Instance attributes shadow the class's methods; `unwrap` removes them."""
    ref = weakref.ref(pool)
    cls = type(pool)
    get, release, make = cls.get_connection, cls.release, cls.make_connection

    def _failed(error: RedisConnectionError, started: float) -> None:
        events.waited(tracked, time.perf_counter() - started)
        if str(error) in NO_CONNECTION_MESSAGES:
            events.timed_out(tracked)

    def _got(connection: object, started: float) -> None:
        events.waited(tracked, time.perf_counter() - started)
        tracked.saw(connection)
        events.changed(tracked)

    if inspect.iscoroutinefunction(get):
        async def get_connection_async(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                connection = await get(_pool(ref), *args, **kwargs)
            except RedisConnectionError as error:
                _failed(error, started)
                raise
            _got(connection, started)
            return connection

        async def release_async(connection: Any) -> None:
            await release(_pool(ref), connection)
            events.changed(tracked)

        pool.get_connection, pool.release = get_connection_async, release_async
    else:
        def get_connection(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                connection = get(_pool(ref), *args, **kwargs)
            except RedisConnectionError as error:
                _failed(error, started)
                raise
            _got(connection, started)
            return connection

        def release_sync(connection: Any) -> None:
            release(_pool(ref), connection)
            events.changed(tracked)

        pool.get_connection, pool.release = get_connection, release_sync

    def make_connection(*args: Any, **kwargs: Any) -> Any:
        connection = make(_pool(ref), *args, **kwargs)
        events.created(tracked)
        return connection

    pool.make_connection = make_connection


def unwrap(pool: Any) -> None:
    for name in WRAPPED:
        pool.__dict__.pop(name, None)
