"""What changed between two CLIENT LISTs of one server, per raw label tuple: ids opened and
closed, and the traffic each tuple's clients added (churn and traffic attribution).

Both sides are `Tracked` snapshots (every client's id, tuple index and traffic counters, sorted
by id), compared in one merge walk: by the compiled scanner's `diff` when it is built, else by
`diff_pure` here, which is the semantics (hypothesis keeps the two equal).
"""

from __future__ import annotations

import operator
from array import array
from dataclasses import dataclass

from exporter.pipeline import clientlist
from exporter.pipeline.columns import UINT64_MAX, Tracked

EMPTY = Tracked(b"", b"", b"", b"", b"")


@dataclass(frozen=True)
class Changes:
    """Between two snapshots: per current tuple the ids that are new, per previous tuple the
    ids that are gone, per current tuple the traffic (bytes in, bytes out, commands) its
    clients added; `monotonic` False: a new id was not above the previous largest."""

    opened: tuple[int, ...]
    closed: tuple[int, ...]
    traffic: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    monotonic: bool


def diff(previous: Tracked, nprevious: int, current: Tracked, ncurrent: int, *,
         compiled: bool = True) -> Changes:
    """`nprevious`, `ncurrent`: how many raw label tuples each snapshot's combos index."""
    scanner = clientlist._compiled  # read at call time: tests force the pure path with None
    if compiled and scanner is not None:
        opened, closed, traffic, monotonic = scanner.diff(
            previous.arrays(), nprevious, current.arrays(), ncurrent)
        return Changes(opened, closed, traffic, monotonic)
    return diff_pure(previous, nprevious, current, ncurrent)


def _columns(snapshot: Tracked) -> tuple[array[int], array[int], list[array[int]]]:
    return (array("q", snapshot.ids), array("i", snapshot.combos),
            [array("Q", column) for column in (snapshot.net_in, snapshot.net_out,
                                               snapshot.cmds)])


def diff_pure(previous: Tracked, nprevious: int, current: Tracked, ncurrent: int) -> Changes:
    prev_ids, prev_combos, prev_traffic = _columns(previous)
    cur_ids, cur_combos, cur_traffic = _columns(current)
    if _increasing(prev_ids) and _increasing(cur_ids):
        return _diff_distinct(prev_ids, prev_combos, prev_traffic, cur_ids, cur_combos,
                              cur_traffic, nprevious, ncurrent)
    return _merge_walk(prev_ids, prev_combos, prev_traffic, cur_ids, cur_combos, cur_traffic,
                       nprevious, ncurrent)


def _increasing(ids: array[int]) -> bool:
    return all(map(operator.lt, ids, ids[1:]))


def _diff_distinct(prev_ids: array[int], prev_combos: array[int], prev_traffic: list[array[int]],
                   cur_ids: array[int], cur_combos: array[int], cur_traffic: list[array[int]],
                   nprevious: int, ncurrent: int) -> Changes:
    """No id repeats (every real server): set lookups instead of a walk, and no per-client
    traffic loop when neither snapshot has traffic (Redis before 8.2)."""
    before = dict(zip(prev_ids, range(len(prev_ids))))
    now = set(cur_ids)
    opened, closed = [0] * ncurrent, [0] * nprevious
    new = [j for j, client in enumerate(cur_ids) if client not in before]
    for j in new:
        opened[cur_combos[j]] += 1
    for i in (i for i, client in enumerate(prev_ids) if client not in now):
        closed[prev_combos[i]] += 1
    prev_max = prev_ids[-1] if prev_ids else -(1 << 63)
    monotonic = not new or cur_ids[new[0]] > prev_max
    traffic = [[0] * ncurrent for _ in range(3)]
    if any(map(any, cur_traffic)):
        for column, was, values in zip(traffic, prev_traffic, cur_traffic):
            for j, client in enumerate(cur_ids):
                at = before.get(client)
                added = values[j] if at is None else max(values[j] - was[at], 0)
                column[cur_combos[j]] = (column[cur_combos[j]] + added) & UINT64_MAX
    return Changes(tuple(opened), tuple(closed),
                   (tuple(traffic[0]), tuple(traffic[1]), tuple(traffic[2])), monotonic)


def _merge_walk(prev_ids: array[int], prev_combos: array[int], prev_traffic: list[array[int]],
                cur_ids: array[int], cur_combos: array[int], cur_traffic: list[array[int]],
                nprevious: int, ncurrent: int) -> Changes:
    """Any snapshots, repeated ids included: paired in order, as the compiled diff does."""
    opened, closed = [0] * ncurrent, [0] * nprevious
    traffic = [[0] * ncurrent for _ in range(3)]
    prev_max = prev_ids[-1] if prev_ids else -(1 << 63)
    monotonic = True
    i = j = 0
    while i < len(prev_ids) or j < len(cur_ids):
        if j >= len(cur_ids) or (i < len(prev_ids) and prev_ids[i] < cur_ids[j]):
            closed[prev_combos[i]] += 1  # gone since the previous snapshot
            i += 1
            continue
        combo = cur_combos[j]
        if i >= len(prev_ids) or prev_ids[i] > cur_ids[j]:  # new: counted from 0
            opened[combo] += 1
            monotonic = monotonic and cur_ids[j] > prev_max
            for column, values in zip(traffic, cur_traffic):
                column[combo] = (column[combo] + values[j]) & UINT64_MAX
            j += 1
            continue
        for column, before, now in zip(traffic, prev_traffic, cur_traffic):  # in both
            column[combo] = (column[combo] + max(now[j] - before[i], 0)) & UINT64_MAX
        i += 1
        j += 1
    return Changes(tuple(opened), tuple(closed),
                   (tuple(traffic[0]), tuple(traffic[1]), tuple(traffic[2])), monotonic)
