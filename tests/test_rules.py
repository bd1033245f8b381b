"""The shipped Prometheus rules: promtool checks and unit tests, and the metric names they use.

`deploy/prometheus/rules.yml` is tested by `rules.test.yml` (promtool test rules). The checks
here keep both honest against the one table of metrics (exporter/expose/families.py): every name an
expression uses is exported, no snapshot histogram goes through rate(), every alert is labelled
and annotated, and every alert has a case where it fires and one where it stays quiet. The Go
peer's common connection alerts (tests/data/peer_rules/) must work unchanged on our series.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.expose import families as metrics
from tests.support.exposition import HISTOGRAM_SUFFIXES, SAMPLE
from tests.support.redis_server import require_binary

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "rules.test.yml"
PEER_RULES = ROOT / "tests" / "data" / "peer_rules" / "peer_rules.yml"
PEER_RULES_TEST = ROOT / "tests" / "data" / "peer_rules" / "peer_rules.test.yml"
GOLDEN = ROOT / "tests" / "golden"

SEVERITIES = {"critical", "warning", "info"}
SCRAPE_LABELS = {"job", "instance"}  # added by Prometheus, not by the exporter
# An identifier followed by `{`, `[`, `)`, white space or the end: a metric or recorded name.
IDENTIFIER = re.compile(r"(?<![\w:])([a-zA-Z_:][\w:]*)(?=[{\[)\s]|$)")
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
COUNTER_FUNCTIONS = re.compile(r"\b(rate|irate|increase)\s*\(")
RECORD_NAME = re.compile(r"^[a-z_]+:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")
LABEL = re.compile(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"')


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


def _rules(path: Path) -> Iterator[dict[str, Any]]:
    for group in _load(path)["groups"]:
        yield from group["rules"]


def _alerts(path: Path) -> list[dict[str, Any]]:
    return [rule for rule in _rules(path) if "alert" in rule]


def _promtool(*args: str) -> None:
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120,
                            cwd=ROOT, check=False)
    output = (result.stdout + result.stderr).strip()
    command = " ".join(["promtool", *args])
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{output}"


def _exported() -> dict[str, str]:
    """Every exported family name -> its type, the global self metrics included."""
    return {family.name: family.type for family in (
        *metrics.TARGET_FAMILIES, *metrics.GLOBAL_FAMILIES, *metrics.LIBRARY_POOL_FAMILIES)}


def _family(name: str, families: dict[str, str]) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and families.get(base) == "histogram":
            return base
    return name


def _names(expr: str) -> set[str]:
    return set(IDENTIFIER.findall(QUOTED.sub('""', expr)))


def _call_arguments(expr: str) -> Iterator[tuple[str, str]]:
    """(function, its argument text) for each rate/irate/increase call in `expr`."""
    for match in COUNTER_FUNCTIONS.finditer(expr):
        depth, start = 1, match.end()
        end = start
        while depth and end < len(expr):
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            end += 1
        yield match.group(1), expr[start:end - 1]


def test_promtool_check_rules() -> None:
    _promtool("check", "rules", str(RULES.relative_to(ROOT)))


def test_promtool_unit_tests() -> None:
    _promtool("test", "rules", str(RULES_TEST.relative_to(ROOT)))


def test_every_alert_has_severity_summary_and_description() -> None:
    alerts = _alerts(RULES)
    assert alerts
    names = [rule["alert"] for rule in alerts]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    for rule in alerts:
        where = rule["alert"]
        assert re.fullmatch(r"Redis[A-Z]\w+", where), f"{where}: CamelCase with the Redis prefix"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{where}: severity"
        annotations = rule.get("annotations", {})
        summary, description = annotations.get("summary", ""), annotations.get("description", "")
        assert summary.endswith(".") and "{{" not in summary, f"{where}: static summary sentence"
        # Library mode's alerts are about an application's pool, failovers about a cluster or
        # Sentinel entry (parent); the others about a target.
        subject = "pool" if "redis_pool_" in rule["expr"] else \
            "parent" if "failovers_total" in rule["expr"] else "target"
        assert f"{{{{ $labels.{subject} }}}}" in description, \
            f"{where}: description names the {subject}"


def test_recording_rules_are_named_level_metric_operations() -> None:
    families = _exported()
    records = [rule["record"] for rule in _rules(RULES) if "record" in rule]
    assert records
    for name in records:
        assert RECORD_NAME.match(name), f"{name}: not level:metric:operations"
        metric = name.split(":")[1]
        assert metric in families or metric + "_total" in families, f"{name}: unknown metric"


def test_every_metric_name_in_an_expression_is_exported() -> None:
    families = _exported()
    recorded = {rule["record"] for rule in _rules(RULES) if "record" in rule}
    for rule in _rules(RULES):
        where = rule.get("alert") or rule.get("record")
        for name in _names(rule["expr"]):
            if ":" in name:
                assert name in recorded, f"{where}: {name} is not a recording rule here"
            elif name.startswith("redis_"):
                assert _family(name, families) in families, f"{where}: {name} is not exported"


def test_no_snapshot_histogram_is_rated() -> None:
    snapshot = {family.name for family in metrics.HISTOGRAMS.values()}
    families = _exported()
    for rule in _rules(RULES):
        for function, argument in _call_arguments(rule["expr"]):
            used = {_family(name, families) for name in _names(argument)}
            assert not used & snapshot, (
                f"{rule.get('alert') or rule.get('record')}: {function}() of a snapshot "
                f"histogram {sorted(used & snapshot)}: it is not a counter")


def test_every_alert_fires_and_stays_quiet_in_the_unit_tests() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in _load(RULES_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in _alerts(RULES)}
    assert alerts - fired == set(), "alerts never shown to fire"
    assert alerts - quiet == set(), "alerts never shown to stay quiet"
    assert (fired | quiet) - alerts == set(), "tests for alerts that do not exist"


def _golden_label_sets() -> dict[str, set[frozenset[tuple[str, str]]]]:
    """Family -> the label sets it has in the golden expositions (our real output); library
    mode's families (an application's registry, no golden) and the global self families
    (rendered by prometheus-client, no golden) with the labels of the table, which
    tests/test_pools.py and tests/test_families.py check on real output."""
    found: dict[str, set[frozenset[tuple[str, str]]]] = {
        family.name: {frozenset((label, "") for label in family.labels)}
        for family in (*metrics.LIBRARY_POOL_FAMILIES, *metrics.GLOBAL_FAMILIES)}
    for path in sorted(GOLDEN.glob("*.prom")):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = SAMPLE.match(line)
            if match is not None:
                labels = frozenset(LABEL.findall(match.group(2) or ""))
                found.setdefault(match.group(1), set()).add(labels)
    return found


def _input_series(path: Path) -> Iterator[tuple[str, frozenset[tuple[str, str]]]]:
    for case in _load(path)["tests"]:
        for item in case["input_series"]:
            name, _, labels = item["series"].partition("{")
            pairs = LABEL.findall(labels)
            yield name, frozenset(pair for pair in pairs if pair[0] not in SCRAPE_LABELS)


def test_rule_unit_tests_use_the_real_label_names() -> None:
    golden = _golden_label_sets()
    for name, labels in _input_series(RULES_TEST):
        assert name in golden, f"{name} is in no golden exposition"
        known = {frozenset(key for key, _ in label_set) for label_set in golden[name]}
        assert frozenset(key for key, _ in labels) in known, f"{name}: labels {sorted(labels)}"


def test_peer_alerts_work_unchanged_on_our_series() -> None:
    golden = _golden_label_sets()
    for name, labels in _input_series(PEER_RULES_TEST):
        scraped = {frozenset(pair for pair in label_set if pair[0] != "target")
                   for label_set in golden.get(name, set())}
        assert labels in golden.get(name, set()) | scraped, (
            f"{name}{dict(labels)} is not a series of tests/golden/*.prom")
    assert {rule["expr"] for rule in _alerts(PEER_RULES)} == {
        "redis_up == 0",
        "increase(redis_rejected_connections_total[1m]) > 0",
        "redis_connected_clients > 100",
    }
    _promtool("check", "rules", str(PEER_RULES.relative_to(ROOT)))
    _promtool("test", "rules", str(PEER_RULES_TEST.relative_to(ROOT)))


@pytest.mark.parametrize(("expr", "expected"), [
    ('rate(redis_client_idle_seconds_bucket{target="a"}[5m])', {"redis_client_idle_seconds"}),
    ("increase(sum by (le) (redis_client_memory_bytes_count)[5m:])", {"redis_client_memory_bytes"}),
    ("rate(redis_connections_received_total[5m])", set()),
])
def test_snapshot_histogram_detection(expr: str, expected: set[str]) -> None:
    families = _exported()
    snapshot = {family.name for family in metrics.HISTOGRAMS.values()}
    used = {_family(name, families) for _, argument in _call_arguments(expr)
            for name in _names(argument)}
    assert used & snapshot == expected
