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
import os
import re

import pytest

from exporter.expose import families as metrics
from tests.support.exposition import check_families, promtool_problems
from tests.support.golden import (
    CASES_BY_NAME,
    GOLDEN_CASES,
    VERSIONS,
    GoldenCase,
    read_golden,
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


ABSENT = {
    "redis-5.0": ("redis_max_clients", "redis_connection_saturation_ratio",
                  "redis_connection_headroom", "redis_evicted_clients_total",
                  "redis_tracking_clients", "redis_clients_in_timeout_table",
                  "redis_cluster_connections", "redis_client_memory_bytes",
                  "redis_pubsub_clients", "redis_watching_clients",
                  "redis_client_query_buffer_limit_disconnections_total"),
    "redis-6.0": ("redis_max_clients", "redis_connection_saturation_ratio",
                  "redis_connection_headroom", "redis_evicted_clients_total",
                  "redis_cluster_connections", "redis_pubsub_clients"),
    "redis-6.2": ("redis_evicted_clients_total", "redis_pubsub_clients"),
    "redis-7.0": ("redis_pubsub_clients", "redis_watching_clients",
                  "redis_client_output_buffer_limit_disconnections_total"),
}


@pytest.mark.parametrize("version", sorted(ABSENT))
def test_absent_info_fields_are_absent_not_zero(version: str) -> None:
    text = golden(version)
    for family in ABSENT[version]:
        assert not re.search(rf"^(# (HELP|TYPE) )?{family}\b", text, re.MULTILINE), family


def test_saturation_from_info_maxclients() -> None:
    text = golden("redis-6.2")
    assert value(text, "redis_max_clients", target="cache") == 10000
    assert value(text, "redis_connection_saturation_ratio", target="cache") == 17 / 10000
    assert value(text, "redis_connection_headroom", target="cache") == 10000 - 17


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_values_match_the_fixtures(version: str) -> None:
    """Checks the reviewed golden itself against tests/data/<version>/expected.json."""
    text = golden(version)
    connections = {(labels["name"], labels["client_type"]): val
                   for labels, val in values(text, "redis_client_connections")}
    assert sum(connections.values()) == 17
    assert connections[("api", "normal")] == 3
    assert connections[("web", "normal")] == 2
    assert connections[("", "normal")] == 2
    assert connections[("sub-listener", "pubsub")] == connections[("psub-listener", "pubsub")]
    assert all(val == 0 for _, val in values(text, "redis_client_idle_connections"))
    for family in metrics.HISTOGRAMS.values():
        count = value(text, f"{family.name}_count", target="cache")
        if count is None:
            assert version == "redis-5.0" and family.name == "redis_client_memory_bytes"
            continue
        assert count == 17
        assert value(text, f"{family.name}_bucket", target="cache", le="+Inf") == 17
    assert value(text, "redis_client_idle_seconds_bucket", target="cache", le="1.0") == 1
    assert value(text, "redis_client_idle_seconds_sum", target="cache") == 32
    assert value(text, "redis_client_query_buffer_bytes_bucket", target="cache", le="0.0") == 16
    assert value(text, "redis_start_time_seconds", target="cache") == 1_764_028_800 - 19


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


def test_valkey_mode_label() -> None:
    """Valkey 8.0 reports its mode as `server_mode` (redis_mode only with
    extended-redis-compatibility yes); the label must still say standalone."""
    rendered = render_case(CASES_BY_NAME["valkey-8.0"])
    (labels, _), = values(rendered, "redis_instance_info")
    assert labels["redis_mode"] == "standalone"


@pytest.mark.parametrize(("case", "server", "version"), [
    ("valkey-8.0", "valkey", "8.0.1"), ("redis-7.0", "redis", "7.0.15"),
    ("redis-5.0", "redis", "5.0.14")])
def test_instance_info_names_the_product_and_its_own_version(case: str, server: str,
                                                             version: str) -> None:
    """Valkey keeps redis_version 7.2.4 for clients: server_name and server_version tell
    Valkey 8.0 from 8.1 and from Redis 7.2, next to the peer's redis_version label."""
    (labels, _), = values(render_case(CASES_BY_NAME[case]), "redis_instance_info")
    assert (labels["server_name"], labels["server_version"]) == (server, version)
    assert labels["redis_version"] == ("7.2.4" if server == "valkey" else version)
