"""Library mode under prometheus_client's multiprocess mode, with real worker processes: the
gauges are pushed from inside get_connection and release (`livesum` over live processes), and a
pool the application drops goes to 0 (a series cannot be removed there)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from tests.support.redis_server import RedisServer
from tests.support.scrape import value, wait_for

ROOT = Path(__file__).resolve().parent.parent


class Worker:
    def __init__(self, port: int, directory: Path) -> None:
        self.directory = directory
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.pool_worker", str(port)], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def do(self, command: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "ok", command

    def exit(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("exit\n")
        self.process.stdin.flush()
        self.process.wait(timeout=10)
        mark_process_dead(self.process.pid, path=str(self.directory))  # gunicorn's child_exit


def _scrape(directory: Path) -> str:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return generate_latest(registry).decode()


def _with_in_use(directory: Path, in_use: float) -> str | None:
    text = _scrape(directory)
    found = value(text, "redis_pool_connections", pool="jobs", state="in_use")
    return text if found == in_use else None


def test_pushed_pool_gauges_sum_over_live_workers_and_a_dropped_pool_goes_to_zero(
        redis_server: RedisServer, tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    workers = [Worker(redis_server.port, directory) for _ in range(2)]
    try:
        for worker in workers:
            worker.do("hold")
            worker.do("hold")
        text = _scrape(directory)
        assert value(text, "redis_pool_connections", pool="jobs", state="in_use") == 4
        assert value(text, "redis_pool_connections", pool="jobs", state="idle") == 0
        assert value(text, "redis_pool_max_connections", pool="jobs") == 10  # 5 per worker
        assert value(text, "redis_pool_connections_created_total", pool="jobs") == 4
        assert value(text, "redis_pool_info", pool="jobs", client_name="jobs",
                     server=f"127.0.0.1:{redis_server.port}") == 1
        workers[0].do("release")
        text = _scrape(directory)
        assert value(text, "redis_pool_connections", pool="jobs", state="in_use") == 3
        assert value(text, "redis_pool_connections", pool="jobs", state="idle") == 1
        workers[1].do("drop")  # the second worker's pool is collected: its gauges go to 0
        # (by the worker's reaper thread, just after the collection)
        text = str(wait_for(lambda: _with_in_use(directory, 1), timeout=5,
                            message="the dropped pool's gauges at 0"))
        assert value(text, "redis_pool_max_connections", pool="jobs") == 5
        workers[1].exit()
        text = _scrape(directory)
        assert value(text, "redis_pool_connections", pool="jobs", state="in_use") == 1
        assert value(text, "redis_pool_connections", pool="jobs", state="idle") == 1
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
            for stream in (worker.process.stdin, worker.process.stdout):
                if stream is not None:
                    stream.close()
