"""Load and soak, bounded and on loopback: the exporter as a real process, Redis as real
servers, the scrapers in a separate process.

SOAK_SECONDS (default 60) sets the length of the load run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.support.clients import RawClient
from tests.support.process import ROOT, ExporterProcess
from tests.support.redis_server import RedisServer
from tests.support.scrape import fetch, value, values, wait_for

RedisFactory = Callable[..., RedisServer]
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
LAST_SUCCESS = "redis_connection_exporter_last_poll_success_timestamp_seconds"


def write_config(path: Path, targets: dict[str, str], interval: str, probe: bool = True
                 ) -> None:
    raw = {"poll": {"interval": interval, "client_list_interval": interval, "timeout": "1s"},
           "defaults": {"connect_probe": {"enabled": probe}},
           "targets": [{"name": name, "url": url} for name, url in targets.items()]}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")


def oldest_poll_age(text: str) -> float:
    """Seconds since the least recent successful INFO among all targets."""
    stamps = [stamp for _, stamp in values(text, LAST_SUCCESS, step="info")]
    return time.time() - min(stamps)


def test_200_scrapers_for_a_minute_while_polling_50_targets(
        tmp_path: Path, redis_factory: RedisFactory) -> None:
    servers = [redis_factory(), redis_factory()]
    targets = {f"t{index:02d}": servers[index % 2].url for index in range(50)}
    interval = 5.0
    config = tmp_path / "config.yaml"
    write_config(config, targets, "5s")
    proc = ExporterProcess.serving(str(config))
    try:
        url = f"{proc.base}/metrics"
        wait_for(lambda: sum(v for _, v in values(fetch(url), "redis_up")) == 50,
                 timeout=30, message="all 50 targets up")
        load = subprocess.Popen(
            [sys.executable, "-m", "tests.support.load_metrics", "--url", url,
             "--clients", "200", "--seconds", str(SOAK_SECONDS)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        worst_age = 0.0
        try:
            deadline = time.monotonic() + SOAK_SECONDS
            while time.monotonic() < deadline:
                worst_age = max(worst_age, oldest_poll_age(fetch(url, timeout=10)))
                time.sleep(1.0)
            out, err = load.communicate(timeout=SOAK_SECONDS + 60)
        finally:
            if load.poll() is None:
                load.kill()
                load.communicate()
        result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        assert result, f"load generator printed nothing: {err[-2000:]}"
        print("load result", result, "oldest poll age", round(worst_age, 2))
        assert result["requests"] > 1000, result
        assert result["errors"] == 0, result
        assert result["p99"] < 1.0, result
        # "Late by more than one interval": an INFO success older than two intervals.
        assert worst_age < 2 * interval, f"a poll was late: oldest success {worst_age:.1f}s"
        assert value(fetch(url), "redis_up", target="t49") == 1
    finally:
        stderr = proc.finish()
    assert "Traceback" not in stderr


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def exporter_connections(port: int) -> int:
    """Connections named by the exporter on this server (CLIENT LIST, as Redis sees them)."""
    client = RawClient(port)
    try:
        return client.call("CLIENT", "LIST").count(b"name=redis-connection-exporter ")
    finally:
        client.close()


def churn(port: int, connections: int) -> None:
    """Connect, name (a distinct name each time) and close, `connections` times."""
    for index in range(connections):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            name = f"churn-{index}".encode()
            sock.sendall(b"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$%d\r\n%s\r\n"
                         % (len(name), name))
            sock.recv(64)


def test_churn_and_restarts_leak_no_memory_fds_or_connections(
        tmp_path: Path, redis_factory: RedisFactory) -> None:
    server = redis_factory()
    targets = {f"t{index}": server.url for index in range(5)}
    config = tmp_path / "config.yaml"
    write_config(config, targets, "1s", probe=False)  # probes would show up in CLIENT LIST
    proc = ExporterProcess.serving(str(config))
    try:
        assert proc.process is not None
        pid, url = proc.process.pid, f"{proc.base}/metrics"

        def all_up() -> bool:
            return sum(v for _, v in values(fetch(url), "redis_up")) == 5

        wait_for(all_up, timeout=30, message="all targets up")
        churn(server.port, 1000)  # warm-up: caches and buffers reach their working size
        time.sleep(2)
        start_rss, start_fds = rss_mb(pid), open_fds(pid)
        assert exporter_connections(server.port) == 5

        churn(server.port, 10_000)
        for _ in range(3):  # Redis restarts: every target goes down and comes back
            server.stop()
            wait_for(lambda: sum(v for _, v in values(fetch(url), "redis_up")) == 0,
                     timeout=30, message="targets down while Redis is stopped")
            server.start()
            wait_for(all_up, timeout=60, message="targets back after the restart")
        time.sleep(3)

        end_rss, end_fds = rss_mb(pid), open_fds(pid)
        assert exporter_connections(server.port) == 5, "a pool leaked or lost a connection"
        assert end_fds <= start_fds + 2, f"file descriptors {start_fds} -> {end_fds}"
        assert end_rss <= start_rss + 10, f"RSS {start_rss:.1f} -> {end_rss:.1f} MB"
    finally:
        stderr = proc.finish()
    assert "Traceback" not in stderr
