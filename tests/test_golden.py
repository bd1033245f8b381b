"""Golden exposition: fixture replies rendered as /metrics renders them, byte for byte.

Each case in `tests.support.golden.GOLDEN_CASES` renders captured or synthesized INFO and
CLIENT LIST replies from `tests/data/` (a fixed clock, a fixed exporter state; see that module)
and compares the body with `tests/golden/<case>.prom`.

Regenerating: `UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py` rewrites the golden files
instead of comparing. Do it on purpose only, then review every changed line of
`git diff tests/golden/` against the fixtures (counts per name, histogram buckets, label
escaping) before committing: a golden copied from the code without review proves nothing. The
other tests here check the golden files themselves (promtool, family contiguity, values against
`expected.json`), so a careless regeneration still fails them.

A golden holds what the exposition must be, not what the code happens to print: where review
finds a rendered line wrong, the golden keeps the correct line and the comparison fails until
the code is fixed (this caught `redis_mode` for Valkey 8.0, see `test_valkey_mode_label`).
"""

from __future__ import annotations

import difflib
import json
import os
import re

import pytest

from exporter.config.model import DEFAULT_NAME_REWRITE
from exporter.expose import families as metrics
from exporter.pipeline.grouping import rewrite_name
from tests.support.exposition import check_families, promtool_problems
from tests.support.golden import (
    CASES_BY_NAME,
    CLIENT_LIST_SINCE,
    DATA_DIR,
    FIXTURES,
    GOLDEN_CASES,
    INFO_SECTION,
    INFO_SINCE,
    NOW,
    VERSIONS,
    GoldenCase,
    read_data,
    read_golden,
    reference_clients,
    reference_info,
    render_case,
    write_golden,
)
from tests.support.scrape import samples, value, values

# Every test here runs with the compiled scanner and with the pure path: same results.
pytestmark = pytest.mark.usefixtures("both_scanners")

UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
CASE_IDS = [case.name for case in GOLDEN_CASES]


def golden(name: str) -> str:
    return read_golden(CASES_BY_NAME[name])


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=CASE_IDS)
def test_exposition_matches_golden(case: GoldenCase) -> None:
    rendered = render_case(case)
    if UPDATE:
        write_golden(case, rendered)
        return
    expected = read_golden(case)
    if rendered != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), rendered.splitlines(True),
                                            f"golden/{case.name}.prom", "rendered"))
        pytest.fail(f"exposition differs from the golden file:\n{diff}")


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=CASE_IDS)
def test_promtool_check_metrics(case: GoldenCase) -> None:
    with open(case.path, "rb") as handle:
        code, problems = promtool_problems(handle.read())
    assert code == 0, problems
    assert problems == ""


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=CASE_IDS)
def test_families_are_contiguous_with_one_header(case: GoldenCase) -> None:
    check_families(read_golden(case))


@pytest.mark.parametrize("broken", [
    # a family split in two runs
    "# HELP a x\n# TYPE a gauge\na 1\n# HELP b x\n# TYPE b gauge\nb 1\na 2\n",
    # a second header for the same family
    "# HELP a x\n# TYPE a gauge\na 1\n# HELP a x\n# TYPE a gauge\na 2\n",
    # a histogram whose _count strays after the next family
    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\n"
    "# HELP g x\n# TYPE g gauge\ng 1\nh_count 1\n",
    # samples before any TYPE
    "a 1\n",
])
def test_family_check_rejects_broken_text(broken: str) -> None:
    with pytest.raises(AssertionError):
        check_families(broken)


