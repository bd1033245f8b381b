"""A Redis Cluster entry: every node as its own target, from CLUSTER SHARDS (7.0+) or NODES.

Each refresh asks the source that answered last, then the seeds, then the nodes of the last
topology, so a cluster whose seed nodes were all replaced is still followed. When every
source fails, the last good topology stays. Nodes the topology marks failed stay targets
(their own poll says whether they answer); nodes that leave it are removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from exporter.config.model import SourceEntry, TargetConfig
from exporter.conn.connection import PollConnection
from exporter.conn.errors import classify
from exporter.conn.watchdog import Watchdog
from exporter.expose.families import Kind
from exporter.logsetup import kv
from exporter.sources.asking import FoundNode, SourceAsker, node_target
from exporter.sources.topology import (
    ClusterNode,
    parse_cluster_nodes,
    parse_cluster_shards,
    promoted_masters,
)

log = logging.getLogger(__name__)


class EmptyTopology(ValueError):
    """A source answered with no usable node (not in cluster mode, or all in handshake)."""


class ClusterDiscovery:
    def __init__(self, entry: SourceEntry, timeout: float, watchdog: Watchdog,
                 on_error: Callable[[str], None], on_failover: Callable[[str, int], None]) -> None:
        assert entry.cluster is not None
        self.entry = entry
        self.source = entry.cluster
        self._asker = SourceAsker(entry.name, timeout, watchdog, on_error)
        self._on_failover = on_failover
        self._nodes: list[ClusterNode] = []  # the last good topology
        self._shards_unknown: set[str] = set()  # addresses that answered SHARDS unknown
        self._tls = entry.template.endpoint.scheme == "rediss"

    def refresh(self) -> list[FoundNode] | None:
        """The nodes now; None when every source failed (the caller keeps the last)."""
        seeds = [node_target(self.entry, seed.host, seed.port) for seed in self.source.seeds]
        known = [self._target(node) for node in self._nodes]
        nodes = self._asker.first_answer(seeds + known, self._read)
        if nodes is None:
            return None
        promoted = promoted_masters(self._nodes, nodes)
        if promoted:
            log.info("cluster failover %s", kv(parent=self.entry.name, promoted=promoted))
            self._on_failover(self.entry.name, promoted)
        self._nodes = nodes
        return [FoundNode(self._target(node), node.node_id, node.health) for node in nodes]

    def _target(self, node: ClusterNode) -> TargetConfig:
        return node_target(self.entry, node.host(self.source.address), node.port)

    def _read(self, conn: PollConnection) -> list[ClusterNode]:
        address = conn.target.endpoint.address
        nodes: list[ClusterNode] | None = None
        if address not in self._shards_unknown:
            [(reply, _)] = conn.execute([("CLUSTER", "SHARDS")], error_replies=True)
            if not isinstance(reply, Exception):
                nodes = parse_cluster_shards(reply, self._tls)
            elif classify(reply) == Kind.UNSUPPORTED:  # before 7.0
                self._shards_unknown.add(address)
            else:
                raise reply
        if nodes is None:
            [(reply, _)] = conn.execute([("CLUSTER", "NODES")], error_replies=True)
            if isinstance(reply, Exception):
                raise reply
            nodes = parse_cluster_nodes(reply)
        if not nodes:
            raise EmptyTopology("no usable node in the topology")
        # A node that never met another does not know its own ip: it is the one asked.
        host = conn.target.endpoint.host
        return [node if node.ip else replace(node, ip=host) for node in nodes]

    def close(self) -> None:
        self._asker.close()
