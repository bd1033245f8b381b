"""A real 3-master + 3-replica Redis Cluster with a password, followed from a seed list whose
first seed is dead: every node a target with its role, node id and health, through a
failover, a node added with CLUSTER MEET and removed with CLUSTER FORGET, and a killed replica.

One cluster serves the whole module, in file order: the killed replica comes last."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.app import Exporter
from tests.conftest import metrics_url
from tests.support.prometheus import dashboard_queries, run_prometheus
from tests.support.scrape import body_when, fetch, value, values, wait_for
from tests.support.topology import Cluster, start_cluster

INFO = "redis_connection_exporter_target_info"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = start_cluster()
    yield started
    started.stop()


def _config(cluster: Cluster, tmp_path: Path, refresh: str = "60s") -> dict[str, Any]:
    secret = tmp_path / "cluster-password"
    secret.write_text(cluster.password + "\n", encoding="utf-8")
    first = cluster.live_ports()[0]
    return {  # port 1: nobody listens there, the seed is refused at once
        "poll": {"interval": "1s", "client_list_interval": "1s"},
        "targets": [{"name": "shop", "password_file": str(secret), "cluster": {
            "seeds": ["redis://127.0.0.1:1", f"redis://127.0.0.1:{first}"],
            "refresh": refresh}}],
    }


def _name(port: int) -> str:
    return f"shop/127.0.0.1:{port}"


def _roles(text: str) -> dict[str, str]:
    """target -> role, from each node's own INFO (redis_instance_info)."""
    return {labels["target"]: labels["role"]
            for labels, _ in values(text, "redis_instance_info")}


def _expected_roles(cluster: Cluster) -> dict[str, str]:
    return {_name(port): "master" if role == "master" else "slave"
            for port, (role, _) in cluster.roles(cluster.live_ports()[0]).items()
            if port in cluster.live_ports()}


def test_every_node_is_found_from_seeds_whose_first_is_dead(
        cluster: Cluster, exporter_factory: Callable[..., Exporter], tmp_path: Path) -> None:
    exporter = exporter_factory(_config(cluster, tmp_path))
    url = metrics_url(exporter)
    expected = _expected_roles(cluster)
    assert len(expected) == 6
    text = body_when(url, lambda body: _roles(body) == expected,
                      "six nodes with their own roles")
    for port in cluster.live_ports():
        [(labels, one)] = values(text, INFO, target=_name(port))
        assert one == 1
        assert labels == {"target": _name(port), "source": "cluster", "parent": "shop",
                          "address": f"127.0.0.1:{port}", "node_id": cluster.node_id(port),
                          "shard": "", "health": "online"}  # 7.0: no CLUSTER MYSHARDID
        assert value(text, "redis_up", target=_name(port)) == 1
    assert value(text, "redis_connection_exporter_discovery_errors_total",
                 parent="shop", kind="refused") == 1  # the dead seed, once: then held
    assert value(text, "redis_connection_exporter_failovers_total", parent="shop") == 0
    page = fetch(f"http://{exporter.bound_address()}/")
    assert "cluster shop" in page
    scraped = fetch(f"http://{exporter.bound_address()}/scrape?target="
                    f"{_name(cluster.live_ports()[0]).replace('/', '%2F')}")
    assert value(scraped, "redis_up") == 1  # /scrape drops the target label


def test_a_failover_swaps_the_roles_on_the_same_targets_and_is_counted(
        cluster: Cluster, exporter_factory: Callable[..., Exporter], tmp_path: Path) -> None:
    exporter = exporter_factory(_config(cluster, tmp_path, refresh="1s"))
    url = metrics_url(exporter)
    before = _expected_roles(cluster)
    wait_for(lambda: _roles(fetch(url)) == before, timeout=30, message="roles before")
    master = next(port for port in cluster.live_ports() if before[_name(port)] == "master")
    replica = cluster.replica_of(master)
    cluster.failover(replica)
    swapped = dict(before, **{_name(master): "slave", _name(replica): "master"})
    started = time.monotonic()
    wait_for(lambda: _roles(fetch(url)) == swapped, timeout=20, message="swapped roles")
    print(f"roles swapped on /metrics {time.monotonic() - started:.2f}s after the failover")
    text = fetch(url)
    assert sorted(labels["target"] for labels, _ in values(text, INFO)) == sorted(before)
    wait_for(lambda: value(fetch(url), "redis_connection_exporter_failovers_total",
                           parent="shop") == 1, timeout=10, message="one failover counted")


