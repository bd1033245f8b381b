"""Real clients with known names, users, dbs and states; the exporter must report exactly them."""

from __future__ import annotations

import time
from collections.abc import Callable

from exporter.app import Exporter
from tests.conftest import metrics_url
from tests.support.clients import RawClient, info_field, open_named
from tests.support.redis_server import RedisServer
from tests.support.scrape import fetch, value, values, wait_for

FAST = {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"}
NO_PROBE = {"connect_probe": {"enabled": False}}




def _population(server: RedisServer, opened: list[RawClient]) -> RawClient:
    """Open the known population; return a quiet observer connection opened first."""
    port = server.port
    admin = RawClient(port)
    opened.append(admin)
    assert admin.call("CLIENT", "SETNAME", "observer") == b"+OK"
    assert admin.call("ACL", "SETUSER", "app", "on", ">apppass", "~*", "&*", "+@all") == b"+OK"
    opened += open_named(port, ["api-7f9c2d4e1a", "api-0b1c2d3e4f", "api-99aa88bb77",
                                "web-5d8f7c9b6-x2k4p", "web-5d8f7c9b6-q7z9m", "worker"])
    opened += [RawClient(port), RawClient(port)]  # unnamed
    billing = RawClient(port)
    assert billing.call("AUTH", "app", "apppass") == b"+OK"
    assert billing.call("CLIENT", "SETNAME", "billing") == b"+OK"
    cache = RawClient(port)
    assert cache.call("SELECT", 3) == b"+OK"
    assert cache.call("CLIENT", "SETNAME", "cache-db3") == b"+OK"
    sub = RawClient(port)
    assert sub.call("CLIENT", "SETNAME", "sub-listener") == b"+OK"
    sub.send("SUBSCRIBE", "news")
    psub = RawClient(port)
    assert psub.call("CLIENT", "SETNAME", "psub-listener") == b"+OK"
    psub.send("PSUBSCRIBE", "news.*")
    blocked = RawClient(port)
    assert blocked.call("CLIENT", "SETNAME", "queue-consumer") == b"+OK"
    blocked.send("BLPOP", "jobs", 0)
    tx = RawClient(port)
    assert tx.call("CLIENT", "SETNAME", "tx-client") == b"+OK"
    assert tx.call("MULTI") == b"+OK"
    assert tx.call("SET", "k", "v") == b"+QUEUED"
    opened += [billing, cache, sub, psub, blocked, tx]
    return admin


def _groups(text: str, metric: str = "redis_client_connections") -> dict[tuple[str, ...], float]:
    return {(lab["name"], lab["client_type"], lab["user"], lab["db"]): val
            for lab, val in values(text, metric, target="cache")}


def test_groups_match_the_clients_that_are_open(
        redis_server: RedisServer, clients: list[RawClient],
        exporter_factory: Callable[..., Exporter]) -> None:
    admin = _population(redis_server, clients)
    exporter = exporter_factory({
        "poll": FAST, "defaults": NO_PROBE,
        "client_list": {"group_by": ["name", "client_type", "user", "db"],
                        "idle_threshold": "1s"},
        "targets": [{"name": "cache", "url": redis_server.url}],
    })
    time.sleep(2.5)  # let every client pass the 1s idle threshold, then take a fresh poll
    url = metrics_url(exporter)
    before = exporter.store.generation
    wait_for(lambda: exporter.store.generation > before + 1, message="a fresh poll")
    text = fetch(url)
    expected = {
        ("api", "normal", "default", "0"): 3,
        ("web", "normal", "default", "0"): 2,
        ("worker", "normal", "default", "0"): 1,
        ("", "normal", "default", "0"): 2,
        ("observer", "normal", "default", "0"): 1,
        ("billing", "normal", "app", "0"): 1,
        ("cache-db3", "normal", "default", "3"): 1,
        ("sub-listener", "pubsub", "default", "0"): 1,
        ("psub-listener", "pubsub", "default", "0"): 1,
        ("queue-consumer", "normal", "default", "0"): 1,
        ("tx-client", "normal", "default", "0"): 1,
        ("redis-connection-exporter", "normal", "default", "0"): 1,
    }
    assert _groups(text) == expected
    line_count = len(admin.call("CLIENT", "LIST").decode().strip().splitlines())
    assert sum(expected.values()) == line_count
    assert value(text, "redis_connected_clients", target="cache") == float(
        info_field(admin, "clients", "connected_clients"))
    assert value(text, "redis_blocked_clients", target="cache") == 1
    # Idle longer than 1s, except blocked (b) and pubsub (P) clients, idle by design.
    idle = _groups(text, "redis_client_idle_connections")
    assert idle[("queue-consumer", "normal", "default", "0")] == 0
    assert idle[("sub-listener", "pubsub", "default", "0")] == 0
    assert idle[("api", "normal", "default", "0")] == 3
    assert idle[("tx-client", "normal", "default", "0")] == 1
    assert idle[("redis-connection-exporter", "normal", "default", "0")] == 0
    count = value(text, "redis_client_idle_seconds_count", target="cache")
    assert count == line_count


def test_cap_keeps_fifty_groups_and_loses_no_client(
        redis_server: RedisServer, clients: list[RawClient],
        exporter_factory: Callable[..., Exporter]) -> None:
    clients += open_named(redis_server.port, [f"svc{i:03d}" for i in range(200)])
    exporter = exporter_factory({
        "poll": FAST, "defaults": NO_PROBE,
        "client_list": {"max_groups": 50, "name_rewrite": []},
        "targets": [{"name": "cache", "url": redis_server.url}],
    })
    url = metrics_url(exporter)

    def poll_with_all() -> str | None:
        text = fetch(url)
        total = sum(val for _, val in values(text, "redis_client_connections"))
        return text if total == 201 else None

    text = str(wait_for(poll_with_all, message="all 201 clients counted"))
    groups = values(text, "redis_client_connections", target="cache")
    assert len(groups) == 51
    other = [val for lab, val in groups if lab["name"] == "__other__"]
    assert other and other[0] == 201 - 50
    assert all(lab["client_type"] == "__other__" for lab, _ in groups
               if lab["name"] == "__other__")
    idle_tuples = {tuple(sorted(lab.items())) for lab, _ in
                   values(text, "redis_client_idle_connections", target="cache")}
    assert idle_tuples == {tuple(sorted(lab.items())) for lab, _ in groups}
    assert value(text, "redis_connected_clients", target="cache") == 201


