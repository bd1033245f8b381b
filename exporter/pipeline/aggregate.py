"""Pure: a raw CLIENT LIST reply -> capped groups, histograms, churn and traffic for one target.

The only state is the target's `AggregateState` (kept group tuples, name-rewrite caches, the
previous CLIENT LIST's clients and the counters they add up to), passed in and updated, so
tests can drive polls one after another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.config.model import ClientListConfig
from exporter.pipeline.churn import NOT_COUNTED, UNATTRIBUTED, Listed, Totals, Window, window
from exporter.pipeline.clientlist import ClientListSummary, summarize_client_list
from exporter.pipeline.columns import ClientListSpec, Histogram, RawReply
from exporter.pipeline.grouping import GroupState, Rewrite, cap_groups, rewrite_groups
from exporter.pipeline.groups import (
    CHURN,
    TRAFFIC,
    ZERO,
    GroupMeasures,
    Groups,
    add,
    changes_only,
    merge_into,
)


@dataclass
class AggregateState:
    group_state: GroupState = field(default_factory=GroupState)
    rewrite_caches: dict[str, dict[str, str]] = field(default_factory=dict)  # by label
    listed: Listed | None = None  # the previous CLIENT LIST, for churn and traffic
    counters: Groups = field(default_factory=dict)  # CHANGES added up, by rendered tuple
    ids_monotonic: bool = True  # False once a server's ids were seen going back (a proxy)


@dataclass(frozen=True)
class ClientAggregate:
    groups: Groups  # at most max_groups tuples, plus __other__
    measured: tuple[str, ...]  # the GroupMeasures fields the server reports
    histograms: dict[str, Histogram]
    clients: int
    malformed: int
    reply_bytes: int
    counters: Groups = field(default_factory=dict)  # CHANGES since the first list, capped
    ids_monotonic: bool | None = None  # None: not tracked (no INFO, or no ids)


def client_list_spec(config: ClientListConfig) -> ClientListSpec:
    buckets = config.buckets
    return ClientListSpec(config.group_by, config.idle_threshold,
                          {name: getattr(buckets, name) for name in buckets.__dataclass_fields__},
                          track=True)


def aggregate_client_list(raw: RawReply, config: ClientListConfig, state: AggregateState,
                          spec: ClientListSpec | None = None,
                          totals: Totals | None = None) -> ClientAggregate:
    """`totals`: INFO's counters of the same snapshot; without them no churn is counted."""
    summary = summarize_client_list(raw, spec or client_list_spec(config))
    group_by = config.group_by
    changes = _window(summary, totals, state)
    groups = summary.groups
    if changes is not None and changes.groups:
        groups = dict(groups)
        for labels, record in changes.groups.items():
            merge_into(groups, labels, record)
    rewrites = [Rewrite(group_by.index(label), rules, state.rewrite_caches.setdefault(label, {}))
                for label, rules in (("name", config.name_rewrite),
                                     ("lib_name", config.lib_name_rewrite))
                if label in group_by and rules]
    groups = rewrite_groups(groups, rewrites)
    capped, state.group_state = cap_groups(groups, state.group_state, config.max_groups,
                                           len(group_by))
    measured = summary.measured
    if changes is not None and changes.churn:
        state.counters = _add_up(state.counters, capped, changes.unattributed, len(group_by))
        measured = (*measured, *CHURN, *(TRAFFIC if changes.traffic else ()))
    return ClientAggregate(capped, measured, summary.histograms, summary.clients,
                           summary.malformed, len(raw), dict(state.counters),
                           None if changes is None else state.ids_monotonic)


def _window(summary: ClientListSummary, totals: Totals | None,
            state: AggregateState) -> Window | None:
    """The changes since the previous CLIENT LIST (None: nothing tracked), and this one kept
    for the next. Ids seen going back once (a proxy) stop churn for the target's life."""
    tracked = summary.tracked
    if totals is None or tracked is None or not tracked.ids:
        return None
    listed = Listed(totals, tracked, summary.labels, summary.counted, summary.traffic)
    changes = window(state.listed, listed)
    state.listed = listed
    state.ids_monotonic = state.ids_monotonic and changes.monotonic
    return changes if state.ids_monotonic else NOT_COUNTED


def _add_up(counters: Groups, capped: Groups, unattributed: GroupMeasures,
            width: int) -> Groups:
    """Each rendered tuple's counters plus this window's changes; a tuple no longer rendered
    leaves (its series ends), `__unattributed__` always stays."""
    added = {labels: add(counters.get(labels, ZERO), changes_only(record))
             for labels, record in capped.items()}
    other = (UNATTRIBUTED,) * width
    added[other] = add(counters.get(other, ZERO), unattributed)
    return added
