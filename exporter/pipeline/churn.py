"""Churn and traffic between two CLIENT LISTs of one server, per group, exact against INFO.

Each CLIENT LIST comes with the INFO of the same write (one snapshot). Between two snapshots:
- an id first seen is opened in its group, an id gone is closed in the group it was last
  seen in (a replica's link to its master, flags M, is neither: it is no accepted connection);
- what INFO's `total_connections_received` grew beyond the ids first seen was opened and
  closed in between: `__unattributed__`, in both families, so that every opened series
  together moves exactly as `total_connections_received`;
- traffic (tot-net-in, tot-net-out, tot-cmds; Valkey 8.0+, Redis 8.2+) is what each client
  added (a new id from 0), and the rest of INFO's totals is `__unattributed__`.
A new `run_id` counts every listed id as opened and the previous run's as closed. A window
where an INFO total went down or the remainder would be negative (CONFIG RESETSTAT) is
skipped, never counted negative. Ids that are not increasing (proxies) give no churn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from exporter.pipeline.columns import Tracked
from exporter.pipeline.groups import ZERO, GroupMeasures, Groups, LabelTuple, merge_into
from exporter.pipeline.tracking import EMPTY, diff

UNATTRIBUTED = "__unattributed__"
TOTAL_FIELDS = ("total_connections_received", "total_commands_processed",
                "total_net_input_bytes", "total_net_output_bytes")


@dataclass(frozen=True)
class Totals:
    """INFO's counters in the same snapshot as a CLIENT LIST (None: not reported)."""

    run_id: str
    connections: int | None
    commands: int | None
    net_in: int | None
    net_out: int | None

    @classmethod
    def of(cls, info: Mapping[str, str]) -> Totals:
        values = [_integer(info.get(field)) for field in TOTAL_FIELDS]
        return cls(info.get("run_id", ""), *values)


def _integer(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


@dataclass(frozen=True)
class Listed:
    """One CLIENT LIST as the next one needs it: ~32 bytes per client and a few per group."""

    totals: Totals
    tracked: Tracked
    labels: tuple[LabelTuple, ...]  # decoded label tuple per index of `tracked.combos`
    counted: tuple[bool, ...]  # per index: False for a replica's link to its master
    traffic: bool  # the reply had tot-net-in, tot-net-out and tot-cmds


@dataclass(frozen=True)
class Window:
    """What changed since the previous CLIENT LIST: CHANGES fields by label tuple (before
    rewrite and cap) and for `__unattributed__`; which families exist."""

    groups: Groups
    unattributed: GroupMeasures
    churn: bool  # ids are tracked and increasing: opened and closed exist
    traffic: bool  # and the server reports per-client traffic
    monotonic: bool = True  # False: a new id was not above the previous largest (a proxy)


NOT_COUNTED = Window({}, ZERO, churn=False, traffic=False)


def window(previous: Listed | None, current: Listed) -> Window:
    if not current.tracked.ids:  # no client line had an id: nothing can be followed
        return NOT_COUNTED
    traffic = current.traffic
    if previous is None:  # the exporter's first CLIENT LIST: a baseline only
        return Window({}, ZERO, churn=True, traffic=traffic)
    new_run = previous.totals.run_id != current.totals.run_id
    before = EMPTY if new_run else previous.tracked
    changes = diff(before, 0 if new_run else len(previous.labels), current.tracked,
                   len(current.labels))
    if not changes.monotonic:
        return Window({}, ZERO, churn=False, traffic=False, monotonic=False)
    closed = (diff(previous.tracked, len(previous.labels), EMPTY, 0).closed if new_run
              else changes.closed)
    groups: Groups = {}
    opened_total = 0
    for index, labels in enumerate(current.labels):
        opened = changes.opened[index] if current.counted[index] else 0
        added = [column[index] for column in changes.traffic] if traffic else [0, 0, 0]
        opened_total += opened
        merge_into(groups, labels, GroupMeasures(0, 0, 0, 0, 0, opened, 0, *added))
    for index, labels in enumerate(previous.labels):
        if previous.counted[index] and closed[index]:
            merge_into(groups, labels, GroupMeasures(connections_closed=closed[index]))
    rest = _remainder(previous.totals, current.totals, new_run, opened_total, groups, traffic)
    if rest is None:  # a total went down or would go negative (RESETSTAT): skip the window
        return Window({}, ZERO, churn=True, traffic=traffic)
    return Window(groups, rest, churn=True, traffic=traffic)


def _remainder(before: Totals, after: Totals, new_run: bool, opened: int, groups: Groups,
               traffic: bool) -> GroupMeasures | None:
    """`__unattributed__`'s changes: INFO's growth minus what the groups account for."""
    start = Totals(after.run_id, 0, 0, 0, 0) if new_run else before
    grown = _deltas(start, after, traffic)
    if grown is None:
        return None
    connections, *totals = grown
    transient = connections - opened
    spent = [sum(getattr(record, field) for record in groups.values())
             for field in ("network_input_bytes", "network_output_bytes", "commands")]
    rest = [total - used for total, used in zip(totals, spent)] if traffic else [0, 0, 0]
    if transient < 0 or min(rest) < 0:
        return None
    net_in, net_out, commands = rest
    return GroupMeasures(connections_opened=transient, connections_closed=transient,
                         network_input_bytes=net_in, network_output_bytes=net_out,
                         commands=commands)


def _deltas(before: Totals, after: Totals, traffic: bool) -> list[int] | None:
    """How much each INFO total grew (None: one is missing or went down)."""
    pairs = [(before.connections, after.connections)]
    if traffic:
        pairs += [(before.net_in, after.net_in), (before.net_out, after.net_out),
                  (before.commands, after.commands)]
    grown = []
    for old, new in pairs:
        if old is None or new is None or new < old:
            return None
        grown.append(new - old)
    return grown + [0] * (4 - len(grown))
