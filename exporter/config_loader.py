"""YAML -> `Config`, reporting every problem at once with its key path.

Nothing here binds a port or talks to Redis, so `--check-config` and reload can use it as is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from exporter.config import (
    DEFAULT_PORT,
    GROUP_BY_FIELDS,
    BackoffConfig,
    Buckets,
    ClientListConfig,
    CommandNames,
    Config,
    Endpoint,
    PollConfig,
    ProbeConfig,
    RewriteRule,
    TargetConfig,
    TLSConfig,
)
from exporter.config_checks import (
    Problems,
    check_mapping,
    read_bool,
    read_duration,
    read_int,
    read_number_list,
    read_str,
)
from exporter.secret import Secret

TARGET_SETTING_KEYS = (
    "username",
    "password_file",
    "password_env",
    "tls",
    "max_clients",
    "commands",
    "connect_probe",
)
TOP_LEVEL_KEYS = ("poll", "defaults", "client_list", "targets")
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
    defaults = _read_target_settings(top.get("defaults"), "defaults", (), env, problems)
    if override_targets is not None:
        targets = _read_targets(list(override_targets), "--redis.addr", defaults, env, problems)
    elif "targets" in top:
        targets = _read_targets(top["targets"], "targets", defaults, env, problems)
    else:
        targets = _read_targets([{"name": "localhost:6379", "url": DEFAULT_URL}],
                                "targets", defaults, env, problems)
    problems.raise_if_any(ConfigError)
    return Config(poll=poll, client_list=client_list, targets=tuple(targets))


def _read_poll(node: object, problems: Problems) -> PollConfig:
    section = check_mapping(node, "poll", ("interval", "client_list_interval", "timeout",
                                           "concurrency"), problems)
    base = PollConfig()
    interval = read_duration(section, "poll", "interval", base.interval, problems)
    # Unset, CLIENT LIST runs on every poll, whatever the interval.
    client_list_interval = read_duration(section, "poll", "client_list_interval", interval,
                                         problems)
    timeout = read_duration(section, "poll", "timeout", base.timeout, problems)
    concurrency = read_int(section, "poll", "concurrency", base.concurrency, problems, minimum=1)
    if timeout > interval:  # as Prometheus rejects scrape_timeout > scrape_interval
        problems.add("poll.timeout", "must not be longer than poll.interval")
    if client_list_interval < interval:
        problems.add("poll.client_list_interval", "must not be shorter than poll.interval")
    return PollConfig(interval, client_list_interval, timeout, concurrency)


def _read_client_list(node: object, problems: Problems) -> ClientListConfig:
    keys = ("group_by", "max_groups", "name_rewrite", "idle_threshold", "backoff", "buckets")
    section = check_mapping(node, "client_list", keys, problems)
    base = ClientListConfig()
    group_by = _read_group_by(section.get("group_by", list(base.group_by)), problems)
    max_groups = read_int(section, "client_list", "max_groups", base.max_groups, problems,
                          minimum=1)
    rewrite = base.name_rewrite
    if "name_rewrite" in section:
        rewrite = _read_rewrite(section["name_rewrite"], problems)
    idle = read_duration(section, "client_list", "idle_threshold", base.idle_threshold, problems)
    backoff = _read_backoff(section.get("backoff"), problems)
    buckets = _read_buckets(section.get("buckets"), problems)
    return ClientListConfig(tuple(group_by), max_groups, rewrite, idle, backoff, buckets)


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


def _read_rewrite(node: object, problems: Problems) -> tuple[RewriteRule, ...]:
    path = "client_list.name_rewrite"
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


def _read_target_settings(
    node: object,
    path: str,
    extra_keys: tuple[str, ...],
    env: Mapping[str, str],
    problems: Problems,
) -> dict[str, Any]:
    """Validate the per-target settings present in `node` (defaults or one target)."""
    if isinstance(node, Mapping) and "password" in node:
        problems.add(f"{path}.password", "passwords are not accepted in the config file; "
                                         "use password_file or password_env")
        node = {key: value for key, value in node.items() if key != "password"}
    section = check_mapping(node, path, extra_keys + TARGET_SETTING_KEYS, problems)
    settings: dict[str, Any] = {}
    if "username" in section:
        settings["username"] = read_str(section, path, "username", None, problems)
    settings.update(_read_password(section, path, env, problems))
    if "tls" in section:
        settings["tls"] = _read_tls(section["tls"], f"{path}.tls", problems)
    if "max_clients" in section:
        if section["max_clients"] is None:
            settings["max_clients"] = None
        else:
            settings["max_clients"] = read_int(section, path, "max_clients", 0, problems,
                                               minimum=1)
    if "commands" in section:
        settings["commands"] = _read_commands(section["commands"], f"{path}.commands", problems)
    if "connect_probe" in section:
        settings["connect_probe"] = _read_probe(section["connect_probe"],
                                                f"{path}.connect_probe", problems)
    return settings


def _read_password(section: Mapping[str, Any], path: str, env: Mapping[str, str],
                   problems: Problems) -> dict[str, Any]:
    file_name = read_str(section, path, "password_file", None, problems)
    env_name = read_str(section, path, "password_env", None, problems)
    if "password_file" not in section and "password_env" not in section:
        return {}
    for key, value in (("password_file", file_name), ("password_env", env_name)):
        if value == "":
            problems.add(f"{path}.{key}", "must not be empty")
    if file_name and env_name:
        problems.add(path, "set password_file or password_env, not both")
        return {}
    result: dict[str, Any] = {"password_file": file_name, "password_env": env_name,
                              "password": None}
    if file_name:
        result["password"] = read_password_file(file_name, f"{path}.password_file", problems)
    elif env_name:
        if env_name not in env:
            problems.add(f"{path}.password_env", f"environment variable {env_name} is not set")
        else:
            result["password"] = Secret(env[env_name])
    return result


def read_password_file(file_name: str, path: str, problems: Problems) -> Secret | None:
    """Read a password file; a trailing newline is not part of the password."""
    try:
        with open(file_name, encoding="utf-8") as handle:
            return Secret(handle.read().rstrip("\r\n"))
    except FileNotFoundError:
        problems.add(path, f"file not found: {file_name}")
    except OSError as error:
        problems.add(path, f"cannot read {file_name}: {error.strerror}")
    except UnicodeDecodeError:
        problems.add(path, f"{file_name} is not UTF-8 text")
    return None


def _read_tls(node: object, path: str, problems: Problems) -> dict[str, Any]:
    keys = tuple(TLSConfig.__dataclass_fields__)
    section = check_mapping(node, path, keys, problems)
    values: dict[str, Any] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        if key in section:
            values[key] = read_str(section, path, key, None, problems)
            if values[key] and not os.path.isfile(values[key]):
                problems.add(f"{path}.{key}", f"file not found: {values[key]}")
    if "server_name" in section:
        values["server_name"] = read_str(section, path, "server_name", None, problems)
    if "insecure_skip_verify" in section:
        values["insecure_skip_verify"] = read_bool(section, path, "insecure_skip_verify",
                                                   False, problems)
    return values


def _read_commands(node: object, path: str, problems: Problems) -> dict[str, Any]:
    section = check_mapping(node, path, ("client", "config"), problems)
    values: dict[str, Any] = {}
    for key in ("client", "config"):
        if key in section:
            name = read_str(section, path, key, None, problems, required=True)
            if name is not None and (not name or any(ch.isspace() for ch in name)):
                problems.add(f"{path}.{key}", "must be one word")
            elif name is not None:
                values[key] = name
    return values


def _read_probe(node: object, path: str, problems: Problems) -> dict[str, Any]:
    section = check_mapping(node, path, ("enabled", "interval"), problems)
    values: dict[str, Any] = {}
    if "enabled" in section:
        values["enabled"] = read_bool(section, path, "enabled", True, problems)
    if "interval" in section:
        values["interval"] = read_duration(section, path, "interval", 60.0, problems)
    return values


def _read_targets(node: object, path: str, defaults: Mapping[str, Any],
                  env: Mapping[str, str], problems: Problems) -> list[TargetConfig]:
    if not isinstance(node, list) or not node:
        problems.add(path, "must be a non-empty list of targets")
        return []
    targets = []
    first_seen: dict[str, str] = {}
    for index, item in enumerate(node):
        item_path = f"{path}[{index}]"
        own = _read_target_settings(item, item_path, ("name", "url"), env, problems)
        section = item if isinstance(item, Mapping) else {}
        name = read_str(section, item_path, "name", None, problems, required=True)
        url = read_str(section, item_path, "url", None, problems, required=True)
        endpoint = None
        if url is not None:
            try:
                endpoint = parse_target_url(url)
            except ValueError as error:
                problems.add(f"{item_path}.url", str(error))
        if name is not None:
            if not name:
                problems.add(f"{item_path}.name", "must not be empty")
            elif name in first_seen:
                problems.add(f"{item_path}.name",
                             f"duplicate target name {name!r} (first at {first_seen[name]})")
            else:
                first_seen[name] = item_path
        if name and endpoint is not None:
            targets.append(_merge_target(name, endpoint, defaults, own))
    return targets


def _merge_target(name: str, endpoint: Endpoint, defaults: Mapping[str, Any],
                  own: Mapping[str, Any]) -> TargetConfig:
    """Target settings override `defaults`; nested sections merge key by key."""
    merged: dict[str, Any] = {**defaults, **own}
    merged["tls"] = TLSConfig(**{**defaults.get("tls", {}), **own.get("tls", {})})
    merged["commands"] = CommandNames(**{**defaults.get("commands", {}),
                                         **own.get("commands", {})})
    merged["connect_probe"] = ProbeConfig(**{**defaults.get("connect_probe", {}),
                                             **own.get("connect_probe", {})})
    return replace(TargetConfig(name=name, endpoint=endpoint), **merged)


def parse_target_url(url: str) -> Endpoint:
    """Parse redis://, rediss:// or unix:// URLs; messages never repeat the URL itself."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError("scheme must be redis, rediss or unix")
    if parts.password is not None:
        raise ValueError("must not contain a password; use password_file or password_env")
    if parts.username:
        raise ValueError("must not contain a user name; use the username key")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"db"})
    if unknown:
        raise ValueError(f"unsupported URL parameter: {', '.join(unknown)}")
    db_text = query["db"][-1] if "db" in query else ""
    if scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// needs a socket path, e.g. unix:///run/redis.sock")
        return Endpoint(scheme, path=parts.path, db=_parse_db(db_text))
    if not parts.hostname:
        raise ValueError("needs a host, e.g. redis://localhost:6379")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is None:
        port = DEFAULT_PORT
    elif not 0 < port < 65536:
        raise ValueError("port must be a number from 1 to 65535")
    path_db = parts.path.lstrip("/")
    if path_db and db_text:
        raise ValueError("give the database once: in the path or as ?db=, not both")
    return Endpoint(scheme, host=parts.hostname, port=port, db=_parse_db(path_db or db_text))


def _parse_db(text: str) -> int:
    if not text:
        return 0
    if not text.isdigit():
        raise ValueError("the database must be a number, as in redis://host:6379/0")
    return int(text)
