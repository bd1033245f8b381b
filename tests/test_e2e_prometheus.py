"""End to end with a real Prometheus (issue 5 item 3): real redis-servers with known named idle
clients, the exporter in process, and the Debian `prometheus` binary scraping both `/metrics` and
`/scrape?target=<name>` (the multi-target relabelling) every second, with the Go peer's common
alert rules loaded. Everything is read back through Prometheus' HTTP API, so the assertions cover
what Prometheus itself parsed, stored, relabelled and evaluated."""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from typing import Any

import yaml

from exporter.app import Exporter
from exporter.expose import families as metrics
from tests.support.clients import RawClient, info_field, open_named
from tests.support.prometheus import (
    Prometheus,
    Sample,
    dashboard_queries,
    finite,
    multi_target_job,
    run_prometheus,
)
from tests.support.redis_server import RedisServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_RULES = os.path.join(ROOT, "tests", "data", "peer_rules", "peer_rules.yml")

MAXCLIENTS = 100
HELD = {"web-1": 7, "worker-1": 3}
IDLE_BUCKETS = [1, 5, 15, 60, 300, 900, 3600, 86400]  # the default (DESIGN.md)
LOWERED = 5  # the peer's RedisTooManyConnections threshold (100) lowered so that it fires here


def lowered_peer_rules(text: str) -> str:
    """The peer's RedisTooManyConnections, verbatim but for `> LOWERED` and `for: 0m`, in a group
    of its own: it must fire for the loaded server, labelled with the instance from /scrape."""
    rules = yaml.safe_load(text)
    rule = copy.deepcopy(next(r for group in rules["groups"] for r in group["rules"]
                              if r["alert"] == "RedisTooManyConnections"))
    assert rule["expr"] == "redis_connected_clients > 100", rule
    rule["expr"] = f"redis_connected_clients > {LOWERED}"
    rule["for"] = "0m"
    return yaml.safe_dump({"groups": [{"name": "peer-lowered-threshold", "rules": [rule]}]})


def prometheus_config(exporter_address: str, names: list[str]) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["peer_rules.yml", "peer_lowered.yml"],
        "scrape_configs": [
            {"job_name": "metrics", "static_configs": [{"targets": [exporter_address]}]},
            multi_target_job("scrape", names, exporter_address),
        ],
    }


def one(samples: list[Sample]) -> float:
    assert len(samples) == 1, samples
    return samples[0][1]


def single(expected: float) -> Callable[[list[Sample]], bool]:
    return lambda samples: len(samples) == 1 and samples[0][1] == expected


