"""A real master + replica with a password, watched by 3 Sentinels without one: the entry
finds the master, the replica and the Sentinels (each with its own credentials: none for the
Sentinels), and a SENTINEL FAILOVER swaps the roles on the same targets, counts one failover
and duplicates no target."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.app import Exporter
from tests.conftest import metrics_url
from tests.support.scrape import body_when, fetch, value, values, wait_for
from tests.support.topology import SentinelGroup, start_sentinel_group

INFO = "redis_connection_exporter_target_info"


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    started = start_sentinel_group()
    yield started
    started.stop()


def _config(group: SentinelGroup, tmp_path: Path) -> dict[str, Any]:
    secret = tmp_path / "data-password"
    secret.write_text(group.password, encoding="utf-8")
    return {
        "poll": {"interval": "1s", "client_list_interval": "1s"},
        "targets": [{"name": "sessions", "password_file": str(secret), "sentinel": {
            "seeds": [f"redis://127.0.0.1:{sentinel.port}" for sentinel in group.sentinels[:2]],
            "masters": ["mymaster"], "refresh": "10s", "include_sentinels": True}}],
    }


def _name(port: int) -> str:
    return f"sessions/127.0.0.1:{port}"


def _roles(text: str) -> dict[str, str]:
    return {labels["target"]: labels["role"]
            for labels, _ in values(text, "redis_instance_info")}


def test_master_replica_and_sentinels_are_found_and_a_failover_swaps_roles(
        group: SentinelGroup, exporter_factory: Callable[..., Exporter],
        tmp_path: Path) -> None:
    exporter = exporter_factory(_config(group, tmp_path))
    url = metrics_url(exporter)
    data = {_name(group.master.port): "master", _name(group.replica.port): "slave"}
    # A Sentinel's INFO has no role: redis_mode says what it is.
    sentinels = {_name(sentinel.port): "" for sentinel in group.sentinels}
    wait_for(lambda: _roles(fetch(url)) == {**data, **sentinels}, timeout=30,
             message="master, replica and 3 Sentinels, each with its own role")
    text = fetch(url)
    for name in data:
        [(labels, _)] = values(text, INFO, target=name)
        assert (labels["source"], labels["parent"]) == ("sentinel", "sessions/mymaster")
        assert labels["health"] == "online"
    for name in sentinels:
        [(labels, _)] = values(text, INFO, target=name)
        assert (labels["source"], labels["parent"]) == ("sentinel", "sessions")
        [(instance, _)] = values(text, "redis_instance_info", target=name)
        assert instance["redis_mode"] == "sentinel"
        # Plain commands only: no CONFIG on a Sentinel, so no capability and no error.
        assert value(text, "redis_connection_exporter_target_capability", target=name,
                     capability="config") is None
        assert not values(text, "redis_connection_exporter_poll_errors_total", target=name)
        assert value(text, "redis_max_clients", target=name) == 10000  # from its INFO
    assert not values(text, "redis_connection_exporter_discovery_errors_total")
    # 0 before the first failover (so that increase() sees it), and no series per entry
    assert value(text, "redis_connection_exporter_failovers_total",
                 parent="sessions/mymaster") == 0
    assert value(text, "redis_connection_exporter_failovers_total", parent="sessions") is None
    started = time.monotonic()
    new_master = group.failover()
    promoted = time.monotonic() - started
    swapped = {_name(new_master): "master",
               _name(group.master.port if new_master != group.master.port
                     else group.replica.port): "slave"}
    wait_for(lambda: _roles(fetch(url)) == {**swapped, **sentinels}, timeout=20,
             message="roles swapped on the same targets")
    print(f"failover took {promoted:.2f}s; roles swapped on /metrics "
          f"{time.monotonic() - started:.2f}s after SENTINEL FAILOVER")
    # +switch-master triggers a read at once: the count comes long before `refresh: 10s`.
    text = body_when(url, lambda body: value(
        body, "redis_connection_exporter_failovers_total", parent="sessions/mymaster") == 1,
        "one failover counted", timeout=8)
    assert sorted(labels["target"] for labels, _ in values(text, INFO)) == \
        sorted({**data, **sentinels})
