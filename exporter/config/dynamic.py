"""`auth_modules` and `dynamic_targets`: targets that Prometheus discovers (DESIGN.md "Targets
that Prometheus discovers").

An auth module is named credentials (username, password_file or password_env, tls) plus the
`targets` rules they may go to; a discovered target gets credentials only from the module its
scrape names, never from `defaults` (sending the configured password to any address a scrape
names is the Go peer's SSRF). `defaults` give discovered targets only their `commands` and
`connect_probe`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from exporter.config.allowlist import Rule, parse_rule
from exporter.config.checks import (
    Problems,
    check_mapping,
    join,
    read_duration,
    read_int,
)
from exporter.config.model import AuthModule, DynamicTargetsConfig, TLSConfig
from exporter.config.targets import read_target_settings
from exporter.config.tls import tls_context

# What `defaults` may give a discovered target: nothing that identifies or authenticates.
PUBLIC_DEFAULTS = ("commands", "connect_probe")


def read_rules(node: object, path: str, problems: Problems) -> tuple[Rule, ...]:
    if node is None:
        return ()
    if not isinstance(node, list) or not all(isinstance(item, str) for item in node):
        problems.add(path, "must be a list of CIDR[:port] or host-glob[:port] strings")
        return ()
    rules = []
    for index, text in enumerate(node):
        try:
            rules.append(parse_rule(text))
        except ValueError as error:
            problems.add(f"{path}[{index}]", str(error))
    return tuple(rules)


def read_auth_modules(node: object, env: Mapping[str, str],
                      problems: Problems) -> dict[str, AuthModule]:
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        problems.add("auth_modules", "must be a mapping of module names to settings")
        return {}
    modules = {}
    for name, item in node.items():
        path = join("auth_modules", str(name))
        if not isinstance(name, str) or not name:
            problems.add(path, "module names are non-empty strings")
            continue
        settings = read_target_settings(item, path, ("targets",), env, problems)
        if settings.get("tls"):
            try:  # loads the CA, certificate and key now, as for configured targets
                tls_context(TLSConfig(**settings["tls"]))
            except (ssl.SSLError, OSError, ValueError) as error:
                reason = getattr(error, "reason", None) or getattr(error, "strerror", None) \
                    or str(error)
                problems.add(f"{path}.tls", f"cannot load the TLS files: {reason}")
        section = item if isinstance(item, Mapping) else {}
        rules = read_rules(section.get("targets"), f"{path}.targets", problems)
        if not rules:
            problems.add(f"{path}.targets", "is required: the addresses these credentials "
                                            "may be sent to")
        modules[name] = AuthModule(name, settings, rules)
    return modules


def read_dynamic_targets(node: object, defaults: Mapping[str, Any],
                         problems: Problems) -> DynamicTargetsConfig:
    path = "dynamic_targets"
    section = check_mapping(node, path, ("allow", "max_targets", "max_pending",
                                         "expire_after"), problems)
    base = DynamicTargetsConfig()
    allow = read_rules(section.get("allow"), f"{path}.allow", problems)
    return DynamicTargetsConfig(
        allow=allow,
        max_targets=read_int(section, path, "max_targets", base.max_targets, problems,
                             minimum=1),
        max_pending=read_int(section, path, "max_pending", base.max_pending, problems,
                             minimum=1),
        expire_after=read_duration(section, path, "expire_after", base.expire_after,
                                   problems),
        defaults={key: value for key, value in defaults.items() if key in PUBLIC_DEFAULTS})