def test_two_targets_share_each_family_run() -> None:
    text = golden("two-targets")
    assert 'redis_up{target="cache"} 1\nredis_up{target="sessions"} 1\n' in text
    targets = {name: {labels["target"] for labels, _ in values(text, name)}
               for name in ("redis_connected_clients", "redis_client_connections",
                            "redis_client_idle_seconds_bucket")}
    assert all(found == {"cache", "sessions"} for found in targets.values()), targets
    # Only the 7.0 target has these; the 5.0 one must not get a 0 or an empty header.
    for name in ("redis_max_clients", "redis_evicted_clients_total",
                 "redis_client_memory_bytes_count"):
        assert {labels["target"] for labels, _ in values(text, name)} == {"cache"}
    assert value(text, "redis_client_connections", target="sessions", name="billing",
                 client_type="normal", user="") == 1
    assert value(text, "redis_client_connections", target="cache", name="billing",
                 client_type="normal", user="app") == 1


def test_malformed_client_list_keeps_the_info_metrics() -> None:
    text = golden("edge-malformed")
    assert 'redis_up{target="cache"} 1\n' in text
    assert 'redis_connected_clients{target="cache"} 17\n' in text
    assert value(text, "redis_client_age_seconds_count", target="cache") == 5
    assert sum(val for _, val in values(text, "redis_client_connections")) == 6


def present(text: str, family: str) -> bool:
    """Whether the body has the family: a sample or a HELP/TYPE header."""
    return re.search(rf"^(# (HELP|TYPE) )?{family}\b", text, re.MULTILINE) is not None


# Need INFO maxclients: the goldens have no CONFIG GET to fall back on (5.0 and 6.0 need it).
SATURATION_FAMILIES = ("redis_max_clients", "redis_connection_saturation_ratio",
                       "redis_connection_headroom")


@pytest.mark.parametrize("version", VERSIONS)
def test_fixture_is_the_server_it_says(version: str) -> None:
    """The INFO of each version directory names the build of tests/data/README.md and has
    exactly the fields of the field tables (tests.support.golden.INFO_SINCE)."""
    fixture = FIXTURES[version]
    directory = os.path.join(DATA_DIR, version)
    assert os.path.exists(os.path.join(directory, "SYNTHESIZED.md")) != fixture.captured
    files = ("info.txt", "info_all.txt") if fixture.captured else ("info.txt",)
    for name in files:
        info = reference_info(read_data(f"{version}/{name}"))
        own = "valkey_version" if fixture.server == "valkey" else "redis_version"
        assert (info.get("server_name", "redis"), info[own]) == (fixture.server,
                                                                 fixture.version)
        for field, since in INFO_SINCE.items():
            assert (field in info) == fixture.has(since), (name, field)


@pytest.mark.parametrize("version", VERSIONS)
def test_absent_info_fields_are_absent_not_zero(version: str) -> None:
    """A family is there exactly when the server reports its field: never a 0 for a field
    the server lacks, never missing for one it has."""
    text = golden(version)
    fixture = FIXTURES[version]
    for item in metrics.INFO_FIELDS:
        since = INFO_SINCE.get(item.field)
        asked = INFO_SECTION.get(item.field) not in fixture.sections_missing
        assert present(text, item.family.name) == (
            asked and (since is None or fixture.has(since))), item.family.name
    for family in SATURATION_FAMILIES:
        assert present(text, family) == fixture.has(INFO_SINCE["maxclients"]), family
    assert present(text, "redis_client_memory_bytes") == fixture.has(
        CLIENT_LIST_SINCE["tot-mem"])


@pytest.mark.parametrize("version", VERSIONS)
def test_info_families_carry_the_fixture_values(version: str) -> None:
    text = golden(version)
    info = reference_info(read_data(f"{version}/info.txt"))
    for item in metrics.INFO_FIELDS:
        if item.field in info:
            assert value(text, item.family.name, target="cache") == float(info[item.field]), \
                item.field


def test_absent_families_of_the_oldest_and_newest_servers() -> None:
    """The tables above, spelled out for 5.0.10 and the 7.4+ servers."""
    old = {family for family in (*(item.family.name for item in metrics.INFO_FIELDS),
                                 *SATURATION_FAMILIES, "redis_client_memory_bytes")
           if not present(golden("redis-5.0"), family)}
    assert old == {
        "redis_tracking_clients", "redis_pubsub_clients", "redis_watching_clients",
        "redis_clients_in_timeout_table", "redis_cluster_connections",
        "redis_evicted_clients_total", "redis_client_query_buffer_limit_disconnections_total",
        "redis_client_output_buffer_limit_disconnections_total", *SATURATION_FAMILIES,
        "redis_client_memory_bytes"}
    for version in ("redis-7.4", "redis-8.0", "valkey-8.0", "valkey-8.1"):
        text = golden(version)
        assert all(present(text, item.family.name) for item in metrics.INFO_FIELDS), version


