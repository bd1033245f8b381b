"""The house by stage: each folder of `exporter/` may import only what its stage needs.

An `ast` walk over the package collects every import (top level, inside functions, in `try`),
and `violations` checks it against `RULES`. The rules are the data flow of DESIGN.md:
config -> sources -> conn -> pipeline -> poll -> expose, with
- `config/` importing nothing of the exporter outside itself (validation starts nothing);
- `pipeline/` pure: no redis-py, sockets, threads, clocks or processes, no I/O stage;
- `expose/` never reaching a connection or a poller;
- `expose/families.py`, the one table of names, a leaf that every stage may read;
- only `conn/` importing redis-py (it is the only folder that talks to Redis), and `pools/`,
  which wraps an application's own redis-py pools (library mode) and imports nothing of the daemon.
The tests at the end feed `violations` imports that break each rule, so the check can fail.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "exporter")

# Standard-library and third-party modules that do I/O, run threads or read clocks.
IMPURE = frozenset({
    "redis", "hiredis", "socket", "ssl", "select", "selectors", "asyncio", "threading",
    "_thread", "multiprocessing", "concurrent", "subprocess", "http", "urllib", "time",
    "random", "signal", "os", "prometheus_client",
})


@dataclass(frozen=True)
class Rule:
    """What one folder may import: exporter modules by prefix, and impure modules or not."""

    exporter: frozenset[str]  # `config` allows exporter.config and exporter.config.*
    impure: bool = True
    redis: bool = False


def _rule(*allowed: str, impure: bool = True, redis: bool = False) -> Rule:
    return Rule(frozenset(allowed), impure, redis)


# `exporter` itself is the package root (its __version__); `expose.families` is the leaf table.
RULES: Mapping[str, Rule] = {
    "config": _rule("config"),
    "sources": _rule("exporter", "config", "sources", "conn", "expose.families", "logsetup",
                     "sharding"),
    "conn": _rule("exporter", "config", "conn", "expose.families", "logsetup", redis=True),
    "pipeline": _rule("config", "pipeline", "expose.families", impure=False),
    "poll": _rule("exporter", "config", "conn", "pipeline", "poll", "expose", "logsetup"),
    "expose": _rule("exporter", "config", "pipeline", "expose", "logsetup", "sharding"),
    "expose.families": _rule(),
    # Library mode, imported by applications: their redis-py pools and the table, no daemon.
    "pools": _rule("pools", "expose.families", redis=True),
}


def stage_of(module: str) -> str | None:
    """`exporter.pipeline.grouping` -> `pipeline`; top-level modules (cli, app...) -> None."""
    if module == "exporter.expose.families":
        return "expose.families"
    parts = module.split(".")
    if len(parts) > 2 and parts[1] in RULES:
        return parts[1]
    return None


def _allowed(imported: str, prefixes: frozenset[str]) -> bool:
    name = imported.removeprefix("exporter.") if imported != "exporter" else "exporter"
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def violations(module: str, imports: list[str]) -> list[str]:
    """Every import of `module` its folder's rule forbids, as `module -> import`."""
    stage = stage_of(module)
    if stage is None:
        return []
    rule = RULES[stage]
    found = []
    for imported in imports:
        top = imported.split(".")[0]
        if top == "exporter":
            if stage_of(imported) == stage or _allowed(imported, rule.exporter):
                continue
        elif top in ("redis", "hiredis"):
            if rule.redis:
                continue
        elif top not in IMPURE or rule.impure:
            continue
        found.append(f"{module} -> {imported}")
    return found


def module_name(path: str) -> str:
    relative = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return relative.removesuffix(".__init__")


def imports_of(path: str) -> list[str]:
    """Absolute names of every module `path` imports (`from a import b` gives a and a.b)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    package = module_name(path).rsplit(".", 1)[0] if not path.endswith("__init__.py") \
        else module_name(path)
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names
                         if base.startswith("exporter"))
    return [name for name in names if not _is_package_attribute(name)]


def _is_package_attribute(name: str) -> bool:
    """`from exporter import __version__` names an attribute, not a module."""
    return name.rsplit(".", 1)[-1].startswith("__")


def package_modules() -> Iterator[tuple[str, str]]:
    for folder, _, files in os.walk(PACKAGE):
        for file in sorted(files):
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                yield module_name(path), path


def test_every_folder_keeps_its_import_rule() -> None:
    found = [problem for module, path in package_modules()
             for problem in violations(module, imports_of(path))]
    assert found == []


def test_every_folder_has_a_rule_and_a_docstring() -> None:
    folders = sorted(entry.name for entry in os.scandir(PACKAGE)
                     if entry.is_dir() and not entry.name.startswith("__"))
    assert folders and all(folder in RULES for folder in folders), folders
    for folder in folders:
        with open(os.path.join(PACKAGE, folder, "__init__.py"), encoding="utf-8") as handle:
            assert ast.get_docstring(ast.parse(handle.read())), f"{folder}/__init__.py"


def test_the_walk_sees_imports_inside_functions_and_try_blocks() -> None:
    imports = imports_of(os.path.join(PACKAGE, "pipeline", "clientlist.py"))
    assert "exporter.pipeline._clientlist_scan" in imports  # imported inside `try`


@pytest.mark.parametrize(("module", "imported"), [
    ("exporter.pipeline.grouping", "socket"),
    ("exporter.pipeline.grouping", "threading"),
    ("exporter.pipeline.grouping", "time"),
    ("exporter.pipeline.grouping", "redis.exceptions"),
    ("exporter.pipeline.grouping", "exporter.conn.connection"),
    ("exporter.pipeline.grouping", "exporter.poll.poller"),
    ("exporter.pipeline.grouping", "exporter.expose.render"),
    ("exporter.config.loader", "exporter.logsetup"),
    ("exporter.config.loader", "exporter.pipeline.info"),
    ("exporter.config.loader", "exporter.expose.families"),
    ("exporter.expose.render", "exporter.conn.errors"),
    ("exporter.expose.web", "exporter.poll.poller"),
    ("exporter.expose.web", "redis"),
    ("exporter.poll.poller", "redis.exceptions"),
    ("exporter.poll.poller", "exporter.app"),
    ("exporter.conn.connection", "exporter.poll.stats"),
    ("exporter.expose.families", "exporter.config.model"),
    ("exporter.pools.registry", "exporter.config.loader"),
    ("exporter.pools.registry", "exporter.expose.web"),
    ("exporter.pools.registry", "exporter.logsetup"),
])
def test_a_forbidden_import_is_reported(module: str, imported: str) -> None:
    assert violations(module, [imported]) == [f"{module} -> {imported}"]


@pytest.mark.parametrize(("module", "imported"), [
    ("exporter.pipeline.grouping", "re"),
    ("exporter.pipeline.grouping", "exporter.config.model"),
    ("exporter.conn.errors", "exporter.expose.families"),
    ("exporter.poll.poller", "exporter.expose.render"),
    ("exporter.expose.web", "exporter.pipeline.groups"),
    ("exporter.app", "exporter.poll.scheduler"),
    ("exporter.pools.wrapping", "redis.exceptions"),
    ("exporter.pools.registry", "exporter.expose.families"),
])
def test_an_allowed_import_is_not_reported(module: str, imported: str) -> None:
    assert violations(module, [imported]) == []
