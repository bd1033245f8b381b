"""The typed, frozen configuration. `config_loader` builds it; everything else only reads it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.config.allowlist import Rule
from exporter.config.secret import Secret

GROUP_BY_FIELDS = (
    "name",
    "client_type",
    "user",
    "db",
    "lib_name",
    "lib_ver",
    "cmd",
    "addr_host",
    "resp",
    "io_thread",
)
DEFAULT_PORT = 6379


@dataclass(frozen=True)
class TLSConfig:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class CommandNames:
    """Names of commands that managed services rename."""

    client: str = "CLIENT"
    config: str = "CONFIG"


@dataclass(frozen=True)
class ProbeConfig:
    enabled: bool = True
    interval: float = 60.0


@dataclass(frozen=True)
class Endpoint:
    """Where a target lives: TCP host and port, or a unix socket path."""

    scheme: str  # redis, rediss or unix
    host: str = ""
    port: int = DEFAULT_PORT
    path: str = ""
    db: int = 0

    @property
    def address(self) -> str:
        """`<host>:<port>` or the socket path: where the exporter connects (no db)."""
        if self.scheme == "unix":
            return self.path
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def display(self) -> str:
        """`<host>:<port>[/<db>]` or the socket path: the default `target` label."""
        if self.scheme == "unix":
            return f"{self.path}?db={self.db}" if self.db else self.path
        elif ":" in self.host:
            base = f"[{self.host}]:{self.port}"
        else:
            base = f"{self.host}:{self.port}"
        return f"{base}/{self.db}" if self.db else base


@dataclass(frozen=True)
class TargetConfig:
    name: str
    endpoint: Endpoint
    username: str | None = None
    password: Secret | None = None
    password_file: str | None = None
    password_env: str | None = None
    tls: TLSConfig = field(default_factory=TLSConfig)
    max_clients: int | None = None
    commands: CommandNames = field(default_factory=CommandNames)
    connect_probe: ProbeConfig = field(default_factory=ProbeConfig)
    source: str = "static"  # static, dynamic (a scrape registered it), cluster or sentinel
    parent: str = ""  # the entry that found a cluster or Sentinel node (<entry>/<master>)
    sentinel: bool = False  # a Sentinel process: plain commands only (no CONFIG)


ADDRESS_CHOICES = ("endpoint", "ip", "hostname")


@dataclass(frozen=True)
class ClusterSource:
    """`targets[].cluster`: every node of a Redis Cluster, found from the seeds."""

    seeds: tuple[Endpoint, ...]
    refresh: float = 60.0
    address: str = "endpoint"  # which of a node's addresses to connect to (ADDRESS_CHOICES)


@dataclass(frozen=True)
class SentinelSource:
    """`targets[].sentinel`: the masters and replicas that Sentinels watch, and optionally
    the Sentinels. Their own credentials: the nodes' are never sent to a Sentinel."""

    seeds: tuple[Endpoint, ...]
    masters: tuple[str, ...] = ()  # empty: every master the Sentinels monitor
    refresh: float = 10.0
    include_sentinels: bool = False
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    password_file: str | None = None
    password_env: str | None = None


@dataclass(frozen=True)
class SourceEntry:
    """A `targets[]` entry that finds its targets: `template` holds the settings each node
    gets (its endpoint is the first seed until a node's own replaces it)."""

    name: str
    template: TargetConfig
    cluster: ClusterSource | None = None
    sentinel: SentinelSource | None = None


@dataclass(frozen=True)
class PollConfig:
    interval: float = 15.0
    client_list_interval: float = 15.0
    timeout: float = 5.0
    concurrency: int = 16


@dataclass(frozen=True)
class RewriteRule:
    match: re.Pattern[str]
    replace: str


@dataclass(frozen=True)
class BackoffConfig:
    above_clients: int | None = 5000
    interval: float = 300.0


@dataclass(frozen=True)
class Buckets:
    idle_seconds: tuple[float, ...] = (1, 5, 15, 60, 300, 900, 3600, 86400)
    age_seconds: tuple[float, ...] = (10, 60, 300, 1800, 3600, 21600, 86400, 604800)
    query_buffer_bytes: tuple[float, ...] = (0, 1024, 16384, 65536, 1048576, 16777216, 268435456)
    output_buffer_bytes: tuple[float, ...] = (0, 1024, 16384, 65536, 1048576, 16777216, 268435456)
    memory_bytes: tuple[float, ...] = (
        16384, 32768, 65536, 131072, 1048576, 16777216, 268435456,
    )


DEFAULT_NAME_REWRITE = (
    RewriteRule(
        re.compile(r"(.+?)-[bcdfghjklmnpqrstvwxz2456789]{6,10}-[bcdfghjklmnpqrstvwxz2456789]{5}"),
        r"\1",
    ),
    RewriteRule(re.compile(r"(.+?)[-_.@][0-9a-f]{8,}"), r"\1"),
)


# `redis-py(django-redis_v6.0.0;celery_v5.4)` -> `redis-py`: since 7.2, libraries name their
# upstream wrappers and versions inside lib-name (redis-py DriverInfo, jedis, node-redis tags).
DEFAULT_LIB_NAME_REWRITE = (RewriteRule(re.compile(r"([^(]+?)\s*\(.*\)"), r"\1"),)


@dataclass(frozen=True)
class ClientListConfig:
    group_by: tuple[str, ...] = ("name", "client_type")
    max_groups: int = 50
    name_rewrite: tuple[RewriteRule, ...] = DEFAULT_NAME_REWRITE
    lib_name_rewrite: tuple[RewriteRule, ...] = DEFAULT_LIB_NAME_REWRITE
    idle_threshold: float = 60.0
    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    buckets: Buckets = field(default_factory=Buckets)


@dataclass(frozen=True)
class AuthModule:
    """Named credentials for discovered targets, and the `targets` they may go to."""

    name: str
    settings: Mapping[str, Any] = field(repr=False)  # as read_target_settings returns them
    targets: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class DynamicTargetsConfig:
    """`dynamic_targets`: which discovered targets /scrape may register, and the caps."""

    allow: tuple[Rule, ...] = ()  # empty: no dynamic targets (/scrape answers 404, as before)
    max_targets: int = 1000
    max_pending: int = 100
    expire_after: float = 600.0
    defaults: Mapping[str, Any] = field(default_factory=dict)  # PUBLIC_DEFAULTS only

    @property
    def enabled(self) -> bool:
        return bool(self.allow)


@dataclass(frozen=True)
class Config:
    poll: PollConfig = field(default_factory=PollConfig)
    client_list: ClientListConfig = field(default_factory=ClientListConfig)
    targets: tuple[TargetConfig, ...] = ()  # the static ones (`url`)
    sources: tuple[SourceEntry, ...] = ()  # `cluster` and `sentinel` entries
    auth_modules: Mapping[str, AuthModule] = field(default_factory=dict)
    dynamic: DynamicTargetsConfig = field(default_factory=DynamicTargetsConfig)
