"""What library mode costs an application: per get_connection + release, and per collect.

    python -m bench.pool_overhead --calls 20000 --pools 100

On a private redis-server: a bare BlockingConnectionPool and an instrumented one, each handing
out and taking back one connected connection, timed in interleaved rounds (median of the
per-round times, ns per get_connection + release); then a registry of `--pools` instrumented
pools, each with a connection, collected (`generate_latest`) repeatedly (ms per collect).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import redis
from prometheus_client import CollectorRegistry, generate_latest

from bench.processes import redis_server
from exporter.pools import instrument


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


def per_collect(port: int, pools: int, collects: int) -> tuple[float, int]:
    registry = CollectorRegistry()
    kept = []
    for index in range(pools):
        pool = redis.BlockingConnectionPool(host="127.0.0.1", port=port, max_connections=4,
                                            client_name=f"app-{index}")
        instrument(pool, name=f"app-{index}", registry=registry)
        pool.release(pool.get_connection())
        kept.append(pool)
    times = []
    for _ in range(collects):
        started = time.perf_counter()
        body = generate_latest(registry)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), len(body)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000, help="get/release per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--pools", type=int, default=100)
    parser.add_argument("--collects", type=int, default=50)
    options = parser.parse_args(argv)
    with redis_server(1000) as port:
        bare, wrapped = per_call(port, options.calls, options.rounds)
        collect_ms, body = per_collect(port, options.pools, options.collects)
    bare_ns, wrapped_ns = statistics.median(bare), statistics.median(wrapped)
    print("| measure | bare | instrumented | added |\n|---|---:|---:|---:|")
    print(f"| get_connection + release, ns (median of {options.rounds} rounds of "
          f"{options.calls:,}) | {bare_ns:,.0f} | {wrapped_ns:,.0f} | "
          f"{wrapped_ns - bare_ns:,.0f} ({wrapped_ns / bare_ns:.2f}x) |")
    print(f"| collect of {options.pools} pools (generate_latest), ms | | {collect_ms:.2f} "
          f"({body:,} bytes) | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
