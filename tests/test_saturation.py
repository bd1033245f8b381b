"""At maxclients the held connection keeps the exporter seeing, and the probe stays polite."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from exporter.app import Exporter
from tests.conftest import metrics_url
from tests.support.clients import RawClient, info_field
from tests.support.redis_server import RedisServer
from tests.support.scrape import fetch, value, wait_for

MAXCLIENTS = 20
PROBE_INTERVAL_SECONDS = 2
FULL_SECONDS = 30  # the probe's restraint itself is unit-tested (tests/test_plan.py)


def _fill(port: int, opened: list[RawClient]) -> None:
    """Open connections until Redis rejects one, and stays full after a pause."""
    for _ in range(3):
        while True:
            client = RawClient(port)
            reply = client.call("PING")
            if reply != b"+PONG":
                assert b"max number of clients" in reply
                client.close()
                break
            opened.append(client)
        time.sleep(0.5)  # a connect probe in flight may have held a slot: fill it too
        if info_field(opened[-1], "clients", "connected_clients") == str(MAXCLIENTS):
            return
    raise AssertionError("could not fill the server to maxclients")


@pytest.mark.slow
def test_exporter_keeps_reporting_at_maxclients_without_adding_rejections(
        redis_factory: Callable[..., RedisServer],
        exporter_factory: Callable[..., Exporter]) -> None:
    server = redis_factory(extra_args=["--maxclients", str(MAXCLIENTS)])
    exporter = exporter_factory({
        "poll": {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"},
        "defaults": {"connect_probe": {"interval": f"{PROBE_INTERVAL_SECONDS}s"}},
        "targets": [{"name": "full", "url": server.url}],
    })
    url = metrics_url(exporter)
    wait_for(lambda: value(fetch(url), "redis_up", target="full") == 1, message="first poll")
    wait_for(lambda: value(fetch(url), "redis_connection_exporter_connect_probe_success",
                           target="full") == 1, message="a successful probe before filling")
    opened: list[RawClient] = []
    try:
        _fill(server.port, opened)
        watcher = opened[0]
        rejected_before = int(info_field(watcher, "stats", "rejected_connections"))

        def saturated() -> bool:
            text = fetch(url)
            return (value(text, "redis_connection_saturation_ratio", target="full") == 1
                    and value(text, "redis_connection_exporter_connect_probe_success",
                              target="full") == 0)

        wait_for(saturated, timeout=PROBE_INTERVAL_SECONDS * 3, message="saturation seen")
        time.sleep(FULL_SECONDS)
        text = fetch(url)
        rejected_after = int(info_field(watcher, "stats", "rejected_connections"))
    finally:
        for client in opened:
            client.close()
    assert value(text, "redis_up", target="full") == 1
    assert value(text, "redis_connection_saturation_ratio", target="full") == 1
    assert value(text, "redis_connection_headroom", target="full") == 0
    assert value(text, "redis_connected_clients", target="full") == MAXCLIENTS
    assert value(text, "redis_connection_exporter_connect_probe_success", target="full") == 0
    errors = value(text, "redis_connection_exporter_poll_errors_total", target="full",
                   step="probe", kind="maxclients")
    assert errors is not None and errors >= FULL_SECONDS / PROBE_INTERVAL_SECONDS - 2
    # Real probes run at most every 5th probe interval while full: 15 intervals -> <= 3-4.
    added = rejected_after - rejected_before
    assert added <= 4, f"the exporter added {added} rejected connections in {FULL_SECONDS} s"
    reported = value(text, "redis_rejected_connections_total", target="full")
    assert reported is not None and rejected_before <= reported <= rejected_after
