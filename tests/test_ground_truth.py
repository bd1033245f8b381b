"""Real clients with known names, users, dbs and states; the exporter must report exactly them,
on every real server build (Redis 5.0 to 8.0, Valkey 8.0 and 8.1: the `server_build` matrix)."""

from __future__ import annotations

import time
from collections.abc import Callable

from exporter.app import Exporter
from tests.conftest import metrics_url
from tests.support.clients import RawClient, commandstats, info_field, open_named
from tests.support.redis_server import RedisServer
from tests.support.scrape import fetch, value, values, wait_for
from tests.support.servers import ServerBuild

FAST = {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"}
NO_PROBE = {"connect_probe": {"enabled": False}}




def _population(server: RedisServer, opened: list[RawClient]) -> RawClient:
    """Open the known population; return a quiet observer connection opened first."""
    port = server.port
    build = server.build
    assert build is not None
    admin = RawClient(port)
    opened.append(admin)
    assert admin.call("CLIENT", "SETNAME", "observer") == b"+OK"
    if build.acl:  # channel rules (&*) came with 6.2; 6.0 lets every user into every channel
        rules = ["on", ">apppass", "~*", *(["&*"] if build.at_least(6, 2) else []), "+@all"]
        assert admin.call("ACL", "SETUSER", "app", *rules) == b"+OK"
    opened += open_named(port, ["api-7f9c2d4e1a", "api-0b1c2d3e4f", "api-99aa88bb77",
                                "web-5d8f7c9b6-x2k4p", "web-5d8f7c9b6-q7z9m", "worker"])
    opened += [RawClient(port), RawClient(port)]  # unnamed
    billing = RawClient(port)
    if build.acl:
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
        server_build: ServerBuild, redis_factory: Callable[..., RedisServer],
        clients: list[RawClient], exporter_factory: Callable[..., Exporter]) -> None:
    server = redis_factory(server=server_build)
    admin = _population(server, clients)
    exporter = exporter_factory({
        "poll": FAST, "defaults": NO_PROBE,
        "client_list": {"group_by": ["name", "client_type", "user", "db"],
                        "idle_threshold": "1s"},
        "targets": [{"name": "cache", "url": server.url}],
    })
    time.sleep(2.5)  # let every client pass the 1s idle threshold, then take a fresh poll
    url = metrics_url(exporter)
    before = exporter.store.generation
    wait_for(lambda: exporter.store.generation > before + 1, message="a fresh poll")
    text = fetch(url)
    # Before 6.0 CLIENT LIST has no `user` field: the label is "" (absent, not invented).
    default, app = ("default", "app") if server_build.acl else ("", "")
    expected = {
        ("api", "normal", default, "0"): 3,
        ("web", "normal", default, "0"): 2,
        ("worker", "normal", default, "0"): 1,
        ("", "normal", default, "0"): 2,
        ("observer", "normal", default, "0"): 1,
        ("billing", "normal", app, "0"): 1,
        ("cache-db3", "normal", default, "3"): 1,
        ("sub-listener", "pubsub", default, "0"): 1,
        ("psub-listener", "pubsub", default, "0"): 1,
        ("queue-consumer", "normal", default, "0"): 1,
        ("tx-client", "normal", default, "0"): 1,
        ("redis-connection-exporter", "normal", default, "0"): 1,
    }
    assert _groups(text) == expected
    line_count = len(admin.call("CLIENT", "LIST").decode().strip().splitlines())
    assert sum(expected.values()) == line_count
    assert value(text, "redis_connected_clients", target="cache") == float(
        info_field(admin, "clients", "connected_clients"))
    assert value(text, "redis_blocked_clients", target="cache") == 1
    # Idle longer than 1s, except blocked (b) and pubsub (P) clients, idle by design.
    idle = _groups(text, "redis_client_idle_connections")
    assert idle[("queue-consumer", "normal", default, "0")] == 0
    assert idle[("sub-listener", "pubsub", default, "0")] == 0
    assert idle[("api", "normal", default, "0")] == 3
    assert idle[("tx-client", "normal", default, "0")] == 1
    assert idle[("redis-connection-exporter", "normal", default, "0")] == 0
    for histogram in ("idle_seconds", "age_seconds", "query_buffer_bytes",
                      "output_buffer_bytes", "memory_bytes"):
        count = value(text, f"redis_client_{histogram}_count", target="cache")
        present = histogram != "memory_bytes" or server_build.tot_mem  # tot-mem: 6.0+
        assert count == (line_count if present else None), histogram


# INFO field -> the family the exporter names it (the Go peer's names).
INFO_FAMILIES = {
    "loading": "redis_loading",  # every server; the peer's redis_loading_dump_file
    "total_commands_processed": "redis_commands_processed_total",
    "total_net_input_bytes": "redis_net_input_bytes_total",
    "total_net_output_bytes": "redis_net_output_bytes_total",
    "tracking_clients": "redis_tracking_clients",
    "clients_in_timeout_table": "redis_clients_in_timeout_table",
    "cluster_connections": "redis_cluster_connections",
    "evicted_clients": "redis_evicted_clients_total",
    "pubsub_clients": "redis_pubsub_clients",
    "watching_clients": "redis_watching_clients",
    "client_query_buffer_limit_disconnections":
        "redis_client_query_buffer_limit_disconnections_total",
    "client_output_buffer_limit_disconnections":
        "redis_client_output_buffer_limit_disconnections_total",
}


