"""CLUSTER SHARDS / NODES and SENTINEL replies captured from real servers (tests/data/topology/,
written by tests/data/capture_topology.py) through the poll connection's own RESP reader and
the parsers, checked against what the capture recorded of each node (its meta.json: ports,
ids and roles read on the servers, not by the code under test)."""

from __future__ import annotations

import json
import socket
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from exporter.conn.errors import classify
from exporter.conn.resp import ReplyReader
from exporter.expose.families import Kind
from exporter.pipeline.server import ServerFacts
from exporter.sources.topology import (
    FAIL,
    MASTER,
    ONLINE,
    REPLICA,
    ClusterNode,
    parse_cluster_nodes,
    parse_cluster_shards,
    parse_sentinel_entries,
    promoted_masters,
)

DATA = Path(__file__).resolve().parent / "data" / "topology"
SHARDS_BUILDS = ("redis-7.0", "redis-7.4", "redis-8.0", "valkey-8.0")
NODES_BUILDS = ("redis-5.0", "redis-6.0", "redis-6.2", *SHARDS_BUILDS)


def reply(build: str, name: str) -> Any:
    """One captured reply, read as the poll connection reads it."""
    raw = (DATA / build / name).read_bytes()
    left, right = socket.socketpair()
    with left, right:
        left.sendall(raw)
        return ReplyReader(right).read()


@cache
def meta(build: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / build / "meta.json").read_text("utf-8"))
    return loaded


def recorded(build: str, name: str) -> set[tuple[int, str, int]]:
    """(port, role, master's port or own) of each node, as the capture read the servers."""
    nodes = meta(build)["files"][name]["nodes"]
    return {(node["port"], node["role"], node["master_port"] or node["port"])
            for node in nodes}


def parsed(nodes: list[ClusterNode]) -> set[tuple[int, str, int]]:
    port_of = {node.node_id: node.port for node in nodes}
    return {(node.port, node.role, port_of.get(node.master_id, 0)) for node in nodes}


@pytest.mark.parametrize("build", SHARDS_BUILDS)
def test_shards_list_every_node_with_role_and_master(build: str) -> None:
    nodes = parse_cluster_shards(reply(build, "cluster_shards.resp"), tls=False)
    assert parsed(nodes) == recorded(build, "cluster_shards.resp")
    ids = {node["port"]: node["node_id"]
           for node in meta(build)["files"]["cluster_shards.resp"]["nodes"]}
    assert {node.port: node.node_id for node in nodes} == ids
    assert {node.ip for node in nodes} == {"127.0.0.1"}
    # Idle replicas right after forming say `loading` (offset 0) on every build: online.
    assert {node.health for node in nodes} == {ONLINE}


@pytest.mark.parametrize("build", NODES_BUILDS)
def test_nodes_list_every_node_with_role_and_master(build: str) -> None:
    nodes = parse_cluster_nodes(reply(build, "cluster_nodes.resp"))
    assert parsed(nodes) == recorded(build, "cluster_nodes.resp")
    assert {node.health for node in nodes} == {ONLINE}


@pytest.mark.parametrize("build", ("redis-5.0", "redis-6.0", "redis-6.2"))
def test_shards_before_7_0_is_an_unknown_subcommand(build: str) -> None:
    error = reply(build, "cluster_shards_error.resp")
    assert isinstance(error, Exception)
    assert classify(error) == Kind.UNSUPPORTED  # so discovery falls back to NODES


@pytest.mark.parametrize("build", ("redis-7.4", "redis-8.0", "valkey-8.0"))
def test_myshardid_names_the_shard_on_7_2_and_later(build: str) -> None:
    shard = reply(build, "cluster_myshardid.resp")
    assert isinstance(shard, bytes) and len(shard) == 40
    # The replica asked replicates the master asked: one shard.
    assert reply(build, "replica_cluster_myshardid.resp") == shard
    facts = ServerFacts()
    facts.learn_cluster_ids([reply(build, "cluster_myid.resp"), shard])
    assert facts.node_id == meta(build)["files"]["cluster_myid.resp"]["asked_node_id"]
    assert facts.shard_id == shard.decode()


def test_before_7_2_myshardid_is_refused_and_leaves_the_shard_empty() -> None:
    refused = reply("redis-7.0", "cluster_myshardid.resp")
    assert isinstance(refused, Exception)
    facts = ServerFacts()
    facts.learn_cluster_ids([reply("redis-7.0", "cluster_myid.resp"), refused])
    assert facts.node_id == meta("redis-7.0")["files"]["cluster_myid.resp"]["asked_node_id"]
    assert facts.shard_id == ""


def test_a_killed_replica_is_fail_in_shards_and_nodes() -> None:
    dead = 38617  # killed 4.8 s before the capture (meta.json)
    for nodes in (parse_cluster_shards(reply("redis-7.0", "cluster_shards_fail.resp"), False),
                  parse_cluster_nodes(reply("redis-7.0", "cluster_nodes_fail.resp"))):
        health = {node.port: node.health for node in nodes}
        assert health.pop(dead) == FAIL
        assert set(health.values()) == {ONLINE}


