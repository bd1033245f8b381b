"""The exporter as a process: HTTP endpoints, clean stop on SIGTERM/SIGINT, exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from tests.support.clients import RawClient, commandstats
from tests.support.process import ExporterProcess
from tests.support.redis_server import RedisServer
from tests.support.scrape import fetch, value, wait_for

NAME = "redis-connection-exporter"


def _exporter_connections(server: RedisServer) -> int:
    observer = RawClient(server.port)
    try:
        listing = observer.call("CLIENT", "LIST").decode()
    finally:
        observer.close()
    return sum(1 for line in listing.splitlines() if f" name={NAME} " in line)


def _config(tmp_path: os.PathLike[str], server: RedisServer, probe: bool = True,
            interval: str = "1s") -> str:
    path = os.path.join(tmp_path, "config.yaml")
    with open(path, "w") as handle:
        handle.write(
            f"poll: {{interval: {interval}, client_list_interval: {interval}, "
            f"timeout: {interval}}}\n"
            f"defaults: {{connect_probe: {{enabled: {str(probe).lower()}, interval: 1s}}}}\n"
            f"targets:\n  - {{name: main, url: 'redis://127.0.0.1:{server.port}'}}\n")
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stops_within_three_seconds_and_closes_every_connection(
        redis_server: RedisServer, tmp_path: os.PathLike[str], signum: int) -> None:
    proc = ExporterProcess.serving(_config(tmp_path, redis_server))
    base = proc.base
    try:
        wait_for(lambda: value(fetch(f"{base}/metrics"), "redis_up", target="main") == 1,
                 message="first poll")
        assert fetch(f"{base}/-/healthy").strip() == "Healthy"
        landing = fetch(f"{base}/")
        assert "redis-connection-exporter" in landing and "main" in landing
        assert 'href="/metrics"' in landing
        assert _exporter_connections(redis_server) == 1
        started = time.monotonic()
        proc.signal(signum)
        code = proc.wait(timeout=5)
        elapsed = time.monotonic() - started
    finally:
        stderr = proc.finish()
    assert code == 0, stderr
    assert elapsed < 3.0
    assert "Traceback" not in stderr
    assert _exporter_connections(redis_server) == 0


def test_sigterm_during_a_stalled_poll_still_exits_quickly(
        redis_factory: Callable[..., RedisServer], tmp_path: os.PathLike[str]) -> None:
    redis_server = redis_factory(extra_args=["--enable-debug-command", "yes"])
    proc = ExporterProcess.serving(_config(tmp_path, redis_server, probe=False,
                                                     interval="2s"))
    base = proc.base
    staller = RawClient(redis_server.port, timeout=15)
    try:
        wait_for(lambda: value(fetch(f"{base}/metrics"), "redis_up", target="main") == 1,
                 message="first poll")
        staller.send("DEBUG", "SLEEP", 10)  # Redis stalls; polls hang until their deadline

        def timed_out() -> bool:
            return bool(value(fetch(f"{base}/metrics"),
                              "redis_connection_exporter_poll_errors_total", target="main",
                              step="info", kind="timeout"))

        wait_for(timed_out, timeout=8, interval=0.05, message="a poll timing out")
        # The retry starts 2s (interval x 2^0) after that failure and hangs for up to 2s:
        # half a second in, it is certainly in flight.
        time.sleep(2.5)
        started = time.monotonic()
        proc.signal(signal.SIGTERM)
        code = proc.wait(timeout=5)
        elapsed = time.monotonic() - started
    finally:
        stderr = proc.finish()
        staller.close()
    assert code == 0, stderr
    assert elapsed < 3.0
    assert "Traceback" not in stderr


def test_listen_failure_exits_1(redis_server: RedisServer, tmp_path: os.PathLike[str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = ExporterProcess(["--config.file", _config(tmp_path, redis_server),
                                "--web.listen-address", f"127.0.0.1:{port}"])
        proc.start()
        code = proc.wait(timeout=10)
        stderr = proc.finish()
    assert code == 1
    assert "cannot listen" in stderr and "Traceback" not in stderr


def test_unknown_path_is_404(redis_server: RedisServer, tmp_path: os.PathLike[str]) -> None:
    proc = ExporterProcess.serving(_config(tmp_path, redis_server))
    base = proc.base
    try:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{base}/nope", timeout=5)
        assert caught.value.code == 404
        caught.value.close()
    finally:
        proc.signal(signal.SIGTERM)
        proc.wait(timeout=5)
        proc.finish()


def test_json_logs_are_one_object_per_line(redis_server: RedisServer,
                                           tmp_path: os.PathLike[str]) -> None:
    proc = ExporterProcess.serving(_config(tmp_path, redis_server), "--log.format", "json")
    base = proc.base
    try:
        wait_for(lambda: value(fetch(f"{base}/metrics"), "redis_up", target="main") == 1,
                 message="first poll")
    finally:
        proc.signal(signal.SIGTERM)
        proc.wait(timeout=5)
        stderr = proc.finish()
    entries = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert entries
    assert all({"ts", "level", "msg", "caller"} <= set(entry) for entry in entries)
    up = [entry for entry in entries if entry["msg"] == "target is up"]
    assert up and up[0]["target"] == "main" and up[0]["level"] == "info"


def test_a_config_with_only_a_two_second_interval_starts_and_polls_every_two_seconds(
        redis_server: RedisServer, tmp_path: os.PathLike[str]) -> None:
    """`poll: {interval: 2s}` alone: the unset timeout follows the interval (as Prometheus'
    scrape_timeout does) instead of refusing the file over a key the user never wrote."""
    path = os.path.join(tmp_path, "config.yaml")
    with open(path, "w") as handle:
        handle.write("poll: {interval: 2s}\ndefaults: {connect_probe: {enabled: false}}\n"
                     f"targets:\n  - {{name: main, url: 'redis://127.0.0.1:{redis_server.port}'}}\n")
    proc = ExporterProcess.serving(path)
    try:
        wait_for(lambda: value(fetch(f"{proc.base}/metrics"), "redis_up", target="main") == 1,
                 message="first poll")
        before = commandstats(redis_server.port).get("info", 0)
        time.sleep(7.0)
        # Each reading is one INFO of ours; the exporter sends one INFO per poll.
        polls = commandstats(redis_server.port).get("info", 0) - before - 1
    finally:
        stderr = proc.finish()
    assert "Traceback" not in stderr
    assert 3 <= polls <= 4, polls
