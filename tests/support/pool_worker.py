"""A worker process of an application in prometheus_client's multiprocess mode (as gunicorn
workers or a multiprocessing pool are): one instrumented pool, driven line by line on stdin.

    python -m tests.support.pool_worker PORT      (PROMETHEUS_MULTIPROC_DIR set)
    hold | release | drop | exit                  -> prints "ok" after each
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import redis

from exporter.pools import instrument


def main() -> None:
    pool: Any = redis.BlockingConnectionPool(host="127.0.0.1", port=int(sys.argv[1]),
                                             max_connections=5, timeout=1, client_name="jobs")
    instrument(pool, name="jobs")
    held: list[Any] = []
    for line in sys.stdin:
        command = line.strip()
        if command == "hold":
            held.append(pool.get_connection())
        elif command == "release":
            pool.release(held.pop())
        elif command == "drop":  # the application lets go of its pool
            while held:
                pool.release(held.pop())
            pool.disconnect()
            pool = None
            gc.collect()
        elif command == "exit":
            break
        print("ok", flush=True)


if __name__ == "__main__":
    main()