def test_what_the_server_does_not_report_is_absent_and_the_rest_is_exact(
        server_build: ServerBuild, redis_factory: Callable[..., RedisServer],
        exporter_factory: Callable[..., Exporter]) -> None:
    """Every INFO-derived family exists exactly when the server reports its field; the
    handshake never sends HELLO or CLIENT SETINFO; a new connection gets in (the probe)."""
    server = redis_factory(server=server_build)
    exporter = exporter_factory({
        "poll": FAST, "defaults": {"connect_probe": {"enabled": True, "interval": "1s"}},
        "targets": [{"name": "cache", "url": server.url}],
    })
    url = metrics_url(exporter)

    def polled_listed_and_probed() -> str | None:
        body = fetch(url)
        probed = value(body, "redis_connection_exporter_connect_probe_success", target="cache")
        listed = value(body, "redis_client_idle_seconds_count", target="cache")
        return body if probed == 1 and listed else None

    text = str(wait_for(polled_listed_and_probed, message="polled, listed and probed"))
    admin = RawClient(server.port)
    try:
        info = admin.call("INFO").decode()
    finally:
        admin.close()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    for field, family in INFO_FAMILIES.items():
        assert (value(text, family, target="cache") is not None) == (field in fields), family
    threads = values(text, "redis_io_thread_clients", target="cache")  # INFO threads: 8.0+
    assert [labels["thread"] for labels, _ in threads] == (
        ["0"] if "io_thread_0" in fields else [])
    (labels, _), = values(text, "redis_instance_info", target="cache")
    assert (labels["server_name"], labels["server_version"]) == (
        server_build.family, server_build.version_text)
    assert value(text, "redis_max_clients", target="cache") == 1000  # INFO 6.2+, else CONFIG
    assert not values(text, "redis_connection_exporter_poll_errors_total", target="cache")
    no_evict = value(text, "redis_connection_exporter_target_capability", target="cache",
                     capability="client_no_evict")
    assert no_evict == (1 if server_build.no_evict else None)
    calls = commandstats(server.port)
    assert "hello" not in calls and "client|setinfo" not in calls, calls


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




def test_group_sums_match_the_servers_own_lines(
        server_build: ServerBuild, redis_factory: Callable[..., RedisServer],
        clients: list[RawClient], exporter_factory: Callable[..., Exporter]) -> None:
    """Subscribers that stop reading while a publisher fills their output buffers, and a
    client holding half a large command in its query buffer: each per-group sum equals the
    sum over CLIENT LIST's own lines of that group (the buffers stay put while both read)."""
    server = redis_factory(server=server_build)
    port = server.port
    subscribers = open_named(port, ["slow-sub", "slow-sub", "slow-sub"])
    for subscriber in subscribers:
        subscriber.send("SUBSCRIBE", "firehose")
    clients += subscribers
    half = RawClient(port)
    assert half.call("CLIENT", "SETNAME", "half-command") == b"+OK"
    half.sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$200000\r\n" + b"x" * 60_000)
    clients.append(half)
    publisher = RawClient(port)
    clients.append(publisher)

    def output_buffers() -> list[int]:
        text = publisher.call("CLIENT", "LIST").decode()
        return [int(line.split(" omem=")[1].split(" ")[0]) for line in text.splitlines()
                if "name=slow-sub " in line]

    # Publish until each subscriber's output buffer holds over 1 MB (the kernel's socket
    # buffers take the first MBs), below the pubsub class's 8 MB soft limit.
    for _ in range(100):
        for _ in range(10):
            assert publisher.call("PUBLISH", "firehose", "y" * 50_000) == b":3"
        if min(output_buffers()) > 1_000_000:
            break
    assert min(output_buffers()) > 1_000_000
    exporter = exporter_factory({
        "poll": FAST, "defaults": NO_PROBE,
        "targets": [{"name": "cache", "url": server.url}],
    })
    url = metrics_url(exporter)

    def listed() -> str | None:
        body = fetch(url)
        return body if value(body, "redis_client_connections", target="cache",
                             name="slow-sub", client_type="pubsub") == 3 else None

    wait_for(listed, message="the slow subscribers listed")
    sums = {"memory_bytes": "tot-mem", "output_buffer_bytes": "omem",
            "query_buffer_bytes": "qbuf"}
    mismatches: list[object] = []

    def agree() -> str | None:
        """The exporter's sums against a CLIENT LIST read right after its poll (a poll and
        that read may straddle a change of tot-mem: then the next poll is compared)."""
        body = fetch(url)
        lines = [dict(word.split("=", 1) for word in line.split(" ") if "=" in word)
                 for line in publisher.call("CLIENT", "LIST").decode().splitlines() if line]
        mismatches.clear()
        for name, client_type in (("slow-sub", "pubsub"), ("half-command", "normal")):
            mine = [line for line in lines if line.get("name") == name]
            for measure, column in sums.items():
                family = f"redis_client_group_{measure}"
                got = value(body, family, target="cache", name=name, client_type=client_type)
                want = (sum(int(line[column]) for line in mine) if column in mine[0]
                        else None)  # tot-mem: 6.0+
                if got != want:
                    mismatches.append((name, family, got, want))
        return body if not mismatches else None

    try:
        text = str(wait_for(agree, timeout=10, message="the group sums to agree"))
    except AssertionError as error:
        raise AssertionError(f"{error}: (name, family, exported, CLIENT LIST) "
                             f"{mismatches}") from None
    buffered = value(text, "redis_client_group_output_buffer_bytes", target="cache",
                     name="slow-sub", client_type="pubsub")
    assert buffered is not None and buffered > 3 * 1_000_000
    pending = value(text, "redis_client_group_query_buffer_bytes", target="cache",
                    name="half-command", client_type="normal")
    assert pending is not None and pending >= 60_000
