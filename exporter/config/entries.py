"""`targets`: the list of entries, each a static target (`url`) or a source of targets
(`cluster`, `sentinel`) whose per-target settings apply to every node it finds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from exporter.config.checks import Problems, read_str
from exporter.config.model import Endpoint, SourceEntry, TargetConfig
from exporter.config.sources import SOURCE_KEYS, chosen_source, read_cluster, read_sentinel
from exporter.config.targets import (
    check_merged,
    merge_target,
    parse_target_url,
    read_target_settings,
)


def read_entries(node: object, path: str, defaults: Mapping[str, Any], env: Mapping[str, str],
                 problems: Problems) -> tuple[list[TargetConfig], list[SourceEntry]]:
    """The static targets and the source entries, in configured order each."""
    if not isinstance(node, list) or not node:
        problems.add(path, "must be a non-empty list of targets")
        return [], []
    targets: list[TargetConfig] = []
    sources: list[SourceEntry] = []
    first_seen: dict[str, str] = {}
    for index, item in enumerate(node):
        item_path = f"{path}[{index}]"
        own = read_target_settings(item, item_path, ("name", *SOURCE_KEYS), env, problems)
        section = item if isinstance(item, Mapping) else {}
        name = read_str(section, item_path, "name", None, problems, required=True)
        if name is not None:
            if not name:
                problems.add(f"{item_path}.name", "must not be empty")
            elif name in first_seen:
                problems.add(f"{item_path}.name",
                             f"duplicate target name {name!r} (first at {first_seen[name]})")
            elif "/" in name and section.get("url") is None:
                problems.add(f"{item_path}.name", "must not contain / (a node's target is "
                                                  "<name>/<host>:<port>)")
            else:
                first_seen[name] = item_path
        kind = chosen_source(section, item_path, problems) if isinstance(item, Mapping) \
            else None
        if kind == "url":
            endpoint = _read_url(section, item_path, problems)
            if name and endpoint is not None:
                target = merge_target(name, endpoint, defaults, own)
                check_merged(target, item_path, problems)
                targets.append(target)
        elif kind is not None:
            entry = _read_source(kind, section, item_path, name, defaults, own, env, problems)
            if entry is not None:
                sources.append(entry)
    return targets, sources


def _read_url(section: Mapping[str, Any], path: str, problems: Problems) -> Endpoint | None:
    url = read_str(section, path, "url", None, problems, required=True)
    if url is None:
        return None
    try:
        return parse_target_url(url)
    except ValueError as error:
        problems.add(f"{path}.url", str(error))
        return None


def _read_source(kind: str, section: Mapping[str, Any], path: str, name: str | None,
                 defaults: Mapping[str, Any], own: Mapping[str, Any], env: Mapping[str, str],
                 problems: Problems) -> SourceEntry | None:
    where = f"{path}.{kind}"
    cluster = read_cluster(section[kind], where, problems) if kind == "cluster" else None
    sentinel = read_sentinel(section[kind], where, env, problems) if kind == "sentinel" \
        else None
    found = cluster or sentinel
    if not name or "/" in name or found is None:
        return None
    template = replace(merge_target(name, found.seeds[0], defaults, own), source=kind,
                       parent=name)
    check_merged(template, path, problems)
    return SourceEntry(name, template, cluster, sentinel)
