"""Pure grouping rules: name rewriting and the `max_groups` cap with its `__other__` tuple,
over whole group records (every measure of a group moves with it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from exporter.config.model import RewriteRule
from exporter.pipeline.groups import GroupMeasures, Groups, LabelTuple, merge_into, total

OTHER = "__other__"
POLLS_BEFORE_LEAVING = 3  # a kept tuple leaves only after this many polls outside the top
_REWRITE_CACHE_LIMIT = 10_000


def rewrite_name(name: str, rules: Sequence[RewriteRule]) -> str:
    """First rule whose pattern fully matches wins; an empty result keeps the original."""
    for rule in rules:
        match = rule.match.fullmatch(name)
        if match is not None:
            return match.expand(rule.replace) or name
    return name


@dataclass(frozen=True)
class Rewrite:
    """Rules for one label (name_rewrite, lib_name_rewrite) and the target's cache of their
    results, which spans polls, so each distinct value is matched once."""

    index: int  # the label's position in group_by
    rules: Sequence[RewriteRule]
    cache: dict[str, str]


def rewrite_groups(groups: Mapping[LabelTuple, GroupMeasures],
                   rewrites: Sequence[Rewrite]) -> Groups:
    """Apply each label's rules to every tuple, merging the tuples that meet."""
    if not rewrites:
        return dict(groups)
    for rewrite in rewrites:
        if len(rewrite.cache) > _REWRITE_CACHE_LIMIT:
            rewrite.cache.clear()
    merged: Groups = {}
    for labels, record in groups.items():
        new = list(labels)
        for rewrite in rewrites:
            value = labels[rewrite.index]
            result = rewrite.cache.get(value)
            if result is None:
                result = rewrite.cache[value] = rewrite_name(value, rewrite.rules)
            new[rewrite.index] = result
        merge_into(merged, tuple(new), record)
    return merged


@dataclass(frozen=True)
class GroupState:
    """Tuples kept as their own series, each with its polls spent outside the top."""

    misses: Mapping[LabelTuple, int] = field(default_factory=dict)


def cap_groups(groups: Mapping[LabelTuple, GroupMeasures], state: GroupState, max_groups: int,
               width: int) -> tuple[Groups, GroupState]:
    """Keep at most `max_groups` tuples; sum the rest into one all-`__other__` tuple.

    The top is ranked by connections (ties by label values, ascending). A kept tuple that
    falls out of the top stays for POLLS_BEFORE_LEAVING polls, so series do not flap; a
    newcomer takes its place only then. The cap itself is never exceeded.
    """
    ranked = sorted(groups, key=lambda labels: (-groups[labels].connections, labels))
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
    kept = {labels: groups.get(labels, GroupMeasures()) for labels in misses}
    overflow = [record for labels, record in groups.items() if labels not in misses]
    if overflow:  # added to, not replacing, a real group whose labels are all __other__
        merge_into(kept, (OTHER,) * width, total(overflow))
    return kept, GroupState(misses)
