"""Pure grouping rules: name rewriting and the `max_groups` cap with its `__other__` tuple."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from exporter.config.model import RewriteRule

OTHER = "__other__"
POLLS_BEFORE_LEAVING = 3  # a kept tuple leaves only after this many polls outside the top
_REWRITE_CACHE_LIMIT = 10_000

LabelTuple = tuple[str, ...]


def rewrite_name(name: str, rules: Sequence[RewriteRule]) -> str:
    """First rule whose pattern fully matches wins; an empty result keeps the original."""
    for rule in rules:
        match = rule.match.fullmatch(name)
        if match is not None:
            return match.expand(rule.replace) or name
    return name


def rewrite_groups(groups: Mapping[LabelTuple, int], name_index: int | None,
                   rules: Sequence[RewriteRule], cache: dict[str, str]) -> dict[LabelTuple, int]:
    """Apply `name_rewrite` to the name label of every tuple, merging tuples that meet.

    `cache` belongs to one target and spans polls, so each distinct name is matched once.
    """
    if name_index is None or not rules:
        return dict(groups)
    if len(cache) > _REWRITE_CACHE_LIMIT:
        cache.clear()
    merged: Counter[LabelTuple] = Counter()
    for labels, count in groups.items():
        name = labels[name_index]
        new_name = cache.get(name)
        if new_name is None:
            new_name = cache[name] = rewrite_name(name, rules)
        key = (*labels[:name_index], new_name, *labels[name_index + 1:])
        merged[key] += count
    return dict(merged)


@dataclass(frozen=True)
class GroupState:
    """Tuples kept as their own series, each with its polls spent outside the top."""

    misses: Mapping[LabelTuple, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CappedGroups:
    connections: dict[LabelTuple, int]
    idle: dict[LabelTuple, int]  # exactly the same tuples as `connections`


def cap_groups(connections: Mapping[LabelTuple, int], idle: Mapping[LabelTuple, int],
               state: GroupState, max_groups: int, width: int
               ) -> tuple[CappedGroups, GroupState]:
    """Keep at most `max_groups` tuples; sum the rest into one all-`__other__` tuple.

    The top is ranked by connections (ties by label values, ascending). A kept tuple that
    falls out of the top stays for POLLS_BEFORE_LEAVING polls, so series do not flap; a
    newcomer takes its place only then. The cap itself is never exceeded.
    """
    ranked = sorted(connections, key=lambda labels: (-connections[labels], labels))
    top = set(ranked[:max_groups])
    misses: dict[LabelTuple, int] = {}
    rank = {labels: index for index, labels in enumerate(ranked)}
    # Best-ranked incumbents first, so a lowered cap (reload) keeps the right ones.
    incumbents = sorted(state.misses.items(), key=lambda item: rank.get(item[0], len(rank)))
    for labels, previous in incumbents:
        missed = 0 if labels in top else previous + 1
        if missed < POLLS_BEFORE_LEAVING and len(misses) < max_groups:
            misses[labels] = missed
    for labels in ranked:
        if len(misses) >= max_groups:
            break
        misses.setdefault(labels, 0)
    other_tuple = (OTHER,) * width
    kept_connections = {labels: connections.get(labels, 0) for labels in misses}
    kept_idle = {labels: idle.get(labels, 0) for labels in misses}
    overflow = [labels for labels in connections if labels not in misses]
    if overflow:  # added to, not replacing, a real group whose labels are all __other__
        kept_connections[other_tuple] = (kept_connections.get(other_tuple, 0)
                                         + sum(connections[labels] for labels in overflow))
        kept_idle[other_tuple] = (kept_idle.get(other_tuple, 0)
                                  + sum(idle.get(labels, 0) for labels in overflow))
    return CappedGroups(kept_connections, kept_idle), GroupState(misses)
