"""Pure INFO parsing: tolerant of unknown, missing and odd fields."""

from __future__ import annotations

from collections.abc import Mapping


def parse_info(raw: bytes | str) -> dict[str, str]:
    """`field:value` lines of every section; comments, blanks and odd lines are skipped."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def info_number(fields: Mapping[str, str], key: str) -> float | None:
    """The field as a number, or None when the server does not report it (never 0)."""
    value = fields.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def io_threads(fields: Mapping[str, str]) -> list[tuple[str, dict[str, float]]]:
    """INFO threads (Redis 8.0+): `io_thread_1:clients=54,reads=65,writes=64` ->
    [("1", {"clients": 54.0, "reads": 65.0, "writes": 64.0})], by thread number."""
    threads = []
    for key, value in fields.items():
        number = key.removeprefix("io_thread_")
        if number == key or not number.isdigit():
            continue
        counts: dict[str, float] = {}
        for item in value.split(","):
            name, _, text = item.partition("=")
            try:
                counts[name] = float(text)
            except ValueError:
                continue
        threads.append((number, counts))
    return sorted(threads, key=lambda thread: int(thread[0]))


def version_tuple(version: str) -> tuple[int, ...]:
    """`7.0.15` -> (7, 0, 15); unparseable parts count as 0."""
    parts = []
    for part in version.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def effective_max_clients(override: int | None, fields: Mapping[str, str],
                          from_config: float | None) -> float | None:
    """The target's max_clients setting, else INFO maxclients (6.2+), else CONFIG GET."""
    if override:
        return float(override)
    from_info = info_number(fields, "maxclients")
    return from_info if from_info is not None else from_config


def connections_in_use(fields: Mapping[str, str]) -> float | None:
    """What Redis compares with maxclients: clients + replicas + cluster bus links."""
    clients = info_number(fields, "connected_clients")
    if clients is None:
        return None
    return (clients + (info_number(fields, "connected_slaves") or 0)
            + (info_number(fields, "cluster_connections") or 0))