def test_a_node_added_with_meet_appears_and_one_forgotten_disappears(
        cluster: Cluster, exporter_factory: Callable[..., Exporter], tmp_path: Path) -> None:
    exporter = exporter_factory(_config(cluster, tmp_path, refresh="1s"))
    url = metrics_url(exporter)
    wait_for(lambda: len(values(fetch(url), INFO)) == 6, timeout=30, message="six nodes")
    added = cluster.meet()
    started = time.monotonic()
    text = body_when(url, lambda body: value(body, "redis_up", target=_name(added.port)) == 1,
                      "the new node polled", timeout=20)
    print(f"new node on /metrics {time.monotonic() - started:.2f}s after CLUSTER MEET")
    [(labels, _)] = values(text, INFO, target=_name(added.port))
    assert labels["node_id"] == cluster.node_id(added.port)
    assert _roles(text)[_name(added.port)] == "master"  # a slot-less master
    cluster.forget(added.port)
    wait_for(lambda: not values(fetch(url), INFO, target=_name(added.port)), timeout=20,
             message="the forgotten node gone")
    assert len(values(fetch(url), INFO)) == 6


def test_a_real_prometheus_sees_every_node_with_its_target_info(
        cluster: Cluster, exporter_factory: Callable[..., Exporter], tmp_path: Path) -> None:
    exporter = exporter_factory(_config(cluster, tmp_path))
    expected = _expected_roles(cluster)
    wait_for(lambda: _roles(fetch(metrics_url(exporter))) == expected, timeout=30,
             message="every node polled")
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
              "scrape_configs": [{"job_name": "redis-connection-exporter",
                                  "static_configs": [{"targets": [exporter.bound_address()]}]}]}
    with run_prometheus(config) as prom:
        # The node table's join: each node's role (own INFO) beside its topology labels.
        samples = prom.wait_for(
            'max by (target, parent, node_id, role) (redis_instance_info * on (target) '
            'group_left (parent, node_id) redis_connection_exporter_target_info'
            '{source="cluster"})', lambda found: len(found) == 6)
        # The dashboard's row of cluster and Sentinel nodes, as Grafana sends it: every
        # query returns series (failovers at 0, the dead seed's error counted).
        prom.wait_for('rate(redis_connection_exporter_poll_duration_seconds_count[1m])', bool)
        row = [expr for expr in dashboard_queries() if "parent=~" in expr]
        assert len(row) >= 5, row
        assert [expr for expr in row if not prom.query(expr)] == []
    seen = {labels["target"]: labels for labels, _ in samples}
    assert {name: labels["role"] for name, labels in seen.items()} == expected
    for port in cluster.live_ports():
        assert seen[_name(port)]["node_id"] == cluster.node_id(port)
        assert seen[_name(port)]["parent"] == "shop"


def test_a_killed_replica_stays_a_target_with_redis_up_0_and_health_fail(
        cluster: Cluster, exporter_factory: Callable[..., Exporter], tmp_path: Path) -> None:
    exporter = exporter_factory(_config(cluster, tmp_path, refresh="1s"))
    url = metrics_url(exporter)
    roles = _expected_roles(cluster)
    wait_for(lambda: _roles(fetch(url)) == roles, timeout=30, message="every node up")
    replica = next(port for port in cluster.live_ports() if roles[_name(port)] == "slave")
    cluster.kill(replica)
    text = body_when(url, lambda body: values(body, INFO, target=_name(replica),
                                                health="fail"),
                      "the topology marks the killed replica failed")
    assert value(text, "redis_up", target=_name(replica)) == 0
    assert len(values(text, INFO)) == 6
    assert all(value(text, "redis_up", target=_name(port)) == 1
               for port in cluster.live_ports())
