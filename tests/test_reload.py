"""Hot reload: POST /-/reload (with --web.enable-lifecycle) and SIGHUP re-read the config file.

Real redis-servers; what changed is checked as Redis sees it (CLIENT LIST: which exporter
connections exist, and whether a kept target kept its connection) and on /metrics.
"""

from __future__ import annotations

import http.client
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.app import Exporter, WebSettings
from exporter.config.loader import load_config_file
from exporter.conn.connection import CLIENT_NAME
from tests.conftest import metrics_url
from tests.support.clients import RawClient
from tests.support.fake_resp2 import FakeRedis5
from tests.support.process import ExporterProcess
from tests.support.redis_server import RedisServer
from tests.support.scrape import fetch, value, values, wait_for

FAST = {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"}
RELOAD_OK = "redis_connection_exporter_config_last_reload_successful"
UP = "redis_up"

RedisFactory = Callable[..., RedisServer]


def write_config(path: Path, targets: dict[str, str], **extra: Any) -> None:
    raw: dict[str, Any] = {"poll": FAST, "defaults": {"connect_probe": {"enabled": False}},
                           "targets": [{"name": name, "url": url}
                                       for name, url in targets.items()]}
    raw.update(extra)
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")


def exporter_ids(port: int) -> list[str]:
    """Client ids of the exporter's connections to this server, from CLIENT LIST."""
    client = RawClient(port)
    try:
        text = client.call("CLIENT", "LIST").decode()
    finally:
        client.close()
    fields = [dict(token.split("=", 1) for token in line.split(" ") if "=" in token)
              for line in text.splitlines() if line]
    return [line["id"] for line in fields if line.get("name") == CLIENT_NAME]


def post(exporter_address: str, path: str = "/-/reload", method: str = "POST"
         ) -> tuple[int, str]:
    host, port = exporter_address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@pytest.fixture
def file_exporter(tmp_path: Path, exporter_factory: Callable[..., Exporter]
                  ) -> Callable[..., Exporter]:
    """An in-process exporter that reads `tmp_path/config.yaml`, lifecycle API on."""
    path = str(tmp_path / "config.yaml")

    def make(lifecycle: bool = True) -> Exporter:
        return exporter_factory(load_config_file(path),
                                web=WebSettings("127.0.0.1:0", enable_lifecycle=lifecycle),
                                loader=lambda: load_config_file(path))
    return make


def up_targets(exporter: Exporter) -> dict[str, float]:
    return {labels["target"]: number for labels, number in values(fetch(metrics_url(exporter)),
                                                                    UP)}


def test_reload_adds_removes_and_keeps_targets(
        tmp_path: Path, redis_factory: RedisFactory,
        file_exporter: Callable[..., Exporter]) -> None:
    kept_server, removed_server, added_server = (redis_factory() for _ in range(3))
    path = tmp_path / "config.yaml"
    write_config(path, {"kept": kept_server.url, "removed": removed_server.url})
    exporter = file_exporter()
    wait_for(lambda: up_targets(exporter) == {"kept": 1.0, "removed": 1.0},
             message="both targets up")
    kept_id = exporter_ids(kept_server.port)
    assert len(kept_id) == 1 and len(exporter_ids(removed_server.port)) == 1

    write_config(path, {"kept": kept_server.url, "added": added_server.url})
    status, body = post(exporter.bound_address())
    assert (status, body) == (200, "")

    wait_for(lambda: up_targets(exporter) == {"kept": 1.0, "added": 1.0},
             message="the added target up, the removed one gone")
    text = fetch(metrics_url(exporter))
    assert 'target="removed"' not in text  # every series of a removed target disappears
    assert value(text, RELOAD_OK) == 1
    assert exporter_ids(removed_server.port) == []  # its pool is closed
    assert exporter_ids(kept_server.port) == kept_id  # the unchanged target kept its connection
    assert len(exporter_ids(added_server.port)) == 1


def test_changed_target_is_restarted_with_its_new_settings(
        tmp_path: Path, redis_factory: RedisFactory,
        file_exporter: Callable[..., Exporter]) -> None:
    first, second = redis_factory(), redis_factory()
    path = tmp_path / "config.yaml"
    write_config(path, {"cache": first.url})
    exporter = file_exporter()
    wait_for(lambda: up_targets(exporter) == {"cache": 1.0}, message="cache up")

    write_config(path, {"cache": second.url})  # same name, another server
    assert post(exporter.bound_address())[0] == 200
    wait_for(lambda: len(exporter_ids(second.port)) == 1, message="polling the new server")
    assert exporter_ids(first.port) == []


def test_bad_file_is_rejected_as_a_whole_and_the_old_config_keeps_running(
        tmp_path: Path, redis_factory: RedisFactory, file_exporter: Callable[..., Exporter],
        caplog: pytest.LogCaptureFixture) -> None:
    server, other = redis_factory(), redis_factory()
    path = tmp_path / "config.yaml"
    write_config(path, {"cache": server.url})
    exporter = file_exporter()
    wait_for(lambda: up_targets(exporter) == {"cache": 1.0}, message="cache up")
    connection = exporter_ids(server.port)

    # One good change (a new target) and two errors: nothing of it may be applied.
    raw = {"poll": {**FAST, "interval": "soon"},
           "targets": [{"name": "cache", "url": server.url},
                       {"name": "other", "url": other.url, "bogus": 1}]}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    status, body = post(exporter.bound_address())

    assert status == 500
    assert "poll.interval" in body and "targets[1].bogus" in body
    text = fetch(metrics_url(exporter))
    assert value(text, RELOAD_OK) == 0
    assert up_targets(exporter) == {"cache": 1.0}
    assert exporter_ids(server.port) == connection and exporter_ids(other.port) == []
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "poll.interval" in logged and "targets[1].bogus" in logged

    write_config(path, {"cache": server.url})  # fixed: the gauge comes back
    assert post(exporter.bound_address()) == (200, "")
    assert value(fetch(metrics_url(exporter)), RELOAD_OK) == 1


def test_lifecycle_api_is_off_by_default_and_post_only(
        tmp_path: Path, redis_factory: RedisFactory,
        file_exporter: Callable[..., Exporter]) -> None:
    write_config(tmp_path / "config.yaml", {"cache": redis_factory().url})
    closed = file_exporter(lifecycle=False)
    assert post(closed.bound_address())[0] == 403
    opened = file_exporter(lifecycle=True)
    assert post(opened.bound_address(), method="GET")[0] == 405
    assert post(opened.bound_address(), method="PUT") == (200, "")
    assert post(opened.bound_address(), path="/-/other")[0] == 404


def test_sighup_reloads_a_running_process(tmp_path: Path, redis_factory: RedisFactory) -> None:
    first, second = redis_factory(), redis_factory()
    path = tmp_path / "config.yaml"
    write_config(path, {"first": first.url})
    proc = ExporterProcess.serving(str(path))
    try:
        url = f"{proc.base}/metrics"
        wait_for(lambda: value(fetch(url), UP, target="first") == 1, message="first up")
        write_config(path, {"first": first.url, "second": second.url})
        proc.signal(signal.SIGHUP)
        wait_for(lambda: value(fetch(url), UP, target="second") == 1,
                 message="second target polled after SIGHUP")
        assert value(fetch(url), RELOAD_OK) == 1
        proc.signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        stderr = proc.finish()
    assert "reloaded" in stderr and "Traceback" not in stderr


def test_a_reload_does_not_wait_for_the_polls_of_the_targets_it_keeps(
        tmp_path: Path, redis_factory: RedisFactory,
        file_exporter: Callable[..., Exporter]) -> None:
    """A reload is applied as added and removed targets: the kept ones are not drained, so a
    slow poll in flight neither delays the reload nor loses its connection."""
    added = redis_factory()
    path = tmp_path / "config.yaml"
    with FakeRedis5(reply_delay=0.5) as slow:  # each reply 0.5 s late: a poll takes ~2.5 s
        write_config(path, {"slow": slow.url}, poll={"interval": "30s", "timeout": "10s"})
        exporter = file_exporter()
        wait_for(lambda: any(command[0] == "INFO" for record in slow.connections()
                             for command in slow.commands(record)),
                 message="the slow target's first poll in flight")
        write_config(path, {"slow": slow.url, "added": added.url},
                     poll={"interval": "30s", "timeout": "10s"})
        started = time.monotonic()
        status, _ = post(exporter.bound_address())
        took = time.monotonic() - started
        assert status == 200
        assert took < 1.0, f"the reload waited {took:.1f}s for a kept target's poll"
        wait_for(lambda: up_targets(exporter) == {"slow": 1.0, "added": 1.0},
                 message="both targets up")
        assert len(slow.connections()) == 1  # the kept target kept its one connection


def test_a_client_list_change_keeps_connections_and_churn_counters(
        tmp_path: Path, redis_factory: RedisFactory,
        file_exporter: Callable[..., Exporter]) -> None:
    """max_groups and name_rewrite apply to the running pollers: no reconnect, and the
    opened counters go on from where they were (a poll change restarts every target)."""
    server = redis_factory()
    path = tmp_path / "config.yaml"
    write_config(path, {"cache": server.url})
    exporter = file_exporter()
    opened = "redis_client_connections_opened_total"
    wait_for(lambda: values(fetch(metrics_url(exporter)), opened), message="a baseline")
    held = [RawClient(server.port) for _ in range(3)]
    try:
        wait_for(lambda: sum(val for _, val in values(fetch(metrics_url(exporter)), opened))
                 >= 3, message="three connections opened since the baseline")
        before = sum(val for _, val in values(fetch(metrics_url(exporter)), opened))
        ids = exporter_ids(server.port)
        write_config(path, {"cache": server.url}, client_list={"max_groups": 5})
        assert post(exporter.bound_address()) == (200, "")
        wait_for(lambda: values(fetch(metrics_url(exporter)), "redis_client_connections"),
                 message="groups again after the reload")
        after = sum(val for _, val in values(fetch(metrics_url(exporter)), opened))
        assert after >= before, "the counters were reset"
        assert exporter_ids(server.port) == ids  # the same connection
    finally:
        for client in held:
            client.close()
