"""Pure rendering of one target's view into exposition-format sample lines per family.

Text is rendered once per poll; /metrics only joins these strings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from exporter.expose import families as metrics
from exporter.expose.families import PoolState
from exporter.pipeline.columns import Histogram
from exporter.pipeline.digest import RedisView
from exporter.pipeline.groups import GroupMeasures, Groups
from exporter.pipeline.info import connections_in_use, info_number, io_threads

Labels = Sequence[tuple[str, str]]


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if type(value) is int and abs(value) < 10**15:  # counts and sums: most values
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def format_bound(bound: float) -> str:
    """Bucket bounds as Go and prometheus-client print them (`1.0`, `0.5`, `+Inf`)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def label_set(labels: Labels) -> str:
    """`{key="value",...}`, values escaped; "" for no labels."""
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{escape_label(val)}"' for key, val in labels) + "}"


def sample(name: str, labels: Labels, value: float) -> str:
    return f"{name}{label_set(labels)} {format_value(value)}\n"


@lru_cache(maxsize=8192)  # the same tuples come back every poll, in up to ten families
def _group_label_set(target: str, group_by: tuple[str, ...], labels: tuple[str, ...]) -> str:
    return label_set((("target", target), *zip(group_by, labels)))


@dataclass(frozen=True)
class SelfView:
    """The exporter's own per-target state at render time."""

    pool_in_use: int
    pool_idle: int
    pool_max: int
    connections_created: int
    last_duration: Mapping[str, float]
    errors: Mapping[tuple[str, str], int]
    last_success: Mapping[str, float]
    probe_success: float | None
    probe_duration: float | None
    client_list_bytes: int | None
    client_list_interval: float
    capabilities: Mapping[str, int]
    source: str = "static"
    address: str = ""
    parent: str = ""
    node_id: str = ""
    shard: str = ""
    health: str = ""


def render_redis(target: str, view: RedisView | None) -> dict[str, str]:
    """Families derived from Redis; with `view` None (redis_up 0) only redis_up remains."""
    base = (("target", target),)
    out: dict[str, str] = {metrics.UP.name: sample(metrics.UP.name, base, 0 if view is None
                                                    else 1)}
    if view is None:
        return out
    info = view.info
    if "redis_version" in info:
        out[metrics.INSTANCE_INFO.name] = sample(metrics.INSTANCE_INFO.name,
                                                 (*base, *_instance_labels(info)), 1)
    if view.start_time is not None:
        out[metrics.START_TIME.name] = sample(metrics.START_TIME.name, base, view.start_time)
    for item in metrics.INFO_FIELDS:
        value = info_number(info, item.field)
        if value is not None:
            out[item.family.name] = sample(item.family.name, base, value)
    out.update(_io_threads(base, info))
    out.update(_saturation(base, info, view.max_clients))
    if view.groups is not None:
        out.update(_groups(target, view.group_by, view.groups, view.counters, view.measured))
    for key, histogram in view.histograms.items():
        family = metrics.HISTOGRAMS[key].name
        out[family] = render_histogram(family, base, histogram)
    return out


def _instance_labels(info: Mapping[str, str]) -> Labels:
    """Valkey keeps `redis_version:7.2.4` for compatibility: its own name and version come from
    `server_name` and `valkey_version`, and its mode from `server_mode`."""
    server = info.get("server_name", "redis")
    version = info.get(f"{server}_version", info["redis_version"])
    mode = info.get("redis_mode", info.get("server_mode", ""))
    return (("redis_version", info["redis_version"]), ("role", info.get("role", "")),
            ("redis_mode", mode), ("server_name", server), ("server_version", version))


def _io_threads(base: Labels, info: Mapping[str, str]) -> dict[str, str]:
    threads = io_threads(info)
    out: dict[str, str] = {}
    for field, family in metrics.IO_THREAD_FAMILIES.items():
        _put(out, family.name, [sample(family.name, (*base, ("thread", number)), counts[field])
                                for number, counts in threads if field in counts])
    return out


