"""Golden exposition support: render fixture replies the way /metrics does, and read them back.

Rendering runs the poll path itself: the fixture replies of INFO and CLIENT LIST, laid out as
one round trip of the poll's own steps (`pipeline/steps.py`), go through the poller's digest
(`pipeline/digest.py`: `PollDigest.take` step by step, then `view()`); `render_redis` +
`render_self` per target, merged into one `Snapshot`; `assemble` joins the snapshots family by
family. The clock and the exporter's own state are fixed, so the text is byte-for-byte
reproducible.

`FIXTURES` says which server each version directory comes from, and `CLIENT_LIST_SINCE` /
`INFO_SINCE` which of the fields the tests depend on that server has (the field tables of
shared/reference, as the real captures confirm), so that version-specific expectations follow
the servers, not 7.0.

`reference_clients` is a deliberately naive CLIENT LIST reader (split on spaces, then on the
first `=`), independent of `exporter.pipeline.clientlist`, for computing expectations in tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from exporter.config.model import ClientListConfig
from exporter.expose.exposition import assemble
from exporter.expose.render import SelfView, render_redis, render_self
from exporter.expose.snapshot import Snapshot
from exporter.pipeline.digest import DigestSettings, PollDigest, RedisView, TargetMemory
from exporter.pipeline.steps import Round, client_list_step, info_step

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.join(TESTS_DIR, "data")
GOLDEN_DIR = os.path.join(TESTS_DIR, "golden")

EDGE_INFO = "redis-7.0/info.txt"  # edge CLIENT LIST files are rendered with the captured INFO

# (first Redis version, first Valkey version) with a field; None: never. Valkey forked from
# Redis 7.2.4, so "(7, 2)" on the Valkey side means every Valkey release.
Since = tuple[tuple[int, ...] | None, tuple[int, ...] | None]


@dataclass(frozen=True)
class FixtureServer:
    """The server a version directory of tests/data holds replies of (tests/data/README.md)."""

    directory: str
    server: str  # redis or valkey: INFO server_name, absent (redis) before Valkey
    version: str  # the product's own version: redis_version, or valkey_version on Valkey
    captured: bool  # False: synthesized by make_synthesized.py from the 7.0 capture
    # INFO sections the exporter asks for that this fixture's info.txt lacks: the original
    # 7.0 capture (and 8.2, made from it) predate `persistence` in the exporter's INFO.
    sections_missing: tuple[str, ...] = ()

    def has(self, since: Since) -> bool:
        """Whether this server has a field that came with `since` (see the tables below)."""
        first = since[0] if self.server == "redis" else since[1]
        return first is not None and tuple(map(int, self.version.split("."))) >= first


# CLIENT LIST fields the tests depend on: mission-anchors.md c.1, corrected by the captures
# (real 6.0.9 already prints argv-mem and tot-mem, which c.1 dates to 6.2.0).
CLIENT_LIST_SINCE: dict[str, Since] = {
    "user": ((6, 0), (7, 2)),
    "tot-mem": ((6, 0), (7, 2)),
    "laddr": ((6, 2), (7, 2)),
    "resp": ((7, 0), (7, 2)),
    "lib-name": ((7, 2), (7, 2)),
    "watch": ((7, 4), (8, 0)),
    "io-thread": ((8, 0), None),
    "tot-net-in": ((8, 2), (8, 0)),  # Redis: after 8.0 (real 8.0.2 lacks it), not verified
    "capa": (None, (8, 1)),
}

# The section of INFO_FIELDS outside `clients` and `stats`, for sections_missing.
INFO_SECTION = {"loading": "persistence"}

# INFO fields the exporter reads that not every server has: mission-anchors.md c.2/c.3 and the
# matrix of real-servers.md section 2, which the captures agree with. Fields missing here
# (connected_clients, blocked_clients, connected_slaves, client_recent_max_*_buffer,
# mem_clients_normal, total_connections_received, rejected_connections) are on every server.
INFO_SINCE: dict[str, Since] = {
    "tracking_clients": ((6, 0), (7, 2)),
    "clients_in_timeout_table": ((6, 0), (7, 2)),
    "cluster_connections": ((6, 2), (7, 2)),
    "maxclients": ((6, 2), (7, 2)),
    "evicted_clients": ((7, 0), (7, 2)),
    "pubsub_clients": ((7, 4), (8, 0)),
    "watching_clients": ((7, 4), (8, 0)),
    "client_query_buffer_limit_disconnections": ((7, 4), (8, 0)),
    "client_output_buffer_limit_disconnections": ((7, 4), (8, 0)),
    "redis_mode": ((0,), None),  # Valkey 8 says server_mode
    "server_mode": (None, (7, 2)),
    "server_name": (None, (7, 2)),
    "valkey_version": (None, (7, 2)),
    "paused_reason": (None, (8, 1)),
}

FIXTURES: dict[str, FixtureServer] = {fixture.directory: fixture for fixture in (
    FixtureServer("redis-5.0", "redis", "5.0.10", captured=True),
    FixtureServer("redis-6.0", "redis", "6.0.9", captured=True),
    FixtureServer("redis-6.2", "redis", "6.2.14", captured=True),
    FixtureServer("redis-7.0", "redis", "7.0.15", captured=True,
                  sections_missing=("persistence",)),
    FixtureServer("redis-7.4", "redis", "7.4.1", captured=True),
    FixtureServer("redis-8.0", "redis", "8.0.2", captured=True),
    FixtureServer("redis-8.2", "redis", "8.2.1", captured=False,
                  sections_missing=("persistence",)),
    FixtureServer("valkey-8.0", "valkey", "8.0.1", captured=True),
    FixtureServer("valkey-8.1", "valkey", "8.1.1", captured=True),
)}
VERSIONS = tuple(FIXTURES)

NOW = 1_764_028_800.0  # the fixed wall clock: start_time = NOW - uptime_in_seconds


@dataclass(frozen=True)
class TargetCase:
    """One target of a golden: its name and the fixture replies it serves."""

    target: str
    info: str  # path under tests/data
    client_list: str  # path under tests/data


@dataclass(frozen=True)
class GoldenCase:
    """One golden file: `tests/golden/<name>.prom`."""

    name: str
    targets: tuple[TargetCase, ...]
    group_by: tuple[str, ...] = ("name", "client_type")

    @property
    def path(self) -> str:
        return os.path.join(GOLDEN_DIR, f"{self.name}.prom")

    def config(self) -> ClientListConfig:
        return ClientListConfig(group_by=self.group_by)


def _version_case(version: str) -> GoldenCase:
    return GoldenCase(version, (TargetCase("cache", f"{version}/info.txt",
                                           f"{version}/client_list.txt"),))


def _edge_case(name: str, group_by: tuple[str, ...] = ("name", "client_type")) -> GoldenCase:
    return GoldenCase(f"edge-{name.replace('_', '-')}",
                      (TargetCase("cache", EDGE_INFO, f"edge/client_list_{name}.txt"),),
                      group_by)


GOLDEN_CASES: tuple[GoldenCase, ...] = (
    *(_version_case(version) for version in VERSIONS),
    _edge_case("odd_names"),
    _edge_case("malformed"),
    _edge_case("ipv6_unix", ("name", "client_type", "addr_host")),
    # Two targets with different family sets (5.0 has no maxclients, no tot-mem), so that
    # `assemble` must interleave them per family and skip what one target lacks.
    GoldenCase("two-targets", (
        TargetCase("cache", "redis-7.0/info.txt", "redis-7.0/client_list.txt"),
        TargetCase("sessions", "redis-5.0/info.txt", "redis-5.0/client_list.txt"),
    ), ("name", "client_type", "user")),
)
CASES_BY_NAME = {case.name: case for case in GOLDEN_CASES}


def read_data(relative: str) -> bytes:
    with open(os.path.join(DATA_DIR, relative), "rb") as handle:
        return handle.read()


def redis_view(info_raw: bytes, list_raw: bytes, config: ClientListConfig) -> RedisView:
    """What one successful poll (INFO + CLIENT LIST in one round trip, no CONFIG) renders."""
    sent = Round((info_step(modern=True), client_list_step("CLIENT")))
    digest = PollDigest(TargetMemory(), DigestSettings(config), NOW)
    for step, replies in sent.split([info_raw, list_raw]):
        digest.take(step, replies)
    return digest.view()


def self_view(client_list_bytes: int) -> SelfView:
    """A fixed, plausible exporter state for one target."""
    return SelfView(
        pool_in_use=0,
        pool_idle=1,
        pool_max=1,
        connections_created=1,
        last_duration={"info": 0.0015, "client_list": 0.0025, "probe": 0.004},
        errors={("probe", "timeout"): 2, ("info", "refused"): 1},
        last_success={"info": NOW, "client_list": NOW, "probe": NOW - 30},
        probe_success=1.0,
        probe_duration=0.004,
        client_list_bytes=client_list_bytes,
        client_list_interval=15.0,
        capabilities={"client_list": 1, "config": 1, "client_setname": 1,
                      "client_no_evict": 1, "client_list_fits_output_buffer": 1},
        address="127.0.0.1:6379",
    )


def snapshot(target: TargetCase, config: ClientListConfig) -> Snapshot:
    list_raw = read_data(target.client_list)
    view = redis_view(read_data(target.info), list_raw, config)
    families = {**render_redis(target.target, view),
                **render_self(target.target, self_view(len(list_raw)))}
    return Snapshot(target=target.target, families=families, up=True, polled=True,
                    last_poll_wall=NOW, error_kind=None)


def render_case(case: GoldenCase) -> str:
    """The /metrics body (per-target part) for the case's targets, in their order."""
    config = case.config()
    return assemble([snapshot(target, config) for target in case.targets])


def read_golden(case: GoldenCase) -> str:
    with open(case.path, encoding="utf-8", newline="") as handle:
        return handle.read()


def write_golden(case: GoldenCase, text: str) -> None:
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    with open(case.path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


@dataclass
class ReferenceClient:
    """One CLIENT LIST line as the naive reader sees it."""

    fields: dict[str, str] = field(default_factory=dict)

    def number(self, key: str) -> int | None:
        value = self.fields.get(key)
        return int(value) if value is not None and value.isdigit() else None


def reference_info(raw: bytes) -> dict[str, str]:
    """`field:value` lines of an INFO reply, read naively (not `exporter.pipeline.info`)."""
    fields = {}
    for line in raw.decode("utf-8").split("\r\n"):
        if line and not line.startswith("#"):
            key, _, rest = line.partition(":")
            fields[key] = rest
    return fields


def reference_clients(raw: bytes) -> list[ReferenceClient]:
    """Every non-blank line with an `id=` or `addr=` field, read token by token."""
    clients = []
    for line in raw.decode("latin-1").split("\n"):
        fields = dict(token.split("=", 1) for token in line.split(" ") if "=" in token)
        if "id" in fields or "addr" in fields:
            clients.append(ReferenceClient(fields))
    return clients
