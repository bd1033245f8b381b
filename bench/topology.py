"""Cluster and Sentinel entries, measured on real servers: how long until every node is a
target, until a failover shows on /metrics, until a node added with CLUSTER MEET is polled,
and what one topology read costs the node asked (commands, server time, round trip).

    python3 -m bench.topology [--reads 200] [--markdown FILE]

Starts a 3+3 cluster and a master + replica + 3 Sentinels (tests/support/topology.py: the
same fixtures the tests use, every process stopped by its PID) and an exporter in this
process with `poll.interval: 1s`. Times are wall-clock from the action (the command sent) to
the first /metrics body that shows its effect, read every 50 ms; they are bounded by the poll
interval (roles come from each node's own INFO) or by `refresh` (a new node waits for the next
read), so both are given.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from typing import Any

import yaml

from exporter.app import Exporter, WebSettings
from exporter.config.loader import build_config
from exporter.conn.watchdog import Watchdog
from exporter.sources.cluster import ClusterDiscovery
from tests.support.scrape import fetch, value, values
from tests.support.topology import (
    Cluster,
    SentinelGroup,
    call,
    start_cluster,
    start_sentinel_group,
    until,
)

POLL = {"interval": "1s", "client_list_interval": "1s"}


def _exporter(raw: dict[str, Any]) -> Exporter:
    config = build_config(yaml.safe_load(yaml.safe_dump(raw)), env={})
    exporter = Exporter(config, WebSettings(listen_address="127.0.0.1:0"))
    exporter.start()
    return exporter


def _seconds_until(url: str, check: Callable[[str], bool], timeout: float = 60.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check(fetch(url)):
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError("timed out")


def _roles(text: str) -> dict[str, str]:
    return {labels["target"]: labels["role"]
            for labels, _ in values(text, "redis_instance_info")}


def _secret(password: str) -> str:
    with tempfile.NamedTemporaryFile("w", delete=False, suffix=".pw") as handle:
        handle.write(password)
    return handle.name


def cluster_rows(cluster: Cluster, reads: int) -> list[tuple[str, str]]:
    seed = cluster.live_ports()[0]
    secret = _secret(cluster.password)
    entry: dict[str, Any] = {"seeds": ["redis://127.0.0.1:1", f"redis://127.0.0.1:{seed}"],
                             "refresh": "60s"}
    raw = {"poll": POLL, "targets": [{"name": "shop", "password_file": secret,
                                      "cluster": entry}]}
    rows = []
    started = time.monotonic()
    exporter = _exporter(raw)
    url = f"http://{exporter.bound_address()}/metrics"
    try:
        _seconds_until(url, lambda text: len([
            1 for labels, up in values(text, "redis_up") if up == 1]) == 6)
        rows.append(("cluster: nodes found from a seed list whose first seed is dead",
                     f"6 of 6, all up {time.monotonic() - started:.2f} s after start"))
        before = _roles(fetch(url))
        master = next(port for port in cluster.live_ports()
                      if before[f"shop/127.0.0.1:{port}"] == "master")
        replica = cluster.replica_of(master)
        wanted = dict(before, **{f"shop/127.0.0.1:{master}": "slave",
                                 f"shop/127.0.0.1:{replica}": "master"})
        call(cluster.client(replica), "CLUSTER", "FAILOVER")
        swapped = _seconds_until(url, lambda text: _roles(text) == wanted)
        # A graceful failover fails no poll: the count waits for the next read (refresh).
        rows.append(("cluster: CLUSTER FAILOVER -> roles swapped on /metrics",
                     f"{swapped:.2f} s (poll.interval 1s; the failover itself ~1 s)"))
        cluster.wait_converged()
    finally:
        exporter.stop()
    rows += _read_cost(cluster, seed, secret, reads)  # at 6 nodes, before one is added
    entry["refresh"] = "1s"
    exporter = _exporter(raw)
    url = f"http://{exporter.bound_address()}/metrics"
    try:
        _seconds_until(url, lambda text: len(values(text, "redis_up")) == 6)
        added = cluster.start_node()
        call(cluster.client(seed), "CLUSTER", "MEET", "127.0.0.1", added.port)
        name = f"shop/127.0.0.1:{added.port}"
        appeared = _seconds_until(url, lambda text: value(text, "redis_up", target=name) == 1)
        rows.append(("cluster: CLUSTER MEET -> new node polled on /metrics",
                     f"{appeared:.2f} s (refresh 1s; gossip takes 1.5-4 s; with refresh 60s "
                     "up to 60 s more)"))
        until(lambda: all(added.port in cluster.roles(port) for port in cluster.live_ports()),
              30.0, "the new node known everywhere")
    finally:
        exporter.stop()
    return rows


def _read_cost(cluster: Cluster, seed: int, secret: str, reads: int) -> list[tuple[str, str]]:
    """One topology read, as the runner does it, `reads` times on a held connection."""
    config = build_config({"targets": [{"name": "shop", "password_file": secret, "cluster": {
        "seeds": [f"redis://127.0.0.1:{seed}"]}}]}, env={})
    rows = []
    for command in ("shards", "nodes"):
        discovery = ClusterDiscovery(config.sources[0], 5.0, Watchdog(), lambda kind: None,
                                     lambda parent, count: None)
        if command == "nodes":  # as before 7.0
            discovery._shards_unknown.add(f"127.0.0.1:{seed}")
        discovery.refresh()  # connect and hold
        call(cluster.client(seed), "CONFIG", "RESETSTAT")
        started = time.perf_counter()
        found: list[Any] = []
        for _ in range(reads):
            found = discovery.refresh() or []
        per_read = (time.perf_counter() - started) / reads * 1000
        stats = cluster.client(seed).info("commandstats")
        server = stats.get(f"cmdstat_cluster|{command}", {})
        discovery.close()
        rows.append((f"cluster: one topology read (CLUSTER {command.upper()}, "
                     f"{len(found)} nodes)",
                     f"1 command; {per_read:.3f} ms round trip; "
                     f"{server.get('usec_per_call', 0):.1f} us on the node asked "
                     f"({server.get('calls', 0)} calls in {reads} reads)"))
    return rows


def sentinel_rows(group: SentinelGroup) -> list[tuple[str, str]]:
    secret = _secret(group.password)
    raw = {"poll": POLL, "targets": [{"name": "sessions", "password_file": secret, "sentinel": {
        "seeds": [f"redis://127.0.0.1:{sentinel.port}" for sentinel in group.sentinels],
        "include_sentinels": True}}]}
    exporter = _exporter(raw)
    url = f"http://{exporter.bound_address()}/metrics"
    rows = []
    try:
        found = _seconds_until(url, lambda text: len([
            1 for labels, up in values(text, "redis_up") if up == 1]) == 5)
        rows.append(("sentinel: master, replica and 3 Sentinels found",
                     f"5 of 5, all up {found:.2f} s after start"))
        old, new = group.master.port, group.replica.port
        wanted = {f"sessions/127.0.0.1:{new}": "master", f"sessions/127.0.0.1:{old}": "slave"}
        sent = time.monotonic()
        call(group.sentinel(group.sentinels[0].port), "SENTINEL", "FAILOVER", group.name)
        swapped = _seconds_until(url, lambda text: all(
            _roles(text).get(name) == role for name, role in wanted.items()))
        _seconds_until(url, lambda text: value(
            text, "redis_connection_exporter_failovers_total",
            parent="sessions/mymaster") == 1)
        counted = time.monotonic() - sent
        rows.append(("sentinel: SENTINEL FAILOVER -> roles swapped on /metrics",
                     f"{swapped:.2f} s (the failover itself takes 2.4-3.4 s here)"))
        rows.append(("sentinel: failovers_total counted (+switch-master, refresh 10s)",
                     f"{counted:.2f} s after SENTINEL FAILOVER"))
    finally:
        exporter.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--markdown", metavar="FILE", help="also write the table here")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str]] = []
    cluster = start_cluster()
    try:
        rows += cluster_rows(cluster, args.reads)
    finally:
        cluster.stop()
    group = start_sentinel_group()
    try:
        rows += sentinel_rows(group)
    finally:
        group.stop()
    table = "| measure | result |\n|---|---|\n" + "".join(
        f"| {name} | {result} |\n" for name, result in rows)
    print(table, end="")
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
