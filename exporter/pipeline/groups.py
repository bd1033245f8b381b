"""One record per group of connections: every per-group measure, handled the same way.

The scanners (compiled and pure) fill a record per label tuple, name rewriting merges records,
the `max_groups` cap sums the overflow into `__other__`, and the renderer writes one family
per field (expose/families.py: `GROUP_FAMILIES`). Adding a per-group sum of a CLIENT LIST
column is one field here, its column in `SUMMED_COLUMNS`, and its family in the table.

The `CHANGES` fields are what changed since the previous CLIENT LIST (pipeline/churn.py): a
poll's record holds them for that window, and the target's counters add them up.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from typing import NamedTuple

LabelTuple = tuple[str, ...]


class GroupMeasures(NamedTuple):
    """What one group of connections adds up to. Fields after `idle` are column sums."""

    connections: int = 0  # client lines in the group
    idle: int = 0  # idle longer than idle_threshold, not counting flags b P S M O
    memory_bytes: int = 0  # tot-mem (6.0+)
    output_buffer_bytes: int = 0  # omem
    query_buffer_bytes: int = 0  # qbuf
    connections_opened: int = 0  # ids first seen in this group since the last CLIENT LIST
    connections_closed: int = 0  # ids gone, by the group they were last seen in
    network_input_bytes: int = 0  # tot-net-in added (Valkey 8.0+, Redis 8.2+)
    network_output_bytes: int = 0  # tot-net-out added
    commands: int = 0  # tot-cmds added


# The fields that sum a CLIENT LIST column over the group's clients (non-negative integers),
# in field order. A client whose value is missing or malformed adds nothing.
SUMMED_COLUMNS: Mapping[str, bytes] = {
    "memory_bytes": b"tot-mem",
    "output_buffer_bytes": b"omem",
    "query_buffer_bytes": b"qbuf",
}

# Always measured; a summed field only when the server reports its column.
COUNTED = ("connections", "idle")
# Per window between CLIENT LISTs: churn where ids are tracked, traffic where tot-* exist.
CHURN = ("connections_opened", "connections_closed")
TRAFFIC = ("network_input_bytes", "network_output_bytes", "commands")
CHANGES = (*CHURN, *TRAFFIC)
ZERO = GroupMeasures()
assert GroupMeasures._fields == (*COUNTED, *SUMMED_COLUMNS, *CHANGES), "the record's order"
SNAPSHOT_WIDTH = len(COUNTED) + len(SUMMED_COLUMNS)  # what a scanner's row fills

Groups = dict[LabelTuple, GroupMeasures]


def add(first: GroupMeasures, second: GroupMeasures) -> GroupMeasures:
    return GroupMeasures._make(map(operator.add, first, second))


def total(records: Iterable[GroupMeasures]) -> GroupMeasures:
    result = ZERO
    for record in records:
        result = add(result, record)
    return result


def merge_into(groups: Groups, labels: LabelTuple, record: GroupMeasures) -> None:
    """Add `record` to the group `labels` (created when new)."""
    known = groups.get(labels)
    groups[labels] = record if known is None else add(known, record)


def changes_only(record: GroupMeasures) -> GroupMeasures:
    """The record's CHANGES fields, its snapshot fields zeroed (what counters add up)."""
    return GroupMeasures._make((*(0,) * SNAPSHOT_WIDTH, *record[SNAPSHOT_WIDTH:]))


def column(groups: Mapping[LabelTuple, GroupMeasures], field: str) -> dict[LabelTuple, int]:
    """One measure of every group: `column(groups, "idle")`."""
    index = GroupMeasures._fields.index(field)
    return {labels: record[index] for labels, record in groups.items()}
