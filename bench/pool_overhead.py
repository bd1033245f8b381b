"""What library mode costs an application: per get_connection + release, and per collect.

    python -m bench.pool_overhead --calls 20000 --pools 100

On a private redis-server: a bare BlockingConnectionPool and an instrumented one, each handing
out and taking back one connected connection, timed in interleaved rounds (median of the
per-round times, ns per get_connection + release); then a registry of `--pools` instrumented
pools, each with a connection, collected (`generate_latest`) repeatedly (ms per collect),
interleaved with the same families for the same pools as plain prometheus_client metrics set by
hand (what an application writes itself: the part of a collect that is exposition, not ours).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bench.processes import redis_server
from exporter.pools import instrument
from exporter.pools.registry import WAIT_BUCKETS


def _cycle(pool: Any, calls: int) -> float:
    """ns per get_connection + release."""
    started = time.perf_counter_ns()
    for _ in range(calls):
        pool.release(pool.get_connection())
    return (time.perf_counter_ns() - started) / calls


def per_call(port: int, calls: int, rounds: int) -> tuple[list[float], list[float]]:
    def make() -> Any:
        pool = redis.BlockingConnectionPool(host="127.0.0.1", port=port, max_connections=4)
        pool.release(pool.get_connection())  # connected: the loop measures the pool alone
        return pool

    bare, wrapped = make(), make()
    instrument(wrapped, name="bench", registry=CollectorRegistry())
    bare_ns, wrapped_ns = [], []
    for _ in range(rounds):
        bare_ns.append(_cycle(bare, calls))
        wrapped_ns.append(_cycle(wrapped, calls))
    return bare_ns, wrapped_ns


def hand_rolled(pools: int, port: int) -> CollectorRegistry:
    """The same families and series for `pools` pools, as plain metrics an application sets."""
    registry = CollectorRegistry()
    connections = Gauge("redis_pool_connections", "c", ["pool", "state"], registry=registry)
    maximum = Gauge("redis_pool_max_connections", "m", ["pool"], registry=registry)
    wait = Histogram("redis_pool_wait_seconds", "w", ["pool"], buckets=WAIT_BUCKETS,
                     registry=registry)
    timeouts = Counter("redis_pool_wait_timeouts", "t", ["pool"], registry=registry)
    created = Counter("redis_pool_connections_created", "n", ["pool"], registry=registry)
    info = Gauge("redis_pool_info", "i", ["pool", "client_name", "server"], registry=registry)
    for index in range(pools):
        name = f"app-{index}"
        connections.labels(name, "idle").set(1)
        connections.labels(name, "in_use").set(0)
        maximum.labels(name).set(4)
        wait.labels(name).observe(0.0001)
        timeouts.labels(name)
        created.labels(name).inc()
        info.labels(name, name, f"127.0.0.1:{port}").set(1)
    return registry


def _timed_ms(registry: CollectorRegistry) -> tuple[float, int]:
    started = time.perf_counter()
    body = generate_latest(registry)
    return (time.perf_counter() - started) * 1000, len(body)


def per_collect(port: int, pools: int, collects: int) -> tuple[float, int, float, int]:
    """(ms, bytes) per collect of `pools` instrumented pools, then of the hand-rolled twin."""
    registry = CollectorRegistry()
    kept = []
    for index in range(pools):
        pool = redis.BlockingConnectionPool(host="127.0.0.1", port=port, max_connections=4,
                                            client_name=f"app-{index}")
        instrument(pool, name=f"app-{index}", registry=registry)
        pool.release(pool.get_connection())
        kept.append(pool)
    plain = hand_rolled(pools, port)
    ours, theirs = [], []
    for _ in range(collects):
        ours.append(_timed_ms(registry))
        theirs.append(_timed_ms(plain))
    return (statistics.median(t for t, _ in ours), ours[-1][1],
            statistics.median(t for t, _ in theirs), theirs[-1][1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000, help="get/release per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--pools", type=int, default=100)
    parser.add_argument("--collects", type=int, default=50)
    options = parser.parse_args(argv)
    with redis_server(1000) as port:
        bare, wrapped = per_call(port, options.calls, options.rounds)
        collect_ms, body, plain_ms, plain_body = per_collect(port, options.pools,
                                                             options.collects)
    bare_ns, wrapped_ns = statistics.median(bare), statistics.median(wrapped)
    print("| measure | bare | instrumented | added |\n|---|---:|---:|---:|")
    print(f"| get_connection + release, ns (median of {options.rounds} rounds of "
          f"{options.calls:,}) | {bare_ns:,.0f} | {wrapped_ns:,.0f} | "
          f"{wrapped_ns - bare_ns:,.0f} ({wrapped_ns / bare_ns:.2f}x) |")
    print(f"| collect of {options.pools} pools (generate_latest), ms; bare: the same series "
          f"as plain metrics set by hand | {plain_ms:.2f} ({plain_body:,} bytes) | "
          f"{collect_ms:.2f} ({body:,} bytes) | {collect_ms - plain_ms:.2f} "
          f"({collect_ms / plain_ms:.2f}x) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
