"""`targets[].cluster` and `targets[].sentinel`: entries that find their nodes while running."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.config.checks import (
    Problems,
    check_mapping,
    join,
    read_bool,
    read_duration,
    read_str,
)
from exporter.config.model import (
    ADDRESS_CHOICES,
    ClusterSource,
    Endpoint,
    SentinelSource,
)
from exporter.config.targets import parse_target_url, read_password_settings

SOURCE_KEYS = ("url", "cluster", "sentinel")
CLUSTER_KEYS = ("seeds", "refresh", "address")
SENTINEL_KEYS = ("seeds", "masters", "refresh", "include_sentinels", "username",
                 "password_file", "password_env")


def chosen_source(section: Mapping[str, Any], path: str, problems: Problems) -> str | None:
    """Which of url, cluster and sentinel the entry has: exactly one, else a problem."""
    present = [key for key in SOURCE_KEYS if section.get(key) is not None]
    if len(present) == 1:
        return present[0]
    if not present:
        problems.add(join(path, "url"), "is required (or give cluster or sentinel)")
    else:
        problems.add(path, f"has {' and '.join(present)}: give exactly one of url, cluster "
                           "or sentinel")
    return None


def read_cluster(node: object, path: str, problems: Problems) -> ClusterSource | None:
    section = check_mapping(node, path, CLUSTER_KEYS, problems)
    seeds = _read_seeds(section, path, problems)
    refresh = read_duration(section, path, "refresh", 60.0, problems)
    address = read_str(section, path, "address", "endpoint", problems) or "endpoint"
    if address not in ADDRESS_CHOICES:
        problems.add(join(path, "address"), f"must be one of {', '.join(ADDRESS_CHOICES)}")
        return None
    return ClusterSource(seeds, refresh, address) if seeds else None


def read_sentinel(node: object, path: str, env: Mapping[str, str],
                  problems: Problems) -> SentinelSource | None:
    if isinstance(node, Mapping) and "password" in node:
        problems.add(join(path, "password"), "passwords are not accepted in the config file; "
                                             "use password_file or password_env")
        node = {key: value for key, value in node.items() if key != "password"}
    section = check_mapping(node, path, SENTINEL_KEYS, problems)
    seeds = _read_seeds(section, path, problems)
    refresh = read_duration(section, path, "refresh", 10.0, problems)
    include = read_bool(section, path, "include_sentinels", False, problems)
    masters = _read_masters(section, path, problems)
    username = read_str(section, path, "username", None, problems)
    password = read_password_settings(section, path, env, problems)
    if username and not (password.get("password_file") or password.get("password_env")):
        problems.add(join(path, "username"), "needs password_file or password_env")
    if not seeds or masters is None:
        return None
    return SentinelSource(seeds, masters, refresh, include, username,
                          password.get("password"), password.get("password_file"),
                          password.get("password_env"))


def _read_seeds(section: Mapping[str, Any], path: str,
                problems: Problems) -> tuple[Endpoint, ...]:
    where = join(path, "seeds")
    value = section.get("seeds")
    if not isinstance(value, list) or not value:
        problems.add(where, "must be a non-empty list of redis:// or rediss:// URLs")
        return ()
    seeds = []
    for index, item in enumerate(value):
        item_path = f"{where}[{index}]"
        if not isinstance(item, str):
            problems.add(item_path, "must be a redis:// or rediss:// URL")
            continue
        try:
            endpoint = parse_target_url(item)
        except ValueError as error:
            problems.add(item_path, str(error))
            continue
        if endpoint.scheme == "unix":
            problems.add(item_path, "must be a redis:// or rediss:// URL (a node is found "
                                    "by its network address)")
        elif endpoint.db:
            problems.add(item_path, "must not name a database")
        else:
            seeds.append(endpoint)
    schemes = {seed.scheme for seed in seeds}
    if len(schemes) > 1:
        problems.add(where, "mixes redis:// and rediss://: every node is reached one way")
        return ()
    return tuple(seeds) if len(seeds) == len(value) else ()


def _read_masters(section: Mapping[str, Any], path: str,
                  problems: Problems) -> tuple[str, ...] | None:
    value = section.get("masters")
    if value is None:
        return ()
    if not isinstance(value, list) or not value or not all(
            isinstance(item, str) and item for item in value):
        problems.add(join(path, "masters"), "must be a non-empty list of master names "
                                            "(leave it out for every master)")
        return None
    if len(set(value)) != len(value):
        problems.add(join(path, "masters"), "names a master twice")
        return None
    return tuple(value)
