"""Cluster entries while the exporter runs: a reload that keeps an entry keeps its nodes'
pollers (and connections), one that changes node settings replaces them, one that drops the
entry drops its nodes; sharding applies to node target names; a node that is also a
configured target is polled once."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import yaml

from exporter.app import Exporter
from exporter.config.loader import build_config
from exporter.config.model import Config
from exporter.sharding import Shard
from tests.conftest import metrics_url
from tests.support.redis_server import RedisServer
from tests.support.scrape import body_when, fetch, value, values, wait_for
from tests.support.servers import ServerBuild
from tests.support.topology import call, one_node_cluster

INFO = "redis_connection_exporter_target_info"


def fetch_status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture(scope="module")
def node() -> Iterator[RedisServer]:
    server = one_node_cluster()
    yield server
    server.stop()


def _raw(node: RedisServer, **cluster_entry: Any) -> dict[str, Any]:
    entry = {"name": "shop", "cluster": {"seeds": [node.url], "refresh": "1s"},
             **cluster_entry}
    return {"poll": {"interval": "1s", "client_list_interval": "1s"},
            "defaults": {"connect_probe": {"enabled": False}}, "targets": [entry]}


def _config(raw: dict[str, Any]) -> Config:
    return build_config(yaml.safe_load(yaml.safe_dump(raw)), env={})


def test_a_reload_keeps_replaces_and_drops_node_targets(
        node: RedisServer, exporter_factory: Callable[..., Exporter]) -> None:
    current = {"raw": _raw(node)}
    exporter = exporter_factory(current["raw"], loader=lambda: _config(current["raw"]))
    url, name = metrics_url(exporter), f"shop/127.0.0.1:{node.port}"
    wait_for(lambda: value(fetch(url), "redis_up", target=name) == 1, message="node up")
    poller = exporter.pollers[name]
    assert exporter.reload() == []  # the same entry: the same poller, connection kept
    wait_for(lambda: name in exporter.pollers, message="node still polled")
    assert exporter.pollers[name] is poller
    current["raw"] = _raw(node, max_clients=77)  # a node setting: a new poller
    assert exporter.reload() == []
    wait_for(lambda: value(fetch(url), "redis_max_clients", target=name) == 77,
             message="the new node setting applied")
    assert exporter.pollers[name] is not poller
    current["raw"] = {**_raw(node), "targets": [{"name": "plain", "url": node.url}]}
    assert exporter.reload() == []  # the entry dropped: its node goes at once
    assert name not in exporter.pollers
    text = body_when(url, lambda body: value(body, "redis_up", target="plain") == 1,
                     "the plain target up")
    assert not values(text, INFO, target=name)


def test_node_targets_are_sharded_by_their_names(
        node: RedisServer, exporter_factory: Callable[..., Exporter]) -> None:
    name = f"shop/127.0.0.1:{node.port}"
    owner = Shard(0, 2).of(name)
    polling = exporter_factory(_raw(node), shard=Shard(owner, 2))
    other = exporter_factory(_raw(node), shard=Shard(1 - owner, 2))
    wait_for(lambda: value(fetch(metrics_url(polling)), "redis_up", target=name) == 1,
             message="the owning replica polls the node")
    wait_for(lambda: name in other.roster.known, message="the other replica knows it")
    assert name not in other.pollers
    assert not values(fetch(metrics_url(other)), INFO, target=name)
    answer = fetch_status(f"http://{other.bound_address()}/scrape?target="
                          f"{name.replace('/', '%2F')}")
    assert answer[0] == 404 and f"it is in shard {owner}" in answer[1]


def test_a_node_named_like_a_configured_target_is_polled_once(
        node: RedisServer, exporter_factory: Callable[..., Exporter]) -> None:
    name = f"shop/127.0.0.1:{node.port}"
    raw = _raw(node)
    raw["targets"].append({"name": name, "url": node.url})
    exporter = exporter_factory(raw)
    url = metrics_url(exporter)
    wait_for(lambda: value(fetch(url), "redis_up", target=name) == 1, message="polled")
    wait_for(lambda: "shop" in exporter._found, message="the topology read")
    [(labels, _)] = values(fetch(url), INFO, target=name)
    assert labels["source"] == "static"  # the configured target wins; the node is skipped



def test_a_cluster_node_of_every_build_is_found_with_its_own_ids(
        server_build: ServerBuild, exporter_factory: Callable[..., Exporter]) -> None:
    """CLUSTER SHARDS from 7.0, CLUSTER NODES before (where a lone node does not know its
    own ip); the node's own MYID, and MYSHARDID from 7.2 (and Valkey)."""
    node = one_node_cluster(server_build=server_build)
    try:
        admin = redis.Redis(host="127.0.0.1", port=node.port, protocol=2,
                            decode_responses=True)
        wanted = {"node_id": call(admin, "CLUSTER", "MYID"),
                  "shard": call(admin, "CLUSTER", "MYSHARDID")
                  if server_build.at_least(7, 2) else "",
                  "source": "cluster", "parent": "shop", "health": "online"}
        exporter = exporter_factory(_raw(node))
        name = f"shop/127.0.0.1:{node.port}"

        def labelled(body: str) -> bool:
            found = values(body, INFO, target=name)
            return value(body, "redis_up", target=name) == 1 and bool(found) and all(
                found[0][0][key] == wanted[key] for key in wanted)

        # The topology's node id comes first; the node's own ids with its next CONFIG.
        body_when(metrics_url(exporter), labelled, "the node polled, with its own ids",
                  timeout=20)
    finally:
        node.stop()
