"""Pure CLIENT LIST parsing and aggregation against the fixtures and small synthetic replies.

Expectations come from `tests/data/*/expected.json` (computed independently of our code, see
tests/data/README.md) and from `tests.support.golden.reference_clients`, a naive line reader
that shares nothing with `exporter.pipeline.clientlist`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pytest

from exporter.config.model import ClientListConfig
from exporter.pipeline.aggregate import AggregateState, ClientAggregate, aggregate_client_list
from exporter.pipeline.aggregate import client_list_spec as make_spec
from exporter.pipeline.clientlist import ClientListSummary, summarize_client_list
from exporter.pipeline.grouping import (
    OTHER,
    POLLS_BEFORE_LEAVING,
    GroupState,
    cap_groups,
)
from exporter.pipeline.groups import GroupMeasures, LabelTuple, column
from exporter.pipeline.labels import addr_host
from tests.support.golden import (
    CLIENT_LIST_SINCE,
    DATA_DIR,
    FIXTURES,
    VERSIONS,
    read_data,
    reference_clients,
)

# Every test here runs with the compiled scanner and with the pure path: same results.
pytestmark = pytest.mark.usefixtures("both_scanners")

HISTOGRAM_KEYS = {"idle_seconds": "idle", "age_seconds": "age", "query_buffer_bytes": "qbuf",
                  "output_buffer_bytes": "omem", "memory_bytes": "tot-mem"}
DEFAULT = ClientListConfig()


def expected(directory: str) -> dict[str, Any]:
    with open(os.path.join(DATA_DIR, directory, "expected.json"), encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def aggregate(raw: bytes, config: ClientListConfig = DEFAULT) -> ClientAggregate:
    return aggregate_client_list(raw, config, AggregateState())


def summarize(raw: bytes, config: ClientListConfig = DEFAULT) -> ClientListSummary:
    return summarize_client_list(raw, make_spec(config))


def idle_groups(summary: ClientListSummary) -> dict[LabelTuple, int]:
    """Groups with idle connections (those without any leave the comparison)."""
    return {labels: idle for labels, idle in column(summary.groups, "idle").items() if idle}


def by_first_label(groups: dict[LabelTuple, int]) -> dict[str, int]:
    return {labels[0]: count for labels, count in groups.items()}


def client_line(name: str, *, idle: str = "2", age: str = "2", flags: str = "N",
                cid: int = 1) -> str:
    """A Redis 7.0 CLIENT LIST line (the captured field set) with chosen values."""
    return (f"id={cid} addr=127.0.0.1:{40000 + cid} laddr=127.0.0.1:6379 fd={cid + 8} "
            f"name={name} age={age} idle={idle} flags={flags} db=0 sub=0 psub=0 ssub=0 "
            "multi=-1 qbuf=0 qbuf-free=20474 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 "
            "oll=0 omem=0 tot-mem=22272 events=r cmd=ping user=default redir=-1 resp=2")


def reply(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


# -- the version fixtures ------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_counts_per_raw_name(version: str) -> None:
    config = ClientListConfig(group_by=("name",), name_rewrite=())
    result = aggregate(read_data(f"{version}/client_list.txt"), config)
    assert by_first_label(column(result.groups, "connections")) == expected(version)["names"]


@pytest.mark.parametrize("version", VERSIONS)
def test_counts_per_client_type(version: str) -> None:
    config = ClientListConfig(group_by=("client_type",))
    result = aggregate(read_data(f"{version}/client_list.txt"), config)
    assert by_first_label(column(result.groups, "connections")) == expected(version)["client_types"]


@pytest.mark.parametrize("version", VERSIONS)
def test_groups_sum_to_line_count(version: str) -> None:
    truth = expected(version)
    result = aggregate(read_data(f"{version}/client_list.txt"))
    assert result.clients == truth["client_list_lines"] == truth["connected_clients"]
    assert sum(column(result.groups, "connections").values()) == truth["client_list_lines"]
    assert result.malformed == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_default_rewrite_merges_pod_and_hex_names(version: str) -> None:
    result = aggregate(read_data(f"{version}/client_list.txt"),
                       ClientListConfig(group_by=("name",)))
    names = by_first_label(column(result.groups, "connections"))
    assert names["api"] == 3
    assert names["web"] == 2
    assert not [name for name in names if name.startswith(("api-", "web-"))]
    untouched = {name: count for name, count in expected(version)["names"].items()
                 if not name.startswith(("api-", "web-"))}
    assert {name: names[name] for name in untouched} == untouched
    assert sum(names.values()) == 17


@pytest.mark.parametrize("version", VERSIONS)
def test_histograms_match_reference_reader(version: str) -> None:
    raw = read_data(f"{version}/client_list.txt")
    clients = reference_clients(raw)
    summary = summarize(raw)
    for name, key in HISTOGRAM_KEYS.items():
        values = [client.number(key) for client in clients if key in client.fields]
        if not values:
            assert name not in summary.histograms  # absent, not an empty histogram of zeros
            continue
        histogram = summary.histograms[name]
        observed = [value for value in values if value is not None]
        assert histogram.count == len(observed) == len(clients)
        assert histogram.total == sum(observed)
        bounds = histogram.bounds
        per_bucket = Counter(next((i for i, b in enumerate(bounds) if v <= b), len(bounds))
                             for v in observed)
        assert histogram.counts == tuple(per_bucket[i] for i in range(len(bounds) + 1))


@pytest.mark.parametrize("version", VERSIONS)
def test_fixture_fields_follow_the_field_table(version: str) -> None:
    """Every line of a fixture has a field exactly when its server has it (CLIENT_LIST_SINCE:
    e.g. tot-mem from 6.0.9, io-thread on Redis 8.0, capa on Valkey 8.1)."""
    fixture = FIXTURES[version]
    clients = reference_clients(read_data(f"{version}/client_list.txt"))
    for key, since in CLIENT_LIST_SINCE.items():
        assert {key in client.fields for client in clients} == {fixture.has(since)}, key


@pytest.mark.parametrize("version", VERSIONS)
def test_memory_histogram_absent_before_tot_mem(version: str) -> None:
    histograms = summarize(read_data(f"{version}/client_list.txt")).histograms
    if FIXTURES[version].has(CLIENT_LIST_SINCE["tot-mem"]):  # real 6.0.9 has it
        assert histograms["memory_bytes"].count == 17
    else:
        assert "memory_bytes" not in histograms  # 5.0: absent, not 17 zeros


@pytest.mark.parametrize("version", VERSIONS)
def test_user_is_empty_when_the_server_has_no_acl(version: str) -> None:
    config = ClientListConfig(group_by=("user",))
    result = aggregate(read_data(f"{version}/client_list.txt"), config)
    if FIXTURES[version].has(CLIENT_LIST_SINCE["user"]):  # billing AUTHed as ACL user app
        assert column(result.groups, "connections") == {("default",): 16, ("app",): 1}
    else:
        assert column(result.groups, "connections") == {("",): 17}


@pytest.mark.parametrize("version", VERSIONS)
def test_lib_name_is_empty_when_missing_or_unset(version: str) -> None:
    config = ClientListConfig(group_by=("lib_name", "client_type"))
    result = aggregate(read_data(f"{version}/client_list.txt"), config)
    assert column(result.groups, "connections") == {("", "normal"): 15, ("", "pubsub"): 2}


# -- edge fixtures -------------------------------------------------------------------------

def test_odd_names_are_their_own_groups() -> None:
    truth = expected("edge")["client_list_odd_names.txt"]
    config = ClientListConfig(group_by=("name",), name_rewrite=())
    result = aggregate(read_data("edge/client_list_odd_names.txt"), config)
    names = by_first_label(column(result.groups, "connections"))
    assert result.clients == truth["client_list_lines"] == 8
    assert set(names.values()) == {1}
    assert len(names) == 8
    printable = [name for name in truth["names_latin1"] if name.isascii()]
    assert printable == ['a"b', "back\\slash", "k=v", "a=b=c", "=", "{json}", "x'y"]
    assert set(printable) <= set(names)
    (non_utf8,) = set(names) - set(printable)
    assert non_utf8.startswith("caf")
    assert non_utf8 != "caf"


def test_malformed_lines_never_cost_the_well_formed_ones() -> None:
    truth = expected("edge")["client_list_malformed.txt"]
    config = ClientListConfig(group_by=("name",), name_rewrite=())
    result = aggregate(read_data("edge/client_list_malformed.txt"), config)
    names = by_first_label(column(result.groups, "connections"))
    assert set(truth["well_formed_names"]) <= set(names)
    # bad-age, missing-idle and the truncated last line are clients too.
    assert names == {name: 1 for name in ("api-7f9c2d4e1a", "bad-age", "missing-idle",
                                          "extra-field", "web-5d8f7c9b6-x2k4p", "truncated")}
    assert result.clients == 6 == sum(names.values())


def test_malformed_reports_the_lines_that_are_not_clients() -> None:
    # Line 6 (`!!!`) is not a client; the empty line 4 is skipped, not reported: Redis
    # never sends one, and a blank line carries nothing to lose.
    malformed = aggregate(read_data("edge/client_list_malformed.txt")).malformed
    assert malformed == 1


def test_malformed_values_are_not_observed() -> None:
    histograms = summarize(read_data("edge/client_list_malformed.txt")).histograms
    counts = {name: histogram.count for name, histogram in histograms.items()}
    assert counts == {
        "age_seconds": 5,  # not bad-age (age=ABCDE)
        "idle_seconds": 5,  # not missing-idle
        "query_buffer_bytes": 6,  # the truncated line still has a complete qbuf=0
        "output_buffer_bytes": 5,  # not truncated
        "memory_bytes": 5,  # not truncated
    }


@pytest.mark.parametrize("bad", ["missing_idle", "truncated"])
def test_a_malformed_first_line_costs_nothing_either(bad: str) -> None:
    """The field order is learned from the reply; a bad first line must not hide fields."""
    lines = read_data("edge/client_list_malformed.txt").decode().split("\n")
    first = lines[2] if bad == "missing_idle" else lines[7]
    good = [client_line("idler", idle="100", cid=2), client_line("busy", idle="0", cid=3)]
    raw = reply([first, *good])
    summary = summarize(raw)
    assert summary.clients == 3
    for name in HISTOGRAM_KEYS:
        assert name in summary.histograms, f"{name} lost for the well-formed lines"
        assert summary.histograms[name].count >= 2, name
    assert idle_groups(summary) == {("idler", "normal"): 1}


def test_fast_and_tolerant_paths_agree() -> None:
    lines = [client_line(f"c{i}", idle=str(i * 7), age=str(i * 11), cid=i) for i in range(20)]
    fast = summarize(reply(lines))
    slow = summarize(reply([*lines[:10], "!!!", *lines[10:]]))
    assert slow.malformed == 1
    assert (fast.clients, fast.groups, idle_groups(fast), fast.histograms) == \
        (slow.clients, slow.groups, idle_groups(slow), slow.histograms)


def test_ipv6_and_unix_addresses() -> None:
    config = ClientListConfig(group_by=("name", "addr_host"))
    result = aggregate(read_data("edge/client_list_ipv6_unix.txt"), config)
    assert column(result.groups, "connections") == {
        ("ipv6-client", "::1"): 1,
        ("unix-client", "unix"): 1,
        ("ipv6-global", "2001:db8::17"): 1,
        ("unix-default-path", "unix"): 1,
        ("ipv4-client", "127.0.0.1"): 1,
    }


def test_addr_host() -> None:
    assert addr_host("[::1]:58288") == "::1"
    assert addr_host("[2001:db8::17]:53212") == "2001:db8::17"
    assert addr_host("127.0.0.1:36058") == "127.0.0.1"
    assert addr_host("/tmp/fixture-redis.sock:0") == "unix"
    assert addr_host("") == ""


# -- idle connections and histogram buckets ------------------------------------------------

def test_idle_connections_exclude_idle_by_design() -> None:
    raw = reply([
        client_line("app", idle="61", cid=1),  # idle
        client_line("app", idle="60", cid=2),  # not longer than the 60s threshold
        client_line("app", idle="5", cid=3),
        client_line("tx", idle="3600", flags="x", cid=4),  # MULTI is not idle by design
        client_line("blocked", idle="3600", flags="b", cid=5),
        client_line("sub", idle="3600", flags="P", cid=6),
        client_line("replica", idle="3600", flags="S", cid=7),
        client_line("master", idle="3600", flags="M", cid=8),
        client_line("monitor", idle="3600", flags="O", cid=9),
        client_line("", idle="100000", cid=10),
    ])
    result = aggregate(raw)
    assert column(result.groups, "connections") == {
        ("app", "normal"): 3, ("tx", "normal"): 1, ("blocked", "normal"): 1,
        ("sub", "pubsub"): 1, ("replica", "replica"): 1, ("master", "master"): 1,
        ("monitor", "monitor"): 1, ("", "normal"): 1,
    }
    assert column(result.groups, "idle") == {
        ("app", "normal"): 1, ("tx", "normal"): 1, ("blocked", "normal"): 0,
        ("sub", "pubsub"): 0, ("replica", "replica"): 0, ("master", "master"): 0,
        ("monitor", "monitor"): 0, ("", "normal"): 1,
    }


def test_bucket_bounds_are_inclusive() -> None:
    idles = [0, 1, 5, 6, 60, 61, 86400, 86401]
    raw = reply([client_line(f"c{i}", idle=str(v), cid=i) for i, v in enumerate(idles)])
    histogram = summarize(raw).histograms["idle_seconds"]
    assert histogram.bounds == (1, 5, 15, 60, 300, 900, 3600, 86400)
    #                            <=1 <=5 <=15 <=60 <=300 <=900 <=3600 <=86400 +Inf
    assert histogram.counts == (2, 1, 1, 1, 1, 0, 0, 1, 1)
    assert histogram.count == 8
    assert histogram.total == sum(idles)


# -- the max_groups cap and its hysteresis -------------------------------------------------

def test_cap_keeps_max_groups_and_loses_no_client() -> None:
    lines = [client_line(f"n{i:03d}", cid=i) for i in range(200)]
    lines += [client_line("big", cid=1000 + i) for i in range(10)]
    result = aggregate(reply(lines))
    connections = column(result.groups, "connections")
    other = (OTHER, OTHER)
    kept = [labels for labels in connections if labels != other]
    assert len(kept) == 50
    assert len(connections) == 51
    assert connections[("big", "normal")] == 10
    # Ties (1 client each) are ranked by label values, ascending.
    assert sorted(kept) == [("big", "normal"), *((f"n{i:03d}", "normal") for i in range(49))]
    assert connections[other] == 151
    assert sum(connections.values()) == 210 == result.clients
    assert set(column(result.groups, "idle")) == set(connections)


def _poll(counts: dict[str, int], state: GroupState, max_groups: int = 2
          ) -> tuple[dict[LabelTuple, int], GroupState]:
    groups: dict[LabelTuple, GroupMeasures] = {
        (name,): GroupMeasures(connections=count) for name, count in counts.items()}
    capped, state = cap_groups(groups, state, max_groups, 1)
    connections = column(capped, "connections")
    assert sum(connections.values()) == sum(counts.values())
    assert len([labels for labels in connections if labels != (OTHER,)]) <= max_groups
    return connections, state


def test_kept_tuple_leaves_on_the_third_poll_outside_the_top() -> None:
    assert POLLS_BEFORE_LEAVING == 3
    kept, state = _poll({"a": 10, "b": 9, "c": 1}, GroupState())
    assert kept == {("a",): 10, ("b",): 9, (OTHER,): 1}
    falling = {"a": 10, "b": 1, "c": 9}
    for _ in range(POLLS_BEFORE_LEAVING - 1):  # b is outside the top but stays
        kept, state = _poll(falling, state)
        assert kept == {("a",): 10, ("b",): 1, (OTHER,): 9}
    kept, state = _poll(falling, state)  # the 3rd poll outside the top: b leaves, c enters
    assert kept == {("a",): 10, ("c",): 9, (OTHER,): 1}


def test_kept_tuple_back_in_the_top_starts_over() -> None:
    kept, state = _poll({"a": 10, "b": 9, "c": 1}, GroupState())
    kept, state = _poll({"a": 10, "b": 1, "c": 9}, state)
    kept, state = _poll({"a": 10, "b": 1, "c": 9}, state)
    kept, state = _poll({"a": 10, "b": 9, "c": 1}, state)  # back in the top: misses reset
    for _ in range(POLLS_BEFORE_LEAVING - 1):
        kept, state = _poll({"a": 10, "b": 1, "c": 9}, state)
        assert ("b",) in kept
    kept, state = _poll({"a": 10, "b": 1, "c": 9}, state)
    assert ("b",) not in kept


def test_vanished_kept_tuple_is_kept_at_zero_then_leaves() -> None:
    kept, state = _poll({"a": 10, "b": 9}, GroupState())
    for _ in range(POLLS_BEFORE_LEAVING - 1):
        kept, state = _poll({"a": 10}, state)
        assert kept == {("a",): 10, ("b",): 0}
    kept, state = _poll({"a": 10}, state)
    assert kept == {("a",): 10}


def test_cap_is_never_exceeded_even_with_state_from_a_larger_cap() -> None:
    """E.g. a reload that lowers max_groups while the target keeps its AggregateState."""
    counts = {name: 10 - index for index, name in enumerate("abcdef")}
    _, state = _poll(counts, GroupState(), max_groups=5)
    for _ in range(POLLS_BEFORE_LEAVING + 1):
        _, state = _poll(counts, state, max_groups=2)


def test_a_client_named_like_the_overflow_tuple_is_not_lost() -> None:
    """`__other__` is a legal client name; with group_by [name] it meets the overflow tuple."""
    lines = [client_line("__other__", cid=i) for i in range(5)]
    lines += [client_line("a", cid=10), client_line("b", cid=11)]
    result = aggregate(reply(lines), ClientListConfig(group_by=("name",), max_groups=1))
    assert sum(column(result.groups, "connections").values()) == 7 == result.clients


def lib_line(cid: int, lib: str) -> str:
    """A Redis 7.4 line whose client set its library with CLIENT SETINFO."""
    return (f"id={cid} addr=127.0.0.1:{40000 + cid} laddr=127.0.0.1:6379 fd={cid + 8} "
            f"name=app age=2 idle=2 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 "
            "qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 "
            f"tot-mem=1928 events=r cmd=ping user=default redir=-1 resp=3 lib-name={lib} "
            "lib-ver=8.1.0")


def test_library_names_drop_what_wrappers_add_by_default() -> None:
    """The lib-name values real libraries send (shared/reference/real-servers.md section 4)."""
    libs = ["redis-py", "redis-py(django-redis_v5.4.0)",
            "redis-py(django-redis_v6.0.0;celery_v5.4)", "ioredis", "ioredis(bull)",
            "node-redis(nest)", "", "jedis(redis-om-spring_v1.0.0)"]
    raw = reply([lib_line(index, lib) for index, lib in enumerate(libs, start=1)])
    config = ClientListConfig(group_by=("lib_name",))
    assert column(aggregate(raw, config).groups, "connections") == {
        ("redis-py",): 3, ("ioredis",): 2, ("node-redis",): 1, ("",): 1, ("jedis",): 1}
    kept = ClientListConfig(group_by=("lib_name",), lib_name_rewrite=())
    assert len(column(aggregate(raw, kept).groups, "connections")) == len(libs)
