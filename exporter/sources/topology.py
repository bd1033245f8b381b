"""What CLUSTER SHARDS, CLUSTER NODES and SENTINEL replies say, as plain records. Pure.

Replies are RESP2 as the poll connection reads them (bytes, ints, nested lists). Facts the
parsers rely on, from captures of real servers (tests/data/topology/):
- SHARDS (7.0+) lists slot-less masters that CLUSTER SLOTS hides; 7.0.0 gives slots as
  strings, 7.0.1+ as integers (neither is read here). `health` is `fail` in the source
  though the docs say `failed` (both accepted); 7.0's `loading` is a replica at offset 0.
- NODES (3.0+) lists nodes still in `handshake` (a temporary id) or `noaddr`: skipped.
- `endpoint` is empty or `?` under `cluster-preferred-endpoint-type unknown-endpoint` or
  without an announced hostname: the node's `ip` is used then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MASTER, REPLICA = "master", "replica"
ONLINE, FAIL, PFAIL = "online", "fail", "pfail"
UNUSABLE_ENDPOINTS = ("", "?")


@dataclass(frozen=True)
class ClusterNode:
    """One node as the topology sees it; `master_id` is its own id for a master."""

    node_id: str
    ip: str
    port: int
    role: str
    health: str
    master_id: str
    endpoint: str = ""
    hostname: str = ""

    def host(self, address: str) -> str:
        """The host to connect to for `address` (endpoint | ip | hostname): the node's ip
        where the chosen one is missing or unusable."""
        chosen = {"endpoint": self.endpoint, "hostname": self.hostname}.get(address, self.ip)
        return self.ip if chosen in UNUSABLE_ENDPOINTS else chosen


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _pairs(flat: object) -> dict[str, object]:
    """A RESP2 flat `key, value, key, value` array (a map in RESP3) as a dict."""
    if isinstance(flat, Mapping):
        return {_text(key): value for key, value in flat.items()}
    if not isinstance(flat, list) or len(flat) % 2:
        raise ValueError("not a key/value array")
    return {_text(flat[index]): flat[index + 1] for index in range(0, len(flat), 2)}


def _port(value: object) -> int:
    try:
        port = int(_text(value) or 0)
    except ValueError:
        return 0
    return port if 0 < port < 65536 else 0


def _health(value: str) -> str:
    if value in ("fail", "failed"):
        return FAIL
    return ONLINE  # online; 7.0's loading (a replica at offset 0); anything newer is alive


def parse_cluster_shards(reply: object, tls: bool) -> list[ClusterNode]:
    """CLUSTER SHARDS -> nodes; `tls`: take each node's TLS port (the scheme in use)."""
    if not isinstance(reply, list):
        raise ValueError("CLUSTER SHARDS did not answer an array")
    nodes: list[ClusterNode] = []
    for shard in reply:
        listed = _pairs(shard).get("nodes")
        members = [_pairs(node) for node in listed] if isinstance(listed, list) else []
        masters = [_text(node.get("id")) for node in members
                   if _text(node.get("role")) == MASTER]
        # A shard whose master failed and has no successor yet: its nodes keep the master
        # they had (an empty id), and the first failover elsewhere is not confused with it.
        master_id = masters[0] if masters else ""
        for node in members:
            port = _port(node.get("tls-port")) if tls else 0
            port = port or _port(node.get("port"))
            node_id = _text(node.get("id"))
            if not port or not node_id:
                continue
            role = MASTER if _text(node.get("role")) == MASTER else REPLICA
            nodes.append(ClusterNode(
                node_id=node_id, ip=_text(node.get("ip")), port=port, role=role,
                health=_health(_text(node.get("health"))),
                master_id=node_id if role == MASTER else master_id,
                endpoint=_text(node.get("endpoint")), hostname=_text(node.get("hostname"))))
    return nodes


def parse_cluster_nodes(reply: object) -> list[ClusterNode]:
    """CLUSTER NODES (before 7.0) -> nodes, without those in handshake or without address."""
    nodes = []
    for line in _text(reply).splitlines():
        fields = line.split(" ")
        if len(fields) < 8:
            continue
        node_id, address, flags_text, master = fields[0], fields[1], fields[2], fields[3]
        flags = set(flags_text.split(","))
        if flags & {"handshake", "noaddr"}:
            continue
        client, _, rest = address.partition("@")
        _, _, hostname = rest.partition(",")
        host, _, port_text = client.rpartition(":")
        port = _port(port_text)
        if not port or not (host or "myself" in flags):  # myself: an ip not learnt yet
            continue
        role = MASTER if MASTER in flags else REPLICA
        health = FAIL if "fail" in flags else PFAIL if "fail?" in flags else ONLINE
        nodes.append(ClusterNode(
            node_id=node_id, ip=host.strip("[]"), port=port, role=role, health=health,
            master_id=node_id if role == MASTER else ("" if master == "-" else master),
            endpoint=host.strip("[]"), hostname=hostname))
    return nodes


def promoted_masters(before: Iterable[ClusterNode], after: Iterable[ClusterNode]) -> int:
    """Failovers between two topologies: masters now that were replicas before."""
    was_replica = {node.node_id for node in before if node.role == REPLICA}
    return sum(1 for node in after if node.role == MASTER and node.node_id in was_replica)


@dataclass(frozen=True)
class SentinelEntry:
    """One entry of SENTINEL MASTERS, REPLICAS or SENTINELS."""

    name: str
    ip: str
    port: int
    flags: frozenset[str]
    config_epoch: int = 0

    @property
    def health(self) -> str:
        if self.flags & {"o_down", "disconnected"}:
            return FAIL
        return PFAIL if "s_down" in self.flags else ONLINE


def parse_sentinel_entries(reply: object) -> list[SentinelEntry]:
    """SENTINEL MASTERS / REPLICAS / SENTINELS -> entries (values are bulk strings)."""
    if not isinstance(reply, list):
        raise ValueError("SENTINEL did not answer an array")
    entries = []
    for item in reply:
        fields = _pairs(item)
        port = _port(fields.get("port"))
        ip = _text(fields.get("ip"))
        if not ip or not port:
            continue
        try:
            epoch = int(_text(fields.get("config-epoch")) or 0)
        except ValueError:
            epoch = 0
        entries.append(SentinelEntry(
            name=_text(fields.get("name")), ip=ip, port=port,
            flags=frozenset(_text(fields.get("flags")).split(",")), config_epoch=epoch))
    return entries
