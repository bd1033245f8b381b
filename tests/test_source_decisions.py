"""The decisions of cluster and Sentinel entries, with plain numbers and records: when the
topology is read again, what counts as a failover, which password a node keeps."""

from __future__ import annotations

from dataclasses import replace

from exporter.config.model import Endpoint, SentinelSource, SourceEntry, TargetConfig
from exporter.config.secret import Secret
from exporter.conn.watchdog import Watchdog
from exporter.sources.changes import keep_rotated_password
from exporter.sources.runner import WAKE_SECONDS, RefreshTimer
from exporter.sources.sentinel import SentinelDiscovery
from exporter.sources.topology import (
    MASTER,
    ONLINE,
    REPLICA,
    ClusterNode,
    SentinelEntry,
    promoted_masters,
)


def test_the_first_read_is_due_at_once_then_on_the_interval() -> None:
    timer = RefreshTimer(60.0)
    assert timer.due(1000.0)
    timer.read_at(1000.0)
    assert not timer.due(1059.9)
    assert timer.due(1060.0)
    assert timer.wait(1000.0) == WAKE_SECONDS  # wakes to look at its nodes' polls
    assert timer.wait(1059.5) == 0.5


def test_a_node_that_newly_fails_its_poll_makes_a_read_due_once() -> None:
    timer = RefreshTimer(60.0)
    timer.read_at(1000.0)
    assert not timer.polls_failed([])
    assert timer.polls_failed(["shop/10.0.0.3:6379"])
    assert timer.due(1001.0)
    timer.read_at(1001.0)
    # Still down a second later: no read every second for a dead node.
    assert not timer.polls_failed(["shop/10.0.0.3:6379"])
    assert not timer.due(1002.0)
    # Another node fails: due again; the first recovers and fails again later: due again.
    assert timer.polls_failed(["shop/10.0.0.3:6379", "shop/10.0.0.4:6379"])
    timer.read_at(1003.0)
    assert not timer.polls_failed([])
    assert timer.polls_failed(["shop/10.0.0.3:6379"])


def test_a_trigger_makes_a_read_due_at_once() -> None:
    timer = RefreshTimer(10.0)
    timer.read_at(1000.0)
    timer.trigger()
    assert timer.due(1000.1)
    assert timer.wait(1000.1) == 0.0


def _node(node_id: str, role: str, master: str) -> ClusterNode:
    return ClusterNode(node_id, "10.0.0.1", 6379, role, ONLINE, master)


def test_a_failover_is_a_replica_that_became_master() -> None:
    before = [_node("a", MASTER, "a"), _node("b", REPLICA, "a"),
              _node("c", MASTER, "c"), _node("d", REPLICA, "c")]
    swapped = [_node("a", REPLICA, "b"), _node("b", MASTER, "b"),
               _node("c", MASTER, "c"), _node("d", REPLICA, "c")]
    assert promoted_masters(before, swapped) == 1
    assert promoted_masters(swapped, swapped) == 0
    # A new node joins as a (slot-less) master: not a failover.
    assert promoted_masters(before, [*before, _node("e", MASTER, "e")]) == 0
    # The first read has nothing before it.
    assert promoted_masters([], before) == 0


def _sentinels(counted: list[tuple[str, int]]) -> SentinelDiscovery:
    seed = Endpoint("redis", host="10.0.1.1", port=26379)
    entry = SourceEntry("sessions", TargetConfig("sessions", seed, source="sentinel",
                                                 parent="sessions"),
                        sentinel=SentinelSource((seed,)))
    return SentinelDiscovery(entry, 1.0, Watchdog(), lambda kind: None,
                             lambda parent, count: counted.append((parent, count)))


def _master(epoch: int, port: int = 6379) -> SentinelEntry:
    return SentinelEntry("mymaster", "10.0.1.5", port, frozenset({"master"}), epoch)


def test_a_sentinel_failover_is_a_config_epoch_above_every_one_seen() -> None:
    counted: list[tuple[str, int]] = []
    discovery = _sentinels(counted)
    # First sight: the epoch of earlier failovers; the series starts at 0, so that
    # increase() in the RedisFailover alert sees the first failover.
    discovery._count_failover(_master(3))
    assert counted == [("sessions/mymaster", 0)]
    discovery._count_failover(_master(4, port=6380))
    assert counted == [("sessions/mymaster", 0), ("sessions/mymaster", 1)]
    # A Sentinel that has not caught up answers the old epoch, then one that has: one count.
    discovery._count_failover(_master(3))
    discovery._count_failover(_master(4, port=6380))
    assert counted == [("sessions/mymaster", 0), ("sessions/mymaster", 1)]


def test_a_topology_read_never_hands_a_node_back_its_start_up_password() -> None:
    node = TargetConfig("shop/10.0.0.3:6379", Endpoint("redis", host="10.0.0.3"),
                        password=Secret("old"), password_file="/run/secrets/shop")
    rotated = replace(node, password=Secret("new"))  # the node's own file watch did this
    assert keep_rotated_password(node, rotated) is rotated
    moved = replace(node, max_clients=10)  # any other change is a change
    assert keep_rotated_password(moved, rotated) is moved
    assert keep_rotated_password(node, None) is node
