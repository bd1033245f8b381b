"""Credential rotation without a restart: a changed password_file re-AUTHs the held connection
in place (Redis counts the AUTH, the connection id stays), and reconnects use the new password.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.app import Exporter
from exporter.config.loader import build_config
from exporter.conn.connection import CLIENT_NAME
from tests.conftest import metrics_url
from tests.support.clients import RawClient, commandstats
from tests.support.redis_server import RedisServer
from tests.support.scrape import fetch, value, wait_for

FAST = {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"}
CREATED = "redis_connection_exporter_pool_connections_created_total"


def admin_call(server: RedisServer, password: str, *args: str) -> bytes:
    client = RawClient(server.port)
    try:
        assert client.call("AUTH", password) == b"+OK"
        return client.call(*args)
    finally:
        client.close()


def exporter_id(server: RedisServer, password: str) -> str:
    text = admin_call(server, password, "CLIENT", "LIST").decode()
    ids = [fields["id"] for fields in (
        dict(token.split("=", 1) for token in line.split(" ") if "=" in token)
        for line in text.splitlines() if line) if fields.get("name") == CLIENT_NAME]
    assert len(ids) == 1, text
    return ids[0]


def auth_calls(server: RedisServer, password: str) -> int:
    return commandstats(server.port, password).get("auth", 0)


def start(exporter_factory: Callable[..., Exporter], redis_factory: Callable[..., RedisServer],
          tmp_path: Path, password: str) -> tuple[RedisServer, Path, str]:
    """A server with `password`, the same in a password_file, and an exporter polling it."""
    server = redis_factory(password=password)
    secret = tmp_path / "password"
    secret.write_text(f"{password}\n")
    exporter = exporter_factory({
        "poll": FAST, "defaults": {"connect_probe": {"enabled": False}},
        "targets": [{"name": "cache", "url": server.url, "password_file": str(secret)}]})
    url = metrics_url(exporter)
    wait_for(lambda: value(fetch(url), "redis_up", target="cache") == 1, message="cache up")
    return server, secret, url


def wait_logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    wait_for(lambda: any(text in record.getMessage() for record in caplog.records),
             message=f"log line {text!r}")


def test_changed_password_file_reauths_in_place_and_reconnects_with_it(
        tmp_path: Path, redis_factory: Callable[..., RedisServer],
        exporter_factory: Callable[..., Exporter], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    server, secret, url = start(exporter_factory, redis_factory, tmp_path, "old-secret")
    held = exporter_id(server, "old-secret")
    auths = auth_calls(server, "old-secret")

    # The server rotates first (held connections stay authenticated), then the file.
    admin_call(server, "old-secret", "CONFIG", "SET", "requirepass", "new-secret")
    secret.write_text("new-secret\n")
    wait_logged(caplog, "credentials rotated in place")
    assert exporter_id(server, "new-secret") == held  # the same connection, no reconnect
    assert auth_calls(server, "new-secret") >= auths + 1
    assert value(fetch(url), "redis_up", target="cache") == 1

    # A reconnect (the held connection killed) must authenticate with the new password.
    created = value(fetch(url), CREATED, target="cache") or 0
    admin_call(server, "new-secret", "CLIENT", "KILL", "ID", held)
    wait_for(lambda: (value(fetch(url), CREATED, target="cache") or 0) > created
             and value(fetch(url), "redis_up", target="cache") == 1,
             message="reconnected with the new password")
    assert exporter_id(server, "new-secret") != held
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "new-secret" not in logged and "old-secret" not in logged


def test_a_password_the_server_refuses_keeps_the_held_connection_until_it_is_accepted(
        tmp_path: Path, redis_factory: Callable[..., RedisServer],
        exporter_factory: Callable[..., Exporter], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    server, secret, url = start(exporter_factory, redis_factory, tmp_path, "current")
    held = exporter_id(server, "current")

    secret.write_text("next\n")  # the file changes before the server does
    wait_logged(caplog, "new password not accepted yet")
    for _ in range(3):  # the held connection keeps polling with its old authentication
        wait_for(lambda: value(fetch(url), "redis_up", target="cache") == 1, message="up")
    refusals = [r for r in caplog.records if "new password not accepted yet" in r.getMessage()]
    assert len(refusals) == 1  # once per new password, not once per poll
    assert "kind=auth" in refusals[0].getMessage()

    admin_call(server, "current", "CONFIG", "SET", "requirepass", "next")
    wait_logged(caplog, "credentials rotated in place")
    assert exporter_id(server, "next") == held


def test_reload_with_a_new_password_reauths_in_place_and_probes_use_it(
        redis_factory: Callable[..., RedisServer], exporter_factory: Callable[..., Exporter],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    server = redis_factory(password="before")
    raw = {"poll": FAST, "defaults": {"connect_probe": {"enabled": True, "interval": "1s"}},
           "targets": [{"name": "cache", "url": server.url, "password_env": "CACHE_PW"}]}
    env = {"CACHE_PW": "before"}
    exporter = exporter_factory(build_config(raw, env=env),
                                loader=lambda: build_config(raw, env=env))
    url = metrics_url(exporter)
    wait_for(lambda: value(fetch(url), "redis_up", target="cache") == 1, message="cache up")
    held = exporter_id(server, "before")

    admin_call(server, "before", "CONFIG", "SET", "requirepass", "after")
    env["CACHE_PW"] = "after"
    assert exporter.reload() == []
    wait_logged(caplog, "credentials rotated in place")
    assert exporter_id(server, "after") == held  # kept poller, kept connection
    # A probe between the server's change and the reload fails with `auth`, rightly; after
    # the reload, new connections must authenticate with "after": no further auth errors.
    errors = "redis_connection_exporter_poll_errors_total"
    before = value(fetch(url), errors, target="cache", step="probe", kind="auth") or 0
    time.sleep(2.5)  # two probe intervals
    text = fetch(url)
    assert value(text, "redis_connection_exporter_connect_probe_success", target="cache") == 1
    assert (value(text, errors, target="cache", step="probe", kind="auth") or 0) == before
