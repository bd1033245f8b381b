"""Typed reads of YAML values that record a problem with its key path instead of raising."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any, NoReturn

from exporter.config.durations import parse_duration


class Problems:
    """Collects `key.path: message` lines so that every problem is reported at once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}" if path else message)

    def raise_if_any(self, error_type: type[Exception]) -> None:
        if self.items:
            _raise(error_type, self.items)


def _raise(error_type: type[Exception], items: list[str]) -> NoReturn:
    raise error_type(items)


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_mapping(node: object, path: str, allowed: Sequence[str],
                  problems: Problems) -> Mapping[str, Any]:
    """Return `node` as a mapping (None is empty), reporting unknown keys."""
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        problems.add(path or "(top level)", "must be a mapping")
        return {}
    for key in node:
        if key not in allowed:
            problems.add(join(path, str(key)), f"unknown key (known: {', '.join(allowed)})")
    return {key: value for key, value in node.items() if key in allowed}


def read_duration(section: Mapping[str, Any], path: str, key: str, default: float,
                  problems: Problems) -> float:
    if key not in section:
        return default
    value = section[key]
    if not isinstance(value, str):
        problems.add(join(path, key), "must be a duration such as 15s or 1m")
        return default
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        problems.add(join(path, key), str(error))
        return default
    if seconds <= 0:
        problems.add(join(path, key), "must be longer than 0s")
        return default
    return seconds


def read_int(section: Mapping[str, Any], path: str, key: str, default: int,
             problems: Problems, minimum: int | None = None) -> int:
    if key not in section:
        return default
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(join(path, key), "must be an integer")
        return default
    if minimum is not None and value < minimum:
        problems.add(join(path, key), f"must be at least {minimum}")
        return default
    return value


def read_bool(section: Mapping[str, Any], path: str, key: str, default: bool,
              problems: Problems) -> bool:
    if key not in section:
        return default
    value = section[key]
    if not isinstance(value, bool):
        problems.add(join(path, key), "must be true or false")
        return default
    return value


def read_str(section: Mapping[str, Any], path: str, key: str, default: str | None,
             problems: Problems, required: bool = False) -> str | None:
    if key not in section or section[key] is None:
        if required:
            problems.add(join(path, key), "is required")
        return default
    value = section[key]
    if not isinstance(value, str):
        problems.add(join(path, key), "must be a string")
        return default
    return value


def read_number_list(section: Mapping[str, Any], path: str, key: str,
                     default: tuple[float, ...], problems: Problems) -> tuple[float, ...]:
    """Histogram bucket bounds: a non-empty, strictly increasing list of numbers."""
    if key not in section:
        return default
    value = section[key]
    if not isinstance(value, list) or not value or not all(
        isinstance(item, int | float) and not isinstance(item, bool) for item in value
    ):
        problems.add(join(path, key), "must be a non-empty list of numbers")
        return default
    if not all(math.isfinite(item) for item in value):
        problems.add(join(path, key), "must be finite numbers (+Inf is always added)")
        return default
    if any(later <= earlier for earlier, later in pairwise(value)):
        problems.add(join(path, key), "must be strictly increasing")
        return default
    return tuple(float(item) for item in value)
