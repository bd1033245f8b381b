"""The library-mode examples (examples/): each runs as its README line says, against a real
Redis, and its metrics show its instrumented pool."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.redis_server import RedisServer, free_port
from tests.support.scrape import value, wait_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _env(server: RedisServer) -> dict[str, str]:
    env = {key: val for key, val in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    env["REDIS_URL"] = server.url
    return env


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _answers(url: str) -> bool:
    try:
        return _get(url).startswith("visits:")
    except OSError:  # not listening yet
        return False


def test_the_flask_app_shows_its_pool(redis_server: RedisServer) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "flask_app.py"), "--port",
                             str(port)], env=_env(redis_server), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/visit"), timeout=20,
                 message="the app answers")
        for _ in range(5):
            _get(f"{base}/visit")
        text = _get(f"{base}/metrics")
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    assert value(text, "redis_pool_max_connections", pool="web") == 10
    assert value(text, "redis_pool_connections", pool="web", state="in_use") == 0
    assert (value(text, "redis_pool_wait_seconds_count", pool="web") or 0) >= 6
    assert value(text, "redis_pool_info", pool="web", client_name="web",
                 server=f"127.0.0.1:{redis_server.port}") == 1


def test_the_background_jobs_sum_their_workers_pools(redis_server: RedisServer,
                                                     tmp_path: Path) -> None:
    env = {**_env(redis_server), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, str(EXAMPLES / "background_jobs.py"), "--jobs",
                             "50", "--workers", "2"], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    # 4 per live worker that made its pool: a worker that got no job may not have started.
    assert value(text, "redis_pool_max_connections", pool="jobs") in (4, 8)
    assert value(text, "redis_pool_connections", pool="jobs", state="in_use") == 0
    created = value(text, "redis_pool_connections_created_total", pool="jobs")
    assert created is not None and 1 <= created <= 8  # a worker may get no job at all
    assert value(text, "redis_pool_wait_seconds_count", pool="jobs") == 50
    assert "# 50 jobs done" in result.stderr


def test_the_microservice_singleton_shows_its_pool(redis_server: RedisServer) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "microservice.py"), "--metrics-port",
                             str(port), "--orders", "20"], env=_env(redis_server),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        text = _get(f"http://127.0.0.1:{port}/metrics")
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    assert value(text, "redis_pool_max_connections", pool="orders") == 8
    assert value(text, "redis_pool_connections", pool="orders", state="idle") == 1
    assert value(text, "redis_pool_connections_created_total", pool="orders") == 1
    assert value(text, "redis_pool_wait_seconds_count", pool="orders") == 20