def test_saturation_from_info_maxclients() -> None:
    text = golden("redis-6.2")
    assert value(text, "redis_max_clients", target="cache") == 10000
    assert value(text, "redis_connection_saturation_ratio", target="cache") == 17 / 10000
    assert value(text, "redis_connection_headroom", target="cache") == 10000 - 17


HISTOGRAM_FIELDS = {"redis_client_idle_seconds": "idle", "redis_client_age_seconds": "age",
                    "redis_client_query_buffer_bytes": "qbuf",
                    "redis_client_output_buffer_bytes": "omem",
                    "redis_client_memory_bytes": "tot-mem"}


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_values_match_the_fixtures(version: str) -> None:
    """Checks the reviewed golden itself against tests/data/<version>/: expected.json, and
    every histogram bucket against the fixture's lines read by the naive reader."""
    text = golden(version)
    with open(os.path.join(DATA_DIR, version, "expected.json"), encoding="utf-8") as handle:
        truth = json.load(handle)
    connections = {(labels["name"], labels["client_type"]): val
                   for labels, val in values(text, "redis_client_connections")}
    assert sum(connections.values()) == truth["client_list_lines"] == 17
    assert connections[("api", "normal")] == 3
    assert connections[("web", "normal")] == 2
    assert connections[("", "normal")] == truth["names"][""] == 2
    assert connections[("sub-listener", "pubsub")] == connections[("psub-listener", "pubsub")]
    assert all(val == 0 for _, val in values(text, "redis_client_idle_connections"))
    assert {family.name for family in metrics.HISTOGRAMS.values()} == set(HISTOGRAM_FIELDS)
    clients = reference_clients(read_data(f"{version}/client_list.txt"))
    for family, field in HISTOGRAM_FIELDS.items():
        numbers = [client.number(field) for client in clients if field in client.fields]
        observed = [float(number) for number in numbers if number is not None]
        assert len(observed) == len(numbers), family
        if not observed:
            assert not present(text, family), family
            continue
        assert value(text, f"{family}_count", target="cache") == len(observed) == 17
        assert value(text, f"{family}_sum", target="cache") == sum(observed)
        for labels, cumulative in values(text, f"{family}_bucket", target="cache"):
            bound = float(labels["le"])
            assert cumulative == sum(1 for item in observed if item <= bound), (family, bound)
    uptime = float(reference_info(read_data(f"{version}/info.txt"))["uptime_in_seconds"])
    assert value(text, "redis_start_time_seconds", target="cache") == NOW - uptime


def test_odd_names_are_escaped_per_the_text_format() -> None:
    text = golden("edge-odd-names")
    assert 'name="a\\"b"' in text
    assert 'name="back\\\\slash"' in text
    assert 'name="k=v"' in text
    assert 'name="{json}"' in text
    names = {labels["name"] for labels, _ in values(text, "redis_client_connections")}
    assert {'a"b', "back\\slash", "k=v", "a=b=c", "=", "{json}", "x'y"} < names
    assert len(names) == 8
    assert len(samples(text)) == len([line for line in text.splitlines()
                                      if not line.startswith("#")])


def test_ipv6_and_unix_hosts() -> None:
    text = golden("edge-ipv6-unix")
    hosts = {labels["name"]: labels["addr_host"]
             for labels, _ in values(text, "redis_client_connections")}
    assert hosts == {"ipv6-client": "::1", "unix-client": "unix", "ipv6-global": "2001:db8::17",
                     "unix-default-path": "unix", "ipv4-client": "127.0.0.1"}


