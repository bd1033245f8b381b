"""Pure: a raw CLIENT LIST reply -> capped groups and histograms for one target.

The only state is the target's `AggregateState` (kept group tuples and the name-rewrite
cache), passed in and updated, so tests can drive polls one after another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.config.model import ClientListConfig
from exporter.pipeline.clientlist import summarize_client_list
from exporter.pipeline.columns import ClientListSpec, Histogram, RawReply
from exporter.pipeline.grouping import GroupState, Rewrite, cap_groups, rewrite_groups
from exporter.pipeline.groups import Groups


@dataclass
class AggregateState:
    group_state: GroupState = field(default_factory=GroupState)
    rewrite_caches: dict[str, dict[str, str]] = field(default_factory=dict)  # by label


@dataclass(frozen=True)
class ClientAggregate:
    groups: Groups  # at most max_groups tuples, plus __other__
    measured: tuple[str, ...]  # the GroupMeasures fields the server reports
    histograms: dict[str, Histogram]
    clients: int
    malformed: int
    reply_bytes: int


def client_list_spec(config: ClientListConfig) -> ClientListSpec:
    buckets = config.buckets
    return ClientListSpec(config.group_by, config.idle_threshold,
                          {name: getattr(buckets, name) for name in buckets.__dataclass_fields__})


def aggregate_client_list(raw: RawReply, config: ClientListConfig, state: AggregateState,
                          spec: ClientListSpec | None = None) -> ClientAggregate:
    summary = summarize_client_list(raw, spec or client_list_spec(config))
    group_by = config.group_by
    rewrites = [Rewrite(group_by.index(label), rules, state.rewrite_caches.setdefault(label, {}))
                for label, rules in (("name", config.name_rewrite),
                                     ("lib_name", config.lib_name_rewrite))
                if label in group_by and rules]
    groups = rewrite_groups(summary.groups, rewrites)
    capped, state.group_state = cap_groups(groups, state.group_state, config.max_groups,
                                           len(group_by))
    return ClientAggregate(capped, summary.measured, summary.histograms, summary.clients,
                           summary.malformed, len(raw))
