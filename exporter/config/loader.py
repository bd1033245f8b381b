"""YAML -> `Config`, reporting every problem at once with its key path.

Nothing here binds a port or talks to Redis, so `--check-config` and reload can use it as is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from exporter.config.checks import (
    Problems,
    check_mapping,
    read_duration,
    read_int,
    read_number_list,
    read_str,
)
from exporter.config.dynamic import read_auth_modules, read_dynamic_targets
from exporter.config.entries import read_entries
from exporter.config.model import (
    GROUP_BY_FIELDS,
    BackoffConfig,
    Buckets,
    ClientListConfig,
    Config,
    PollConfig,
    RewriteRule,
)
from exporter.config.targets import read_target_settings

TOP_LEVEL_KEYS = ("poll", "defaults", "client_list", "targets", "auth_modules",
                  "dynamic_targets")
DEFAULT_URL = "redis://localhost:6379"


class ConfigError(Exception):
    """The configuration is invalid; `problems` lists every one with its key path."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def load_config_file(
    path: str,
    env: Mapping[str, str] | None = None,
    override_targets: Sequence[Mapping[str, Any]] | None = None,
) -> Config:
    """Read and validate a YAML file; raise ConfigError listing every problem."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        reason = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError([f"{path}: {reason}{where}"]) from None
    return build_config(raw, env=env, override_targets=override_targets)


def build_config(
    raw: object,
    env: Mapping[str, str] | None = None,
    override_targets: Sequence[Mapping[str, Any]] | None = None,
) -> Config:
    """Validate an already parsed document (None means an empty file)."""
    problems = Problems()
    env = os.environ if env is None else env
    top = check_mapping(raw if raw is not None else {}, "", TOP_LEVEL_KEYS, problems)
    poll = _read_poll(top.get("poll"), problems)
    client_list = _read_client_list(top.get("client_list"), problems)
    defaults = read_target_settings(top.get("defaults"), "defaults", (), env, problems)
    if override_targets is not None:
        targets, sources = read_entries(list(override_targets), "--redis.addr", defaults, env,
                                        problems)
    elif "targets" in top:
        targets, sources = read_entries(top["targets"], "targets", defaults, env, problems)
    else:
        targets, sources = read_entries([{"name": "localhost:6379", "url": DEFAULT_URL}],
                                        "targets", defaults, env, problems)
    auth_modules = read_auth_modules(top.get("auth_modules"), env, problems)
    dynamic = read_dynamic_targets(top.get("dynamic_targets"), defaults, problems)
    problems.raise_if_any(ConfigError)
    return Config(poll=poll, client_list=client_list, targets=tuple(targets),
                  sources=tuple(sources),
                  auth_modules=auth_modules, dynamic=dynamic)


def _read_poll(node: object, problems: Problems) -> PollConfig:
    section = check_mapping(node, "poll", ("interval", "client_list_interval", "timeout",
                                           "concurrency"), problems)
    base = PollConfig()
    interval = read_duration(section, "poll", "interval", base.interval, problems)
    # Unset, CLIENT LIST runs on every poll, whatever the interval.
    client_list_interval = read_duration(section, "poll", "client_list_interval", interval,
                                         problems)
    # As Prometheus does for an unset scrape_timeout: the default, or the interval when that
    # is shorter. A timeout the user wrote longer than the interval stays an error.
    timeout = read_duration(section, "poll", "timeout", min(base.timeout, interval), problems)
    concurrency = read_int(section, "poll", "concurrency", base.concurrency, problems, minimum=1)
    if timeout > interval:  # as Prometheus rejects scrape_timeout > scrape_interval
        problems.add("poll.timeout", "must not be longer than poll.interval")
    if client_list_interval < interval:
        problems.add("poll.client_list_interval", "must not be shorter than poll.interval")
    return PollConfig(interval, client_list_interval, timeout, concurrency)


def _read_client_list(node: object, problems: Problems) -> ClientListConfig:
    keys = ("group_by", "max_groups", "name_rewrite", "lib_name_rewrite", "idle_threshold",
            "backoff", "buckets")
    section = check_mapping(node, "client_list", keys, problems)
    base = ClientListConfig()
    group_by = _read_group_by(section.get("group_by", list(base.group_by)), problems)
    max_groups = read_int(section, "client_list", "max_groups", base.max_groups, problems,
                          minimum=1)
    rewrite = base.name_rewrite
    if "name_rewrite" in section:
        rewrite = _read_rewrite(section["name_rewrite"], "client_list.name_rewrite", problems)
    lib_rewrite = base.lib_name_rewrite
    if "lib_name_rewrite" in section:
        lib_rewrite = _read_rewrite(section["lib_name_rewrite"], "client_list.lib_name_rewrite",
                                    problems)
    idle = read_duration(section, "client_list", "idle_threshold", base.idle_threshold, problems)
    backoff = _read_backoff(section.get("backoff"), problems)
    buckets = _read_buckets(section.get("buckets"), problems)
    return ClientListConfig(tuple(group_by), max_groups, rewrite, lib_rewrite, idle, backoff,
                            buckets)


def _read_group_by(node: object, problems: Problems) -> list[str]:
    path = "client_list.group_by"
    if not isinstance(node, list) or not node:
        problems.add(path, "must be a non-empty list")
        return list(ClientListConfig().group_by)
    fields: list[str] = []
    for index, item in enumerate(node):
        if item not in GROUP_BY_FIELDS:
            problems.add(f"{path}[{index}]",
                         f"must be one of {', '.join(GROUP_BY_FIELDS)}")
        elif item in fields:
            problems.add(f"{path}[{index}]", f"{item} is listed twice")
        else:
            fields.append(item)
    return fields


def _read_rewrite(node: object, path: str, problems: Problems) -> tuple[RewriteRule, ...]:
    if node is None:
        return ()
    if not isinstance(node, list):
        problems.add(path, "must be a list of {match, replace}")
        return ()
    rules = []
    for index, item in enumerate(node):
        item_path = f"{path}[{index}]"
        rule = check_mapping(item, item_path, ("match", "replace"), problems)
        match = read_str(rule, item_path, "match", None, problems, required=True)
        replacement = read_str(rule, item_path, "replace", None, problems, required=True)
        if match is None or replacement is None:
            continue
        try:
            pattern = re.compile(match)
        except re.error as error:
            problems.add(f"{item_path}.match", f"invalid regular expression: {error}")
            continue
        try:
            pattern.sub(replacement, "")  # check group references without a real name
        except (re.error, IndexError) as error:
            problems.add(f"{item_path}.replace", f"invalid replacement: {error}")
            continue
        rules.append(RewriteRule(pattern, replacement))
    return tuple(rules)


def _read_backoff(node: object, problems: Problems) -> BackoffConfig:
    path = "client_list.backoff"
    section = check_mapping(node, path, ("above_clients", "interval"), problems)
    base = BackoffConfig()
    above: int | None = base.above_clients
    if "above_clients" in section and section["above_clients"] is None:
        above = None
    else:
        above = read_int(section, path, "above_clients", base.above_clients or 0, problems,
                         minimum=0)
    interval = read_duration(section, path, "interval", base.interval, problems)
    return BackoffConfig(above, interval)


def _read_buckets(node: object, problems: Problems) -> Buckets:
    path = "client_list.buckets"
    base = Buckets()
    names = tuple(base.__dataclass_fields__)
    section = check_mapping(node, path, names, problems)
    values = {
        name: read_number_list(section, path, name, getattr(base, name), problems)
        for name in names
    }
    return Buckets(**values)
