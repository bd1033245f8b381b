"""Targets and their settings (credentials, TLS, renamed commands, probe) from the YAML."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from exporter.config.checks import (
    Problems,
    check_mapping,
    read_bool,
    read_duration,
    read_int,
    read_str,
)
from exporter.config.model import (
    DEFAULT_PORT,
    CommandNames,
    Endpoint,
    ProbeConfig,
    TargetConfig,
    TLSConfig,
)
from exporter.config.secret import Secret
from exporter.config.tls import tls_context

TARGET_SETTING_KEYS = (
    "username",
    "password_file",
    "password_env",
    "tls",
    "max_clients",
    "commands",
    "connect_probe",
)


def read_target_settings(
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
    settings.update(read_password_settings(section, path, env, problems))
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


def read_password_settings(section: Mapping[str, Any], path: str, env: Mapping[str, str],
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


def check_merged(target: TargetConfig, path: str, problems: Problems) -> None:
    """Problems that only show once a target's own keys and `defaults` are combined."""
    if target.username and target.password is None and not (
            target.password_file or target.password_env):
        problems.add(f"{path}.username", "needs password_file or password_env (for a nopass "
                                         "ACL user, a file with any text works)")
    if target.endpoint.scheme == "rediss":
        try:
            tls_context(target.tls)  # loads the CA, certificate and key files now, not later
        except (ssl.SSLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or getattr(error, "strerror", None) \
                or str(error)
            problems.add(f"{path}.tls", f"cannot load the TLS files: {reason}")


def merge_target(name: str, endpoint: Endpoint, defaults: Mapping[str, Any],
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
