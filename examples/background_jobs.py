"""The seed's background jobs, instrumented: a multiprocessing pool of workers, each with its
own redis-py pool, in prometheus_client's multiprocess mode.

    REDIS_URL=redis://localhost:6379 python3 examples/background_jobs.py --jobs 100

Each worker process makes its pool after it starts (a pool must not cross a fork) and
instruments it as `jobs`; the gauges are pushed from inside get_connection and release and add
up over the live workers. At the end the parent prints what a scrape of the workers' metrics
shows (serve it with MultiProcessCollector in a real deployment).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
from typing import Any

import redis

# prometheus_client picks its multiprocess mode when it is imported, so it (and exporter.pools,
# which imports it) is imported only once PROMETHEUS_MULTIPROC_DIR is set.
_pool: Any = None


def _start_worker(url: str) -> None:
    global _pool  # one pool per worker process, made after the fork
    from exporter.pools import instrument  # noqa: PLC0415 (see above)
    _pool = redis.BlockingConnectionPool.from_url(url, max_connections=4, client_name="jobs")
    instrument(_pool, name="jobs")


def job(number: int) -> int:
    client = redis.Redis(connection_pool=_pool)
    return int(client.rpush("example:jobs", number))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    directory = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR",
                                      tempfile.mkdtemp(prefix="jobs-metrics-"))
    url = os.environ.get("REDIS_URL", "redis://localhost:6379")
    context = multiprocessing.get_context("spawn")
    with context.Pool(options.workers, initializer=_start_worker, initargs=(url,)) as workers:
        done = workers.map(job, range(options.jobs))
        from prometheus_client import CollectorRegistry, generate_latest  # noqa: PLC0415
        from prometheus_client.multiprocess import MultiProcessCollector  # noqa: PLC0415
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        sys.stdout.write(generate_latest(registry).decode())
    print(f"# {len(done)} jobs done", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
