"""Faults inside one poll step: slow replies, a connection cut mid-pipeline, a refused
handshake, a killed connection. The deadline holds and nothing half-set-up is reused."""

from __future__ import annotations

from collections.abc import Callable

from exporter.app import Exporter
from tests.conftest import metrics_url
from tests.support.clients import RawClient
from tests.support.fake_resp2 import FakeRedis5
from tests.support.redis_server import RedisServer
from tests.support.scrape import fetch, value, values, wait_for, wait_for_value

FAST = {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"}
NO_PROBE = {"connect_probe": {"enabled": False}}


def _exporter_line(port: int) -> str | None:
    observer = RawClient(port)
    try:
        lines = observer.call("CLIENT", "LIST").decode().splitlines()
    finally:
        observer.close()
    mine = [line for line in lines if " name=redis-connection-exporter " in line]
    return mine[0] if len(mine) == 1 else None


def test_the_deadline_bounds_a_whole_step_of_slow_replies(
        exporter_factory: Callable[..., Exporter]) -> None:
    # Each reply takes 0.6s: the handshake alone (AUTH, SETNAME, SELECT) takes 1.8s, past
    # the 1s deadline, and every single read stays under the socket timeout.
    with FakeRedis5(password="pw", reply_delay=0.6) as fake:
        exporter = exporter_factory(
            {"poll": FAST, "defaults": NO_PROBE,
             "targets": [{"name": "slow", "url": f"{fake.url}/3", "password_env": "PW"}]},
            env={"PW": "pw"})
        url = metrics_url(exporter)
        text = wait_for_value(url, "redis_connection_exporter_poll_errors_total", bool,
                              target="slow", step="info", kind="timeout")
    duration = value(text, "redis_connection_exporter_last_poll_duration_seconds",
                     target="slow", step="info")
    assert duration is not None and duration < 1.4
    assert value(text, "redis_up", target="slow") == 0


def test_info_read_before_a_cut_client_list_keeps_redis_up(
        exporter_factory: Callable[..., Exporter]) -> None:
    # The first CLIENT LIST (on a new connection, after INFO) is answered; the next ones,
    # pipelined behind INFO on the held connection, cut the connection.
    with FakeRedis5(close_on=frozenset({"CLIENT LIST"}), close_after=1) as fake:
        exporter = exporter_factory({"poll": FAST, "defaults": NO_PROBE,
                                     "targets": [{"name": "cut", "url": fake.url}]})
        url = metrics_url(exporter)
        text = wait_for_value(url, "redis_connection_exporter_poll_errors_total", bool,
                              target="cut", step="client_list", kind="other")
    assert value(text, "redis_up", target="cut") == 1
    assert value(text, "redis_connected_clients", target="cut") == 17
    assert not values(text, "redis_client_connections", target="cut")
    assert not value(text, "redis_connection_exporter_poll_errors_total", target="cut",
                     step="info", kind="other")


def test_a_refused_handshake_never_leaves_a_connection_behind(
        redis_server: RedisServer, exporter_factory: Callable[..., Exporter]) -> None:
    # SELECT 20 is out of range (16 databases): every handshake fails at its last step.
    exporter = exporter_factory({"poll": FAST, "defaults": NO_PROBE,
                                 "targets": [{"name": "db20", "url": f"{redis_server.url}/20"}]})
    url = metrics_url(exporter)
    wait_for(lambda: (value(fetch(url), "redis_connection_exporter_pool_connections_created_total",
                            target="db20") or 0) >= 3, message="three attempts")
    text = fetch(url)
    assert value(text, "redis_up", target="db20") == 0
    assert value(text, "redis_connected_clients", target="db20") is None
    assert _exporter_line(redis_server.port) is None  # not kept open on db 0


def test_a_killed_poll_connection_comes_back_named_and_no_evict(
        redis_server: RedisServer, exporter_factory: Callable[..., Exporter]) -> None:
    exporter = exporter_factory({"poll": FAST, "defaults": NO_PROBE,
                                 "targets": [{"name": "main", "url": redis_server.url}]})
    url = metrics_url(exporter)
    wait_for(lambda: _exporter_line(redis_server.port), message="the poll connection")
    first = str(_exporter_line(redis_server.port))
    killer = RawClient(redis_server.port)
    try:
        assert killer.call("CLIENT", "KILL", "SKIPME", "yes", "USER", "default") == b":1"
    finally:
        killer.close()
    wait_for(lambda: value(fetch(url), "redis_connection_exporter_pool_connections_created_total",
                           target="main") == 2, message="a reconnect")
    again = wait_for(lambda: _exporter_line(redis_server.port), message="the new connection")
    assert isinstance(again, str) and again.split()[0] != first.split(maxsplit=1)[0]  # a new id
    flags = next(field for field in again.split() if field.startswith("flags="))
    assert "e" in flags  # CLIENT NO-EVICT on was sent to the new connection too