VALKEY = [version for version in VERSIONS if FIXTURES[version].server == "valkey"]


@pytest.mark.parametrize("version", VALKEY)
def test_valkey_mode_label(version: str) -> None:
    """Valkey 8 reports its mode as `server_mode` (redis_mode only with
    extended-redis-compatibility yes); the label must still say standalone."""
    assert "redis_mode" not in reference_info(read_data(f"{version}/info.txt"))
    rendered = render_case(CASES_BY_NAME[version])
    (labels, _), = values(rendered, "redis_instance_info")
    assert labels["redis_mode"] == "standalone"


@pytest.mark.parametrize("version", VERSIONS)
def test_instance_info_names_the_product_and_its_own_version(version: str) -> None:
    """Valkey keeps redis_version 7.2.4 for clients: server_name and server_version tell
    Valkey 8.0 from 8.1 and from Redis 7.2, next to the peer's redis_version label."""
    fixture = FIXTURES[version]
    (labels, _), = values(render_case(CASES_BY_NAME[version]), "redis_instance_info")
    assert (labels["server_name"], labels["server_version"]) == (fixture.server,
                                                                 fixture.version)
    assert labels["redis_version"] == ("7.2.4" if fixture.server == "valkey"
                                       else fixture.version)
    assert (labels["role"], labels["redis_mode"]) == ("master", "standalone")


def test_instance_info_tells_the_valkey_releases_apart() -> None:
    labels = [values(golden(version), "redis_instance_info")[0][0] for version in VALKEY]
    assert len({label["redis_version"] for label in labels}) == 1
    assert len({label["server_version"] for label in labels}) == len(VALKEY) == 2


# group family -> the CLIENT LIST column it sums
GROUP_SUMS = {"redis_client_group_memory_bytes": "tot-mem",
              "redis_client_group_output_buffer_bytes": "omem",
              "redis_client_group_query_buffer_bytes": "qbuf"}


@pytest.mark.parametrize("version", VERSIONS)
def test_group_sums_in_the_golden_match_the_fixture_lines(version: str) -> None:
    """Each per-group sum is the sum of its column over the group's own CLIENT LIST lines,
    read by the naive reader and grouped with the default name rewrite; a column the server
    does not report gives no family."""
    text = golden(version)
    clients = reference_clients(read_data(f"{version}/client_list.txt"))
    for family, column in GROUP_SUMS.items():
        if not all(column in client.fields for client in clients):
            assert not present(text, family), family
            continue
        expected: dict[tuple[str, str], int] = {}
        for client in clients:
            flags = client.fields.get("flags", "")
            kind = next((name for flag, name in (("M", "master"), ("O", "monitor"),
                                                 ("S", "replica"), ("P", "pubsub"))
                         if flag in flags), "normal")
            labels = (rewrite_name(client.fields.get("name", ""), DEFAULT_NAME_REWRITE), kind)
            expected[labels] = expected.get(labels, 0) + (client.number(column) or 0)
        got = {(labels["name"], labels["client_type"]): val
               for labels, val in values(text, family, target="cache")}
        assert got == expected, family
        assert sum(got.values()) > 0 or column != "tot-mem", family


@pytest.mark.parametrize("version", VERSIONS)
def test_io_thread_families_follow_info_threads(version: str) -> None:
    """Redis 8.0 answers the `threads` section the exporter asks for; the others have none."""
    text = golden(version)
    info = reference_info(read_data(f"{version}/info.txt"))
    threads = {key.removeprefix("io_thread_"): dict(item.split("=") for item in val.split(","))
               for key, val in info.items() if key.startswith("io_thread_")}
    assert bool(threads) == (version == "redis-8.0")
    for field in ("clients", "reads", "writes"):
        family = f"redis_io_thread_{field}" + ("" if field == "clients" else "_total")
        got = {labels["thread"]: val for labels, val in values(text, family, target="cache")}
        assert got == {thread: float(counts[field]) for thread, counts in threads.items()}
