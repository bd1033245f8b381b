"""Per-client state between CLIENT LISTs (pipeline/tracking.py and the scanners' tracked
snapshots): the compiled scanner and its pure twin must agree on any reply and any pair of
snapshots, and the merge walk must say exactly which ids came, went and what they sent."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config.model import Buckets
from exporter.pipeline.clientlist import line_keys, scan_reply
from exporter.pipeline.columns import HISTOGRAM_SOURCES, ClientListSpec, Tracked
from exporter.pipeline.tracking import diff, diff_pure
from tests.test_clientlist_scanners import replies

BUCKETS = {name: getattr(Buckets(), name) for name in HISTOGRAM_SOURCES}
TRACKING = ClientListSpec(("name",), 60.0, BUCKETS, track=True)


pytestmark = pytest.mark.usefixtures("compiled_scanner")  # tests/conftest.py


def snapshot(rows: list[tuple[int, int, int, int, int]]) -> Tracked:
    """(id, combo, net_in, net_out, cmds) rows, sorted by id as scanners keep them."""
    rows = sorted(rows, key=lambda row: row[0])
    return Tracked(array("q", (row[0] for row in rows)).tobytes(),
                   array("i", (row[1] for row in rows)).tobytes(),
                   *(array("Q", (row[2 + k] for row in rows)).tobytes() for k in range(3)))


def line(cid: int, name: str, net_in: int, net_out: int, cmds: int) -> str:
    """A Valkey 8.0 CLIENT LIST line (the field set of the real capture)."""
    return (f"id={cid} addr=127.0.0.1:{40000 + cid} laddr=127.0.0.1:6379 fd={cid + 8} "
            f"name={name} age=2 idle=2 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 "
            "qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 "
            "tot-mem=1928 events=r cmd=ping user=default redir=-1 resp=2 lib-name= lib-ver= "
            f"tot-net-in={net_in} tot-net-out={net_out} tot-cmds={cmds}")


def scanned(lines: list[str], compiled: bool = True) -> tuple[list[bytes | None], Tracked]:
    raw = ("\n".join(lines) + "\n").encode()
    scan = scan_reply(raw, TRACKING, line_keys(raw), compiled=compiled)
    assert scan.tracked is not None
    return [labels[1] for labels in scan.combos], scan.tracked


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "pure"])
def test_ids_that_came_went_and_stayed_between_two_lists(compiled: bool) -> None:
    names_a, before = scanned([line(3, "app", 100, 50, 4), line(5, "job", 30, 10, 2),
                               line(4, "app", 200, 80, 9)], compiled)
    names_b, after = scanned([line(4, "app", 260, 95, 12), line(7, "web", 40, 5, 3),
                              line(8, "app", 10, 1, 1)], compiled)
    changes = diff(before, len(names_a), after, len(names_b), compiled=compiled)
    opened = dict(zip(names_b, changes.opened))
    closed = dict(zip(names_a, changes.closed))
    assert opened == {b"app": 1, b"web": 1}  # id 8 (app) and 7 (web); 4 stayed
    assert closed == {b"app": 1, b"job": 1}  # ids 3 and 5
    net_in, net_out, cmds = (dict(zip(names_b, column)) for column in changes.traffic)
    assert net_in == {b"app": 60 + 10, b"web": 40}  # id 4 added 60, id 8 is new: all of it
    assert (net_out, cmds) == ({b"app": 15 + 1, b"web": 5}, {b"app": 3 + 1, b"web": 3})
    assert changes.monotonic
    # The tracked arrays are sorted by id whatever the reply's order.
    assert list(array("q", before.ids)) == [3, 4, 5]


def test_a_new_id_below_the_largest_one_seen_means_ids_are_not_increasing() -> None:
    before = snapshot([(10, 0, 0, 0, 0), (20, 0, 0, 0, 0)])
    after = snapshot([(20, 0, 0, 0, 0), (15, 0, 0, 0, 0)])  # 15: new, yet below 20
    assert not diff(before, 1, after, 1).monotonic
    assert diff(before, 1, snapshot([(21, 0, 0, 0, 0)]), 1).monotonic


def test_a_counter_that_went_down_adds_nothing() -> None:
    before = snapshot([(1, 0, 500, 500, 500)])
    after = snapshot([(1, 0, 400, 600, 500)])
    assert diff(before, 1, after, 1).traffic == ((0,), (100,), (0,))


tracked_rows = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3), st.integers(0, 10**15),
                                  st.integers(0, 10**15), st.integers(0, 10**6)), max_size=30)


@settings(max_examples=400, deadline=None)
@given(before=tracked_rows, after=tracked_rows)
def test_compiled_and_pure_diff_agree(before: list[tuple[int, int, int, int, int]],
                                      after: list[tuple[int, int, int, int, int]]) -> None:
    """Repeated ids included (a malformed reply can repeat one): both pair them in order."""
    previous, current = snapshot(before), snapshot(after)
    assert diff(previous, 4, current, 4) == diff_pure(previous, 4, current, 4)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=replies())
def test_compiled_and_pure_tracked_snapshots_agree_on_any_reply(raw: bytes) -> None:
    keys = line_keys(raw[:65536])
    assert scan_reply(raw, TRACKING, keys) == scan_reply(raw, TRACKING, keys, compiled=False)
