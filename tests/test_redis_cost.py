"""What the exporter costs Redis, counted by Redis itself (INFO commandstats).

However many scrapers hit /metrics, a target sees at most one CLIENT LIST per
`client_list_interval`; above `client_list.backoff.above_clients` it sees one per backoff
interval, while INFO (and every INFO-derived series) keeps its own pace. The single-scraper and
one-minute-backoff cases are in test_poll_connection.py; these measure rates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from exporter.app import Exporter
from tests.conftest import metrics_url
from tests.support.clients import RawClient, commandstats, open_named
from tests.support.redis_server import RedisServer
from tests.support.scrape import fetch, value, values, wait_for

NO_PROBE = {"connect_probe": {"enabled": False}}
INTERVAL_GAUGE = "redis_connection_exporter_client_list_interval_seconds"
LAST_SUCCESS = "redis_connection_exporter_last_poll_success_timestamp_seconds"

ExporterFactory = Callable[..., Exporter]
RedisFactory = Callable[..., RedisServer]


def command_calls(port: int) -> tuple[int, int]:
    """(CLIENT LIST calls, INFO calls) so far, from INFO commandstats on a fresh connection.

    Redis 7 counts subcommands apart (`cmdstat_client|list`); older servers count every CLIENT
    subcommand under `cmdstat_client`, an upper bound that still proves the limit. The INFO
    that reads the stats is not counted in its own reply.
    """
    calls = commandstats(port)
    lists = calls.get("client|list", calls.get("client", 0))
    return lists, calls.get("info", 0)


def config(targets: dict[str, RedisServer], poll: dict[str, str],
           **client_list: Any) -> dict[str, Any]:
    return {"poll": poll, "defaults": NO_PROBE, "client_list": client_list,
            "targets": [{"name": name, "url": server.url} for name, server in targets.items()]}


def wait_client_list(url: str, targets: list[str]) -> str:
    """/metrics once every target has groups, i.e. one CLIENT LIST has run on each."""
    def ready() -> str | None:
        text = fetch(url)
        done = all(values(text, "redis_client_connections", target=name) for name in targets)
        return text if done else None

    found = wait_for(ready, timeout=20, message=f"CLIENT LIST on {targets}")
    assert isinstance(found, str)
    return found


def hammer(url: str, threads: int, seconds: float) -> int:
    """GET `url` from `threads` threads back to back for `seconds`; return the 200 responses."""
    done: list[int] = []
    failures: list[BaseException] = []
    stop_at = time.monotonic() + seconds

    def scraper() -> None:
        count = 0
        try:
            while time.monotonic() < stop_at:
                assert "redis_up" in fetch(url)
                count += 1
        except BaseException as error:  # reported by the test thread
            failures.append(error)
        done.append(count)

    workers = [threading.Thread(target=scraper) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=seconds + 30)
    assert not failures, failures
    return sum(done)


def test_many_scrapers_cost_each_target_one_client_list_per_interval(
        redis_factory: RedisFactory, exporter_factory: ExporterFactory) -> None:
    servers = {"cache": redis_factory(), "sessions": redis_factory()}
    exporter = exporter_factory(config(
        servers, {"interval": "1s", "client_list_interval": "2s", "timeout": "1s"}))
    url = metrics_url(exporter)
    text = wait_client_list(url, list(servers))
    for name in servers:
        assert value(text, INTERVAL_GAUGE, target=name) == 2

    before = {name: command_calls(server.port) for name, server in servers.items()}
    started = time.monotonic()
    scrapes = hammer(url, threads=6, seconds=5.0)
    after = {name: command_calls(server.port) for name, server in servers.items()}
    elapsed = time.monotonic() - started

    assert scrapes >= 60, f"only {scrapes} scrapes in {elapsed:.1f}s"
    for name in servers:
        lists = after[name][0] - before[name][0]
        infos = after[name][1] - before[name][1] - 1  # minus the INFO commandstats above
        assert 1 <= lists <= elapsed / 2 + 1, (
            f"{name}: {lists} CLIENT LIST in {elapsed:.1f}s of {scrapes} scrapes, "
            f"client_list_interval 2s")
        assert 1 <= infos <= elapsed + 1, f"{name}: {infos} INFO in {elapsed:.1f}s"


def test_backoff_slows_client_list_to_its_interval_while_info_keeps_updating(
        redis_server: RedisServer, exporter_factory: ExporterFactory,
        clients: list[RawClient]) -> None:
    clients += open_named(redis_server.port, [f"svc-{index:02d}" for index in range(10)])
    exporter = exporter_factory(config(
        {"cache": redis_server}, {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"},
        backoff={"above_clients": 5, "interval": "3s"}))
    url = metrics_url(exporter)
    wait_client_list(url, ["cache"])
    wait_for(lambda: value(fetch(url), INTERVAL_GAUGE, target="cache") == 3, timeout=20,
             message="client_list_interval_seconds 3 (backed off)")

    before = command_calls(redis_server.port)
    started = time.monotonic()
    seen_clients: set[float] = set()
    received: set[float] = set()
    info_stamps: set[float] = set()
    list_stamps: set[float] = set()
    for index in range(7):
        clients += open_named(redis_server.port, [f"late-{index}"])  # INFO must follow
        time.sleep(max(started + index + 1 - time.monotonic(), 0.0))
        text = fetch(url)
        seen_clients.add(value(text, "redis_connected_clients", target="cache") or 0)
        received.add(value(text, "redis_connections_received_total", target="cache") or 0)
        info_stamps.add(value(text, LAST_SUCCESS, target="cache", step="info") or 0)
        list_stamps.add(value(text, LAST_SUCCESS, target="cache", step="client_list") or 0)
        assert value(text, INTERVAL_GAUGE, target="cache") == 3
    after = command_calls(redis_server.port)
    elapsed = time.monotonic() - started

    lists = after[0] - before[0]
    infos = after[1] - before[1] - 1  # minus the INFO commandstats above
    assert 1 <= lists <= elapsed / 3 + 1, f"{lists} CLIENT LIST in {elapsed:.1f}s, backoff 3s"
    assert infos >= elapsed - 2, f"INFO ran {infos} times in {elapsed:.1f}s of 1s polls"
    assert infos >= 2 * lists, f"{infos} INFO vs {lists} CLIENT LIST: nothing was backed off"
    # INFO-derived series follow every poll; CLIENT LIST's own step only every third.
    assert len(seen_clients) >= 4, f"redis_connected_clients took only {sorted(seen_clients)}"
    assert len(received) >= 4, f"connections_received_total took only {sorted(received)}"
    assert len(info_stamps) >= 5 > len(list_stamps), (info_stamps, list_stamps)