def test_real_prometheus_scrapes_evaluates_and_relabels(
        redis_factory: Callable[..., RedisServer], exporter_factory: Callable[..., Exporter],
        clients: list[RawClient]) -> None:
    started = time.monotonic()
    cache = redis_factory(extra_args=["--maxclients", str(MAXCLIENTS)])
    sessions = redis_factory(extra_args=["--maxclients", str(MAXCLIENTS)])
    reader = RawClient(cache.port)  # reads INFO directly; Redis (and the exporter) count it too
    clients.append(reader)
    assert info_field(reader, "clients", "maxclients") == str(MAXCLIENTS)
    opened_at = time.monotonic()
    for name, count in HELD.items():
        clients.extend(open_named(cache.port, [name] * count))

    exporter = exporter_factory({
        "poll": {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"},
        "targets": [{"name": "cache", "url": cache.url},
                    {"name": "sessions", "url": sessions.url}],
    })
    address = exporter.bound_address()
    with open(PEER_RULES, encoding="utf-8") as handle:
        peer_rules = handle.read()
    files = {"peer_rules.yml": peer_rules, "peer_lowered.yml": lowered_peer_rules(peer_rules)}

    with run_prometheus(prometheus_config(address, ["cache", "sessions"]), files) as prom:
        check_metrics_job(prom, reader, opened_at)
        check_scrape_job(prom, reader)
        check_peer_rules(prom, address)
        check_dashboard_queries(prom)
    RESULTS["seconds"] = round(time.monotonic() - started, 1)
    print("prometheus returned:", RESULTS)
    assert time.monotonic() - started < 60


def check_metrics_job(prom: Prometheus, reader: RawClient, opened_at: float) -> None:
    """Job "metrics": the exporter's /metrics, series labelled with `target`."""
    for name, count in HELD.items():
        got = prom.wait_for(
            f'redis_client_connections{{job="metrics",target="cache",name="{name}"}}',
            single(count))
        assert one(got) == count
    own = prom.query('redis_client_connections{job="metrics",target="cache",'
                     'name="redis-connection-exporter"}')
    assert one(own) == 1

    # Saturation: (connected_clients + slaves + cluster connections) / maxclients, against INFO
    # read directly now. The exporter's value is from its last poll: wait until both agree
    # (the connect probe adds one connection transiently).
    expected_now: list[float] = []

    def agrees(samples: list[Sample]) -> bool:
        expected_now.append(int(info_field(reader, "clients", "connected_clients")) / MAXCLIENTS)
        return len(samples) == 1 and math.isclose(samples[0][1], expected_now[-1])

    ratio_expr = 'redis_connection_saturation_ratio{job="metrics",target="cache"}'
    try:
        ratio = one(prom.wait_for(ratio_expr, agrees, timeout=10))
    except AssertionError:
        ratio = one(prom.query(ratio_expr))
    assert abs(ratio - expected_now[-1]) <= 1 / MAXCLIENTS + 1e-9, (ratio, expected_now[-1])
    # 7 + 3 held, the reader and the exporter's poll connection
    assert round(ratio * MAXCLIENTS) >= sum(HELD.values()) + 2, ratio
    assert one(prom.query('redis_max_clients{job="metrics",target="cache"}')) == MAXCLIENTS
    # headroom + used = maxclients, both from one scrape
    total = one(prom.query('redis_connection_headroom{job="metrics",target="cache"} + '
                           f'{MAXCLIENTS} * redis_connection_saturation_ratio'))
    assert math.isclose(total, MAXCLIENTS), total
    headroom = one(prom.query('redis_connection_headroom{job="metrics",target="cache"}'))

    # The idle distribution: 10 of the 12 clients have been idle since they were opened, so
    # the median lies in (1, 5] once they have been idle over a second, and never above the
    # bucket bound that holds the time since they were opened.
    median_expr = ('histogram_quantile(0.5, sum by (le) '
                   '(redis_client_idle_seconds_bucket{job="metrics",target="cache"}))')
    median = one(prom.wait_for(median_expr, lambda s: finite(s) and s[0][1] >= 1, timeout=15))
    elapsed = time.monotonic() - opened_at
    bound = min(b for b in IDLE_BUCKETS if b >= elapsed)
    assert 1 <= median <= bound, (median, elapsed, bound)
    # the same through the unfiltered form of the brief (both jobs: the same clients twice)
    assert finite(prom.query(
        'histogram_quantile(0.5, sum by (le) (redis_client_idle_seconds_bucket))'))
    clients_seen = one(prom.query(
        'sum(redis_client_idle_seconds_count{job="metrics",target="cache"})'))
    assert abs(clients_seen - ratio * MAXCLIENTS) <= 1, (clients_seen, ratio)
    RESULTS.update(ratio=ratio, expected=expected_now[-1], median=median, elapsed=elapsed,
                   idle_count=clients_seen, headroom=headroom)


def check_scrape_job(prom: Prometheus, reader: RawClient) -> None:
    """Job "scrape": /scrape?target=<name> with the multi-target relabelling."""
    up = prom.wait_for('redis_up{job="scrape"}', lambda s: len(s) == 2)
    assert sorted((labels["instance"], value) for labels, value in up) == [
        ("cache", 1.0), ("sessions", 1.0)]
    targets = {t["labels"]["instance"]: t for t in prom.active_targets()
               if t["labels"]["job"] == "scrape"}
    assert sorted(targets) == ["cache", "sessions"]
    for name, target in targets.items():
        assert target["health"] == "up", target
        assert target["scrapeUrl"].endswith(f"/scrape?target={name}"), target["scrapeUrl"]
    # no series of that job carries a `target` label; every one has a target name as instance
    assert prom.query('{job="scrape", target!=""}') == []
    instances = prom.query('count by (instance) ({job="scrape"})')
    assert sorted(labels["instance"] for labels, _ in instances) == ["cache", "sessions"]
    web = prom.query('redis_client_connections{job="scrape",instance="cache",name="web-1"}')
    assert one(web) == HELD["web-1"]
    # the Go peer's dashboard panel, keyed on instance
    connected = int(info_field(reader, "clients", "connected_clients"))
    panel = one(prom.wait_for('redis_connected_clients{instance=~"cache"}',
                              lambda s: len(s) == 1 and abs(s[0][1] - connected) <= 1))
    assert abs(panel - connected) <= 1, (panel, connected)
    sessions = one(prom.query('redis_connected_clients{instance=~"sessions"}'))
    assert 1 <= sessions <= 2, sessions  # the exporter's poll connection (+ a probe, briefly)
    RESULTS.update(panel_cache=panel, info_cache=connected, panel_sessions=sessions)


def check_peer_rules(prom: Prometheus, address: str) -> None:
    """The peer's alert expressions on this exporter's series, evaluated by Prometheus."""
    assert prom.query("redis_up == 0") == []
    over = prom.query(f"redis_connected_clients > {LOWERED}")
    # both jobs see the loaded server; only it
    assert sorted((lab.get("job"), lab.get("instance"), lab.get("target"))
                  for lab, _ in over) == [
        ("metrics", address, "cache"), ("scrape", "cache", None)]

    def evaluated(groups: list[dict[str, Any]]) -> bool:
        rules = [r for g in groups for r in g["rules"]]
        return bool(rules) and all(r["health"] == "ok" and
                                   not r["lastEvaluation"].startswith("0001") for r in rules)

    deadline = time.monotonic() + 10
    groups = prom.rule_groups()
    while not evaluated(groups) and time.monotonic() < deadline:
        time.sleep(0.2)
        groups = prom.rule_groups()
    assert evaluated(groups), groups
    loaded = {g["name"]: sorted(r["name"] for r in g["rules"]) for g in groups}
    assert loaded == {
        "oliver006-redis-exporter": ["RedisDown", "RedisRejectedConnections",
                                     "RedisTooManyConnections"],
        "peer-lowered-threshold": ["RedisTooManyConnections"]}, loaded

    firing = prom.wait_for('ALERTS{alertstate="firing"}', lambda s: len(s) == 2)
    assert sorted((lab["alertname"], lab["job"], lab["instance"], lab.get("target"))
                  for lab, _ in firing) == [
        ("RedisTooManyConnections", "metrics", address, "cache"),
        ("RedisTooManyConnections", "scrape", "cache", None)]
    alerts = prom.api("alerts")["alerts"]
    summaries = sorted(a["annotations"]["summary"] for a in alerts if a["state"] == "firing")
    assert summaries == sorted(["Redis too many connections (instance cache)",
                                f"Redis too many connections (instance {address})"]), summaries
    assert prom.query('ALERTS{alertname=~"RedisDown|RedisRejectedConnections"}') == []
    RESULTS.update(firing=sorted(summaries), rules={g: len(r) for g, r in loaded.items()})


# Dashboard queries that may rightly return nothing here: fields Redis 7.0 does not report
# (pubsub_clients, watching_clients and the buffer-limit disconnection counters arrived in 7.2:
# absent, not 0) and an error counter that has no series while no poll failed.
# Families Redis 7.0 (the default build here) does not report: 7.4+ INFO fields, per-client
# traffic (Valkey 8.0+, Redis 8.2+: tests/test_attribution.py checks it on Valkey).
MAY_BE_EMPTY = {"redis_pubsub_clients", "redis_watching_clients",
                "redis_client_output_buffer_limit_disconnections_total",
                "redis_client_query_buffer_limit_disconnections_total",
                "redis_connection_exporter_poll_errors_total",
                "redis_client_commands_total", "redis_client_network_input_bytes_total",
                "redis_client_network_output_bytes_total",
                # Library mode: series of applications' own registries, not the exporter's.
                *(family.name for family in metrics.LIBRARY_POOL_FAMILIES)}


def check_dashboard_queries(prom: Prometheus) -> None:
    """Every query of grafana/redis-connection-exporter.json, with $target = the loaded target,
    runs on the real data and returns series, but for MAY_BE_EMPTY and the row of cluster and
    Sentinel nodes (no such entry here: test_cluster_source runs that row's queries)."""
    # rate() needs two samples in its window: wait for them ($__rate_interval -> 1m)
    prom.wait_for('rate(redis_connection_exporter_poll_duration_seconds_count[1m])', bool)
    queries = dashboard_queries("cache")
    empty = [expr for expr in queries if not prom.query(expr)]  # raises on an evaluation error
    unexpected = [expr for expr in empty if not any(name in expr for name in MAY_BE_EMPTY)
                  and "parent=~" not in expr]
    assert unexpected == [], unexpected
    RESULTS.update(dashboard_empty=empty, dashboard_total=len(queries))


RESULTS: dict[str, object] = {}