def test_a_cluster_failover_is_one_promoted_master() -> None:
    before = parse_cluster_shards(reply("redis-7.0", "cluster_shards.resp"), False)
    after = parse_cluster_shards(reply("redis-7.0", "cluster_shards_failover.resp"), False)
    assert promoted_masters(before, after) == 1
    roles = {node.port: node.role for node in after}
    assert (roles[39404], roles[27405]) == (MASTER, REPLICA)
    nodes_after = parse_cluster_nodes(reply("redis-7.0", "cluster_nodes_failover.resp"))
    assert promoted_masters(parse_cluster_nodes(reply("redis-7.0", "cluster_nodes.resp")),
                            nodes_after) == 1


def test_a_slot_less_master_is_listed_by_shards_and_nodes() -> None:
    new = 35502
    for nodes in (parse_cluster_shards(reply("redis-7.0", "cluster_shards_slotless.resp"),
                                       False),
                  parse_cluster_nodes(reply("redis-7.0", "cluster_nodes_slotless.resp"))):
        [added] = [node for node in nodes if node.port == new]
        assert (added.role, added.master_id) == (MASTER, added.node_id)
        assert len(nodes) == 7


def test_a_node_in_handshake_is_skipped() -> None:
    nodes = parse_cluster_nodes(reply("redis-7.0", "cluster_nodes_handshake.resp"))
    text = reply("redis-7.0", "cluster_nodes_handshake.resp").decode()
    assert "handshake" in text
    assert len(nodes) == 6 and all(node.port != 35502 for node in nodes)


@pytest.mark.parametrize("build", ("redis-7.0", "valkey-8.0"))
def test_hostnames_and_endpoints(build: str) -> None:
    named = parse_cluster_shards(reply(build, "cluster_shards_hostnames.resp"), False)
    for node in named:  # the node asked prefers hostnames: endpoint is the hostname
        host = f"node-{node.port}.redis.local"
        assert (node.host("endpoint"), node.host("hostname"), node.host("ip")) == (
            host, host, "127.0.0.1")
    unknown = parse_cluster_shards(reply(build, "cluster_shards_unknown_endpoint.resp"), False)
    assert {node.endpoint for node in unknown} == {""}
    assert {node.host("endpoint") for node in unknown} == {"127.0.0.1"}  # the ip stands in
    missing = parse_cluster_shards(reply(build, "cluster_shards_hostname_missing.resp"), False)
    endpoints = {node.port: node.endpoint for node in missing}
    assert "?" in endpoints.values()
    for node in missing:
        expected = "127.0.0.1" if node.endpoint == "?" else f"node-{node.port}.redis.local"
        assert node.host("endpoint") == expected
        assert node.host("hostname") == expected  # no hostname announced: the ip
    nodes = parse_cluster_nodes(reply(build, "cluster_nodes_hostnames.resp"))
    assert {node.hostname for node in nodes} == {f"node-{node.port}.redis.local"
                                                 for node in nodes}


@pytest.mark.parametrize("build", ("redis-6.2", "redis-7.0", "valkey-8.0"))
def test_sentinel_masters_replicas_and_sentinels(build: str) -> None:
    nodes = meta(build)["files"]["sentinel_masters.resp"]["nodes"]
    asked = meta(build)["files"]["sentinel_masters.resp"]["asked_port"]
    by_role: dict[str, set[int]] = {}
    for node in nodes:
        by_role.setdefault(node["role"], set()).add(node["port"])
    [master] = parse_sentinel_entries(reply(build, "sentinel_masters.resp"))
    assert (master.name, {master.port}, master.config_epoch) == (
        "mymaster", by_role["master"], 0)
    assert master.health == ONLINE and "master" in master.flags
    replicas = parse_sentinel_entries(reply(build, "sentinel_replicas.resp"))
    assert {entry.port for entry in replicas} == by_role["replica"]
    others = parse_sentinel_entries(reply(build, "sentinel_sentinels.resp"))
    assert {entry.port for entry in others} == by_role["sentinel"] - {asked}
    [after] = parse_sentinel_entries(reply(build, "sentinel_masters_after_failover.resp"))
    assert after.config_epoch > master.config_epoch
    assert {after.port} == by_role["replica"]  # the replica was promoted
    moved = parse_sentinel_entries(reply(build, "sentinel_replicas_after_failover.resp"))
    assert {entry.port for entry in moved} == by_role["master"]


@pytest.mark.parametrize("build", ("redis-7.0", "valkey-8.0"))
def test_a_sentinel_answers_plain_commands_and_refuses_config_and_multi(build: str) -> None:
    for name in ("sentinel_config_get_maxclients.resp", "sentinel_multi.resp",
                 "sentinel_cluster_myid.resp"):
        error = reply(build, name)
        assert isinstance(error, Exception) and classify(error) == Kind.UNSUPPORTED, name
    info = reply(build, "sentinel_info_sections.resp")
    assert isinstance(info, bytes) and b"maxclients:" in info  # saturation without CONFIG
    assert reply(build, "sentinel_client_no_evict.resp") == b"OK"
