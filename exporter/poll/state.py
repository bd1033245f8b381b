"""What one target's poller remembers between polls, and the decisions made from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.config.model import Config
from exporter.pipeline.aggregate import AggregateState
from exporter.pipeline.clientlist import Histogram
from exporter.pipeline.grouping import CappedGroups
from exporter.pipeline.info import info_number, version_tuple

BYTES_PER_CLIENT_GUESS = 280.0  # CLIENT LIST reply size per client before we measured one
OBUF_MARGIN = 1.2


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


@dataclass
class ClientListState:
    """What the last CLIENT LIST gave, kept between CLIENT LIST polls."""

    groups: CappedGroups | None = None
    histograms: dict[str, Histogram] = field(default_factory=dict)
    state: AggregateState = field(default_factory=AggregateState)
    last_run: float | None = None
    bytes_per_client: float = BYTES_PER_CLIENT_GUESS
    retry_at: dict[str, float] = field(default_factory=dict)

    def forget(self) -> None:
        """Drop the families from CLIENT LIST: never served stale."""
        self.groups, self.histograms = None, {}

    def interval(self, config: Config, facts: ServerFacts) -> float:
        """client_list_interval, or the backoff interval on very large servers."""
        backoff = config.client_list.backoff
        clients = facts.connected_clients
        if backoff.above_clients is not None and clients is not None \
                and clients > backoff.above_clients:
            return max(backoff.interval, config.poll.client_list_interval)
        return config.poll.client_list_interval

    def waiting(self, now: float, interval: float, poll_interval: float) -> bool:
        # Half a poll interval of slack, so jitter never pushes CLIENT LIST a whole poll late.
        return self.last_run is not None and now - self.last_run < interval - poll_interval / 2

    def fits_output_buffer(self, facts: ServerFacts) -> bool:
        """A reply over the normal-class hard limit would get the held connection killed."""
        clients = facts.connected_clients
        return not (facts.obuf_hard_limit > 0 and clients is not None
                    and clients * self.bytes_per_client * OBUF_MARGIN >= facts.obuf_hard_limit)


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
