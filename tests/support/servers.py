"""The real server builds the tests run on, and what each can do.

`scripts/install-servers` (run by `scripts/test`) puts Redis 5.0 to 8.0 and Valkey 8.0 and 8.1
under `.servers/` and lists them in `.servers/servers.tsv`; Debian's own `redis-server` (7.0)
is the default build. Tests that depend on server behaviour take the `server_build` fixture
and run once per build (`REDIS_TEST_SERVERS`: `all`, the default, or a comma-separated list
of ids); the rest run on the default build. With CI=true a build that is not installed fails
its tests instead of skipping them.

What a build can do comes from the field tables (shared/reference/mission-anchors.md and
real-servers.md), never from what 7.0 happens to do.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import cache

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVERS_DIR = os.path.join(ROOT, ".servers")
MANIFEST = os.path.join(SERVERS_DIR, "servers.tsv")
DEFAULT_ID = "redis-7.0"
ALL_IDS = ("redis-5.0", "redis-6.0", "redis-6.2", "redis-7.0", "redis-7.4", "redis-8.0",
           "valkey-8.0", "valkey-8.1", "valkey-8.1.8")
VALKEY_COMPAT = (7, 2, 4)  # what Valkey 8 says in redis_version, and the features it has


@dataclass(frozen=True)
class ServerBuild:
    id: str  # redis-6.2, valkey-8.1.8
    family: str  # redis or valkey
    version: tuple[int, ...]  # the product's own version
    binary: str  # runs like redis-server: every argument is passed through

    def __str__(self) -> str:
        return self.id

    @property
    def compat(self) -> tuple[int, ...]:
        """The Redis version whose commands and fields this build has."""
        return VALKEY_COMPAT if self.family == "valkey" else self.version

    def at_least(self, *version: int) -> bool:
        return self.compat >= version

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    # -- the field tables --------------------------------------------------------------
    @property
    def acl(self) -> bool:
        """ACL SETUSER, users in CLIENT LIST (`user=`), AUTH with a user name."""
        return self.at_least(6, 0)

    @property
    def no_evict(self) -> bool:
        """CLIENT NO-EVICT and client eviction (maxmemory-clients)."""
        return self.at_least(7, 0)

    @property
    def subcommand_stats(self) -> bool:
        """INFO commandstats per subcommand (`client|list`); before 7.0 only `client`."""
        return self.at_least(7, 0)

    @property
    def maxclients_in_info(self) -> bool:
        return self.at_least(6, 2)

    @property
    def tot_mem(self) -> bool:
        return self.at_least(6, 0)

    @property
    def busy_option(self) -> str:
        """The option for how long a script runs before Redis answers BUSY."""
        return "busy-reply-threshold" if self.at_least(7, 0) else "lua-time-limit"

    @property
    def debug_option(self) -> list[str]:
        """What enables DEBUG for local clients (7.0+ disables it by default)."""
        return ["--enable-debug-command", "local"] if self.at_least(7, 0) else []

    def list_calls(self, stats: dict[str, int]) -> int:
        """CLIENT LIST calls in `commandstats`: per subcommand from 7.0, else all of CLIENT."""
        return stats.get("client|list" if self.subcommand_stats else "client", 0)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3])


@cache
def installed() -> dict[str, ServerBuild]:
    """Every build that can run here: `.servers/servers.tsv`, and the system's redis-server
    as the default when the manifest does not name it."""
    found: dict[str, ServerBuild] = {}
    if os.path.exists(MANIFEST):
        with open(MANIFEST, encoding="utf-8") as handle:
            for line in handle:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 4 and os.access(parts[3], os.X_OK):
                    found[parts[0]] = ServerBuild(parts[0], parts[1], _version(parts[2]),
                                                  parts[3])
    system = shutil.which("redis-server")
    if DEFAULT_ID not in found and system is not None:
        found[DEFAULT_ID] = ServerBuild(DEFAULT_ID, "redis", (7, 0, 15), system)
    return found


def nominal(build_id: str) -> ServerBuild:
    """What an id says of a build before it is installed (`redis-6.2` -> Redis 6.2)."""
    family, _, version = build_id.partition("-")
    return ServerBuild(build_id, family, _version(version), "")


def matrix_ids(needs: tuple[str, ...] = ()) -> list[str]:
    """The builds that server-dependent tests run on; `needs` names properties of
    `ServerBuild` (such as `acl`) that a test requires of its server."""
    wanted = os.environ.get("REDIS_TEST_SERVERS", "all")
    ids = list(ALL_IDS) if wanted == "all" else [
        item.strip() for item in wanted.split(",") if item.strip()]
    return [build_id for build_id in ids
            if all(getattr(nominal(build_id), need) for need in needs)]


def build(build_id: str = DEFAULT_ID) -> ServerBuild:
    """A build by id; a missing one fails in CI and skips elsewhere."""
    found = installed().get(build_id)
    if found is None:
        message = (f"{build_id} is not installed (scripts/install-servers puts it under "
                   ".servers/; the README's test command runs it)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found
