"""config.example.yaml documents every key, with the built-in default as its value."""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from exporter.config.loader import TOP_LEVEL_KEYS, build_config
from exporter.config.model import (
    BackoffConfig,
    Buckets,
    ClientListConfig,
    CommandNames,
    DynamicTargetsConfig,
    PollConfig,
    ProbeConfig,
    TLSConfig,
)
from exporter.config.sources import CLUSTER_KEYS, SENTINEL_KEYS
from exporter.config.targets import TARGET_SETTING_KEYS

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "config.example.yaml")


def _example() -> dict[str, Any]:
    with open(EXAMPLE, encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.safe_load(handle)
    return loaded


def test_example_is_valid_and_its_values_are_the_defaults() -> None:
    config = build_config(_example(), env={})
    assert config.poll == PollConfig()
    defaults = ClientListConfig()
    assert config.client_list.group_by == defaults.group_by
    assert config.client_list.max_groups == defaults.max_groups
    assert config.client_list.idle_threshold == defaults.idle_threshold
    assert config.client_list.backoff == defaults.backoff
    assert config.client_list.buckets == defaults.buckets
    assert [(rule.match.pattern, rule.replace) for rule in config.client_list.name_rewrite] == [
        (rule.match.pattern, rule.replace) for rule in defaults.name_rewrite]
    assert [(rule.match.pattern, rule.replace)
            for rule in config.client_list.lib_name_rewrite] == [
        (rule.match.pattern, rule.replace) for rule in defaults.lib_name_rewrite]
    target = config.targets[0]
    assert target.tls == TLSConfig()
    assert target.commands == CommandNames()
    assert target.connect_probe == ProbeConfig()
    assert target.max_clients is None and target.username is None and target.password is None
    assert config.auth_modules == {}
    assert config.dynamic.allow == () and not config.dynamic.enabled
    base = DynamicTargetsConfig()
    assert (config.dynamic.max_targets, config.dynamic.max_pending,
            config.dynamic.expire_after) == (base.max_targets, base.max_pending, base.expire_after)


def test_example_shows_every_key() -> None:
    example = _example()
    assert set(example) == set(TOP_LEVEL_KEYS)
    assert set(example["poll"]) == set(PollConfig.__dataclass_fields__)
    assert set(example["defaults"]) == set(TARGET_SETTING_KEYS)
    assert set(example["defaults"]["tls"]) == set(TLSConfig.__dataclass_fields__)
    assert set(example["defaults"]["commands"]) == set(CommandNames.__dataclass_fields__)
    assert set(example["defaults"]["connect_probe"]) == set(ProbeConfig.__dataclass_fields__)
    assert set(example["client_list"]) == set(ClientListConfig.__dataclass_fields__)
    assert set(example["client_list"]["backoff"]) == set(BackoffConfig.__dataclass_fields__)
    assert set(example["client_list"]["buckets"]) == set(Buckets.__dataclass_fields__)
    assert set(example["dynamic_targets"]) == set(DynamicTargetsConfig.__dataclass_fields__) - {
        "defaults"}  # `defaults` comes from the top-level defaults
    with open(EXAMPLE, encoding="utf-8") as handle:
        text = handle.read()
    for key in ("name", "url"):  # target keys beyond the shared settings
        assert re.search(rf"^\s+-? ?{key}:", text, re.MULTILINE)
    # Cluster and Sentinel entries, shown as comments (they need real seeds).
    for key in ("cluster", *CLUSTER_KEYS, "sentinel", *SENTINEL_KEYS):
        assert re.search(rf"^\s+# +-? ?{key}:", text, re.MULTILINE), key