def _saturation(base: Labels, info: Mapping[str, str], max_clients: float | None
                ) -> dict[str, str]:
    out: dict[str, str] = {}
    if max_clients is None:
        return out
    out[metrics.MAX_CLIENTS.name] = sample(metrics.MAX_CLIENTS.name, base, max_clients)
    used = connections_in_use(info)
    if used is None or max_clients <= 0:
        return out
    out[metrics.SATURATION.name] = sample(metrics.SATURATION.name, base, used / max_clients)
    out[metrics.HEADROOM.name] = sample(metrics.HEADROOM.name, base, max_clients - used)
    return out


def _groups(target: str, group_by: tuple[str, ...], groups: Groups, counters: Groups,
            measured: tuple[str, ...]) -> dict[str, str]:
    """One family per measured field of the group record: gauges over this poll's tuples,
    counters (churn, traffic) over the tuples their sums belong to. Each tuple's label set
    is rendered once, not once per family."""
    ordered: dict[int, list[tuple[str, tuple[str, ...]]]] = {}
    out = {}
    for measure in measured:
        family = metrics.GROUP_FAMILIES[measure]
        source = counters if family.type == "counter" else groups
        rows = ordered.setdefault(id(source), [
            (_group_label_set(target, group_by, labels), labels) for labels in sorted(source)])
        index = GroupMeasures._fields.index(measure)
        name = family.name
        out[name] = "".join(f"{name}{text} {format_value(source[labels][index])}\n"
                            for text, labels in rows)
    return out


def render_histogram(family: str, base: Labels, histogram: Histogram) -> str:
    lines = []
    cumulative = 0
    for bound, count in zip((*histogram.bounds, math.inf), histogram.counts):
        cumulative += count
        lines.append(sample(f"{family}_bucket", (*base, ("le", format_bound(bound))),
                            cumulative))
    lines.append(sample(f"{family}_sum", base, histogram.total))
    lines.append(sample(f"{family}_count", base, histogram.count))
    return "".join(lines)


def render_self(target: str, view: SelfView) -> dict[str, str]:
    """The exporter's own per-target families; present whether Redis is up or not."""
    base = (("target", target),)
    out = {
        metrics.TARGET_INFO.name: sample(metrics.TARGET_INFO.name, (
            *base, ("source", view.source), ("parent", view.parent),
            ("address", view.address), ("node_id", view.node_id), ("shard", view.shard),
            ("health", view.health)), 1),
        metrics.POOL_CONNECTIONS.name: "".join(
            sample(metrics.POOL_CONNECTIONS.name, (*base, ("state", state)), count)
            for state, count in ((PoolState.IN_USE, view.pool_in_use),
                                 (PoolState.IDLE, view.pool_idle))),
        metrics.POOL_MAX.name: sample(metrics.POOL_MAX.name, base, view.pool_max),
        metrics.POOL_CREATED.name: sample(metrics.POOL_CREATED.name, base,
                                          view.connections_created),
        metrics.CLIENT_LIST_INTERVAL.name: sample(metrics.CLIENT_LIST_INTERVAL.name, base,
                                                  view.client_list_interval),
    }
    for family, label, values in (
        (metrics.LAST_DURATION.name, "step", view.last_duration),
        (metrics.LAST_SUCCESS.name, "step", view.last_success),
        (metrics.CAPABILITY.name, "capability", view.capabilities),
    ):
        _put(out, family, [sample(family, (*base, (label, key)), values[key])
                           for key in sorted(values)])
    errors = [sample(metrics.POLL_ERRORS.name, (*base, ("step", step), ("kind", kind)), count)
              for (step, kind), count in sorted(view.errors.items())]
    _put(out, metrics.POLL_ERRORS.name, errors)
    if view.probe_success is not None:
        out[metrics.PROBE_SUCCESS.name] = sample(metrics.PROBE_SUCCESS.name, base,
                                                 view.probe_success)
    if view.probe_duration is not None:
        out[metrics.PROBE_DURATION.name] = sample(metrics.PROBE_DURATION.name, base,
                                                  view.probe_duration)
    if view.client_list_bytes is not None:
        out[metrics.CLIENT_LIST_BYTES.name] = sample(metrics.CLIENT_LIST_BYTES.name, base,
                                                     view.client_list_bytes)
    return out


def _put(out: dict[str, str], family: str, lines: Iterable[str]) -> None:
    text = "".join(lines)
    if text:
        out[family] = text
