"""What the held connection has learned about its server, from INFO and CONFIG GET."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from exporter.pipeline.info import info_number, version_tuple


@dataclass
class ServerFacts:
    """Learned from INFO and CONFIG GET on the held connection."""

    version: tuple[int, ...] | None = None
    config_max_clients: float | None = None
    server_timeout: float = 0.0
    obuf_hard_limit: float = 0.0
    config_loaded: bool = False
    run_id: str = ""
    start_time: float | None = None
    headroom: float | None = None
    connected_clients: float | None = None
    node_id: str = ""  # CLUSTER MYID, on cluster nodes
    shard_id: str = ""  # CLUSTER MYSHARDID (7.2+), on cluster nodes

    def learn_info(self, info: Mapping[str, str], now_wall: float) -> None:
        if "redis_version" in info:
            self.version = version_tuple(info["redis_version"])
        run_id = info.get("run_id", "")
        uptime = info_number(info, "uptime_in_seconds")
        # Once per run_id: uptime's one-second jitter must not look like a restart.
        if uptime is not None and (run_id != self.run_id or self.start_time is None):
            self.start_time = float(round(now_wall - uptime))
        self.run_id = run_id
        self.connected_clients = info_number(info, "connected_clients")

    def learn_config(self, values: Mapping[str, str]) -> None:
        self.config_loaded = True
        self.config_max_clients = _number(values.get("maxclients"))
        self.server_timeout = _number(values.get("timeout")) or 0.0
        self.obuf_hard_limit = normal_hard_limit(values.get("client-output-buffer-limit"))

    def learn_cluster_ids(self, replies: list[object]) -> None:
        """CLUSTER MYID and MYSHARDID replies; an error reply leaves the id unknown."""
        ids = [reply.decode("ascii", "replace") if isinstance(reply, bytes) else ""
               for reply in replies]
        self.node_id = ids[0] if ids else ""
        self.shard_id = ids[1] if len(ids) > 1 else ""

    def shard_ids(self) -> bool:
        """Redis 7.2+ (and Valkey, which reports 7.2.4): CLUSTER MYSHARDID."""
        return self.version is not None and self.version >= (7, 2)

    def modern(self) -> bool:
        """Redis 7.0+: multi-section INFO and CLIENT NO-EVICT."""
        return self.version is not None and self.version >= (7, 0)

    def full(self) -> bool:
        """The last INFO showed no headroom: Redis rejects new connections."""
        return self.headroom is not None and self.headroom <= 0

    def keepalive_interval(self, poll_interval: float) -> float | None:
        """PING more often than the server's `timeout` would close us (None: not needed)."""
        if self.server_timeout <= 0 or self.server_timeout / 2 >= poll_interval:
            return None
        return max(self.server_timeout / 2, 0.5)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def normal_hard_limit(text: str | None) -> float:
    """`normal 0 0 0 replica ...` -> the normal class's hard limit in bytes (0: none)."""
    if not text:
        return 0.0
    words = text.split()
    for index, word in enumerate(words[:-1]):
        if word == "normal":
            return _number(words[index + 1]) or 0.0
    return 0.0
