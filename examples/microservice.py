"""The seed's microservice, instrumented: one client made once (a singleton) and its pool.

    REDIS_URL=redis://localhost:6379 python3 examples/microservice.py --metrics-port 8000
    curl localhost:8000/metrics | grep redis_pool_

prometheus_client serves /metrics on its own port; the service's work loop uses the singleton.
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import redis
from prometheus_client import start_http_server

from exporter.pools import instrument


@functools.cache
def client() -> redis.Redis:
    """The service's one client: made on first use, instrumented once."""
    pool = redis.ConnectionPool.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379"),
                                         max_connections=8, client_name="orders")
    instrument(pool, name="orders")
    return redis.Redis(connection_pool=pool)


def handle(order: int) -> None:
    client().hset(f"example:order:{order}", mapping={"state": "paid"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--metrics-port", type=int, default=8000)
    parser.add_argument("--orders", type=int, default=0, help="0: forever")
    options = parser.parse_args()
    start_http_server(options.metrics_port, addr="127.0.0.1")
    order = 0
    while options.orders == 0 or order < options.orders:
        handle(order)
        order += 1
        time.sleep(0.01)
    print("READY", flush=True)  # all orders handled; metrics stay served until stopped
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
