"""Faults are classified per target; other targets carry on; recovery is seen."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import pytest

from exporter.app import Exporter
from exporter.expose import families
from tests.conftest import metrics_url
from tests.support.clients import RawClient
from tests.support.redis_server import RedisServer, free_port, start_redis
from tests.support.scrape import fetch, samples, value, wait_for
from tests.support.servers import ServerBuild

FAST = {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"}
NO_PROBE = {"connect_probe": {"enabled": False}}


def _errors(text: str, target: str, kind: str, step: str = "info") -> float:
    return value(text, "redis_connection_exporter_poll_errors_total", target=target,
                 step=step, kind=kind) or 0.0


def _when_up_is(text: str, target: str, up: int) -> str | None:
    return text if value(text, "redis_up", target=target) == up else None


@pytest.mark.server_needs("acl")
def test_each_fault_is_classified_and_healthy_targets_are_unaffected(
        server_build: ServerBuild, redis_factory: Callable[..., RedisServer],
        exporter_factory: Callable[..., Exporter], tmp_path: os.PathLike[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    healthy = redis_factory(server=server_build)
    locked = redis_factory(server=server_build, password="right-password")
    limited = redis_factory(server=server_build)
    admin = RawClient(limited.port)
    assert admin.call("ACL", "SETUSER", "monitor", "on", ">monpass", "~*", "+@all",
                      "-client") == b"+OK"
    admin.close()
    wrong = os.path.join(tmp_path, "wrong")
    with open(wrong, "w") as handle:
        handle.write("not-the-password\n")
    monitor_pw = os.path.join(tmp_path, "monitor")
    with open(monitor_pw, "w") as handle:
        handle.write("monpass\n")
    exporter = exporter_factory({
        "poll": FAST, "defaults": NO_PROBE,
        "targets": [
            {"name": "healthy", "url": healthy.url},
            {"name": "refused", "url": f"redis://127.0.0.1:{free_port()}"},
            {"name": "wrongpass", "url": locked.url, "password_file": wrong},
            {"name": "noclient", "url": limited.url, "username": "monitor",
             "password_file": monitor_pw},
        ],
    })
    url = metrics_url(exporter)

    def all_classified() -> str | None:
        text = fetch(url)
        ready = (_errors(text, "refused", "refused") >= 2
                 and _errors(text, "wrongpass", "auth") >= 2
                 and value(text, "redis_up", target="noclient") == 1)
        return text if ready else None

    text = str(wait_for(all_classified, message="every fault classified"))
    assert value(text, "redis_up", target="healthy") == 1
    assert value(text, "redis_connected_clients", target="healthy") is not None
    assert value(text, "redis_up", target="refused") == 0
    assert value(text, "redis_up", target="wrongpass") == 0
    for target in ("refused", "wrongpass"):  # dropped, not served stale
        assert value(text, "redis_connected_clients", target=target) is None
    # An ACL user without +client keeps redis_up and INFO; only CLIENT LIST's families go (the
    # INFO counters redis_client_*_limit_disconnections_total of 7.4+ stay).
    assert value(text, "redis_connected_clients", target="noclient") is not None
    from_client_list = {family.name for family in (*families.GROUP_FAMILIES.values(),
                                                   *families.HISTOGRAMS.values())}
    assert not [name for name, labels, _ in samples(text) if labels.get("target") == "noclient"
                and name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
                in from_client_list]
    capability = "redis_connection_exporter_target_capability"
    assert value(text, capability, target="noclient", capability="client_list") == 0
    assert value(text, capability, target="noclient", capability="client_setname") == 0
    assert value(text, capability, target="healthy", capability="client_list") == 1
    assert _errors(text, "noclient", "noperm", step="client_list") == 1
    # One log line per state change, however many polls failed.
    downs = [r for r in caplog.records if "target is down" in r.getMessage()
             and "target=refused" in r.getMessage()]
    assert len(downs) == 1
    missing = [r for r in caplog.records if "capability missing" in r.getMessage()
               and "capability=client_list " in r.getMessage() + " "]
    assert len(missing) == 1


def test_server_killed_then_restarted_is_reported_and_recovers(
        exporter_factory: Callable[..., Exporter]) -> None:
    port = free_port()
    server = start_redis(port=port)
    other = start_redis()
    try:
        exporter = exporter_factory({
            "poll": FAST, "defaults": NO_PROBE,
            "targets": [{"name": "victim", "url": server.url},
                        {"name": "bystander", "url": other.url}],
        })
        url = metrics_url(exporter)
        wait_for(lambda: value(fetch(url), "redis_up", target="victim") == 1,
                 message="victim up")
        server.stop()
        text = str(wait_for(lambda: _when_up_is(fetch(url), "victim", 0), message="victim down"))
        assert value(text, "redis_connected_clients", target="victim") is None
        assert value(text, "redis_up", target="bystander") == 1
        kinds = {kind for kind in ("refused", "other", "protocol", "timeout")
                 if _errors(text, "victim", kind)}
        assert kinds <= {"refused", "other"} and kinds, kinds
        server.start()
        restarted = wait_for(lambda: value(fetch(url), "redis_up", target="victim") == 1,
                             timeout=3, message="recovery within one interval (1s) plus a poll")
        assert restarted
        text = fetch(url)
        assert value(text, "redis_client_connections", target="victim",
                     name="redis-connection-exporter", client_type="normal") == 1
        created = value(text, "redis_connection_exporter_pool_connections_created_total",
                        target="victim")
        assert created == 2
    finally:
        server.stop()
        other.stop()


def test_a_successful_probe_ends_the_backoff_of_a_failing_target(
        redis_factory: Callable[..., RedisServer], exporter_factory: Callable[..., Exporter],
        tmp_path: os.PathLike[str]) -> None:
    server = redis_factory(password="old-password")
    secret = os.path.join(tmp_path, "pw")
    with open(secret, "w") as handle:
        handle.write("new-password\n")
    exporter = exporter_factory({
        "poll": FAST, "defaults": {"connect_probe": {"interval": "1s"}},
        "targets": [{"name": "rotated", "url": server.url, "password_file": secret}],
    })
    url = metrics_url(exporter)
    # auth failures back off: 1s, 2s, 4s, 8s... after 4 of them the next poll is >= 8s away
    wait_for(lambda: _errors(fetch(url), "rotated", "auth") >= 4, timeout=15,
             message="four auth failures")
    admin = RawClient(server.port)
    try:
        assert admin.call("AUTH", "old-password") == b"+OK"
        assert admin.call("CONFIG", "SET", "requirepass", "new-password") == b"+OK"
    finally:
        admin.close()
    assert wait_for(lambda: value(fetch(url), "redis_up", target="rotated") == 1, timeout=4,
                    message="recovery soon after the probe gets in, not after the backoff")
