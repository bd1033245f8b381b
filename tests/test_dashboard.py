"""The Grafana dashboard is code: its queries parse, name only exported metrics, follow the
dashboard-linter rules (datasource variable, `$__rate_interval`, target filter) and never rate()
a snapshot histogram."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.expose import families as metrics
from exporter.expose.selfmetrics import SelfMetrics
from tests.support.redis_server import require_binary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAFANA = os.path.join(ROOT, "grafana")
DASHBOARD = os.path.join(GRAFANA, "redis-connection-exporter.json")
PROVISIONING = os.path.join(GRAFANA, "provisioning")

DATASOURCE = "${datasource}"
TARGET_FILTER = 'target=~"$target"'
# Functions that read their argument as a counter: wrong on a snapshot histogram.
COUNTER_FUNCTIONS = ("rate", "irate", "increase", "resets")
RATE_FUNCTIONS = ("rate", "irate", "increase")
# Grafana's variables, as promtool should see them.
SUBSTITUTIONS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
                 "$target": ".*", "$parent": ".+"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
SNAPSHOT_HISTOGRAMS = frozenset(family.name for family in metrics.HISTOGRAMS.values())
TARGET_LABELLED = frozenset(family.name for family in metrics.TARGET_FAMILIES)


def _dashboard() -> dict[str, Any]:
    with open(DASHBOARD, encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included; rows themselves left out."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title and refId, expr) for every query of every panel."""
    return [(f"{panel['title']} {target['refId']}", target["expr"])
            for panel in _panels(dashboard) for target in panel["targets"]]


def _exported() -> dict[str, str]:
    """Family name -> type of everything the exporter serves: the table plus the registry."""
    families = {family.name: family.type for family in (*metrics.TARGET_FAMILIES,
                                                         *metrics.LIBRARY_POOL_FAMILIES)}
    for family in SelfMetrics().registry.collect():  # counters are named without _total
        name = f"{family.name}_total" if family.type == "counter" else family.name
        families[name] = family.type
    return families


def _family(series: str, exported: dict[str, str]) -> str | None:
    """The family a series name belongs to (histogram suffixes stripped), or None."""
    if series in exported:
        return series
    for suffix in HISTOGRAM_SUFFIXES:
        base = series.removesuffix(suffix)
        if base != series and exported.get(base) == "histogram":
            return base
    return None


def _calls(expr: str, functions: tuple[str, ...]) -> list[tuple[str, str]]:
    """(function, argument text) of every call to one of `functions` in expr."""
    calls = []
    names = "|".join(functions)
    for match in re.finditer(rf"\b({names})\s*\(", expr):
        depth, start = 1, match.end()
        end = start
        while depth:
            assert end < len(expr), f"unbalanced parentheses in {expr!r}"
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            end += 1
        calls.append((match.group(1), expr[start:end - 1]))
    return calls


def _substitute(expr: str) -> str:
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    return expr


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return _dashboard()


def test_classic_json_with_stable_identity(dashboard: dict[str, Any]) -> None:
    assert "spec" not in dashboard and "apiVersion" not in dashboard  # not schema v2
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] == "redis-conn-exporter"
    assert dashboard["id"] is None
    assert "__inputs" not in dashboard  # only the UI import resolves those
    rows = [panel for panel in dashboard["panels"] if panel["type"] == "row"]
    ids = [panel["id"] for panel in rows + _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"


def _variable(dashboard: dict[str, Any], name: str) -> dict[str, Any]:
    found = [var for var in dashboard["templating"]["list"] if var["name"] == name]
    assert len(found) == 1, f"variable {name} missing or repeated"
    variable: dict[str, Any] = found[0]
    return variable


def test_parent_variable_lists_cluster_and_sentinel_entries(dashboard: dict[str, Any]) -> None:
    variable = _variable(dashboard, "parent")
    query = variable["query"]
    text = query["query"] if isinstance(query, dict) else query
    assert re.fullmatch(r"label_values\(\s*redis_connection_exporter_target_info\s*,\s*parent"
                        r"\s*\)", text)
    assert variable["multi"] is True and variable["includeAll"] is True
    assert variable["allValue"] == ".+"  # All: every entry's nodes, never static targets
    tables = [panel for panel in _panels(dashboard) if panel["title"] == "Nodes"]
    assert len(tables) == 1
    exprs = " ".join(target["expr"] for target in tables[0]["targets"])
    for family in ("redis_instance_info", "redis_up", metrics.SATURATION.name,
                   metrics.TARGET_INFO.name):
        assert family in exprs
    assert exprs.count('parent=~"$parent"') == len(tables[0]["targets"])


def test_datasource_variable(dashboard: dict[str, Any]) -> None:
    variable = _variable(dashboard, "datasource")
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"


def test_target_variable(dashboard: dict[str, Any]) -> None:
    variable = _variable(dashboard, "target")
    assert variable["type"] == "query"
    query = variable["query"]
    text = query["query"] if isinstance(query, dict) else query
    assert re.fullmatch(r"label_values\(\s*redis_up\s*,\s*target\s*\)", text)
    assert variable["multi"] is True
    assert variable["includeAll"] is True
    assert variable["datasource"]["uid"] == DATASOURCE


def test_every_panel_and_query_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    panels = _panels(dashboard)
    assert panels
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_rates_use_rate_interval(dashboard: dict[str, Any]) -> None:
    rates = 0
    for where, expr in _queries(dashboard):
        for function, argument in _calls(expr, RATE_FUNCTIONS):
            rates += 1
            assert argument.rstrip().endswith("[$__rate_interval]"), (where, function, expr)
        assert not re.search(r"\[\s*\d+[smhdwy]\s*\]", expr), (where, "fixed range", expr)
    assert rates > 0


def test_no_counter_function_over_snapshot_histograms(dashboard: dict[str, Any]) -> None:
    for where, expr in _queries(dashboard):
        for function, argument in _calls(expr, COUNTER_FUNCTIONS):
            named = set(re.findall(r"\bredis_\w+", argument))
            snapshot = {name for name in named
                        if any(name.startswith(family) for family in SNAPSHOT_HISTOGRAMS)}
            assert not snapshot, (where, f"{function}() over snapshot histogram", expr)


def test_heatmaps_read_snapshot_buckets_as_they_are(dashboard: dict[str, Any]) -> None:
    heatmaps = [panel for panel in _panels(dashboard) if panel["type"] == "heatmap"]
    drawn = set()
    for panel in heatmaps:
        assert panel["options"]["calculate"] is False, panel["title"]
        for target in panel["targets"]:
            assert target["format"] == "heatmap", panel["title"]
            match = re.fullmatch(r'sum by \(le\) \((redis_\w+)_bucket\{target=~"\$target"\}\)',
                                 target["expr"])
            assert match, (panel["title"], target["expr"])
            drawn.add(match.group(1))
    assert {"redis_client_idle_seconds", "redis_client_age_seconds"} <= drawn


def test_every_metric_is_exported(dashboard: dict[str, Any]) -> None:
    exported = _exported()
    used = set()
    for where, expr in _queries(dashboard):
        for series in re.findall(r"\bredis_\w+", expr):
            family = _family(series, exported)
            assert family is not None, (where, f"{series} is not exported", expr)
            used.add(family)
    # The panels the dashboard promises are there.
    assert {metrics.SATURATION.name, metrics.HEADROOM.name, metrics.CONNECTIONS.name,
            metrics.IDLE_CONNECTIONS.name, metrics.POLL_ERRORS.name,
            metrics.POLL_DURATION.name, metrics.LAST_SUCCESS.name,
            metrics.PROBE_SUCCESS.name, metrics.CLIENT_LIST_INTERVAL.name,
            metrics.CAPABILITY.name, "redis_rejected_connections_total",
            "redis_evicted_clients_total",
            "redis_client_output_buffer_limit_disconnections_total"} <= used


def test_target_labelled_series_are_filtered_by_target(dashboard: dict[str, Any]) -> None:
    exported = _exported()
    for where, expr in _queries(dashboard):
        for match in re.finditer(r"\b(redis_\w+)\s*(\{[^}]*\})?", expr):
            if _family(match.group(1), exported) in TARGET_LABELLED:
                assert TARGET_FILTER in (match.group(2) or ""), (where, expr)


def test_saturation_thresholds(dashboard: dict[str, Any]) -> None:
    panels = [panel for panel in _panels(dashboard)
              if any(metrics.SATURATION.name in target["expr"] for target in panel["targets"])]
    assert panels
    for panel in panels:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [step["value"] for step in steps][1:] == [0.8, 0.95], panel["title"]


def test_every_query_parses(dashboard: dict[str, Any], tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    rules = []
    for number, (where, expr) in enumerate(_queries(dashboard)):
        substituted = _substitute(expr)
        assert "$" not in substituted, (where, "unknown Grafana variable", expr)
        rules.append({"record": f"dashboard:query_{number}:expr", "expr": substituted})
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}),
                    encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def _yaml(name: str) -> tuple[str, dict[str, Any]]:
    with open(os.path.join(PROVISIONING, name), encoding="utf-8") as handle:
        text = handle.read()
    loaded: dict[str, Any] = yaml.safe_load(text)
    return text, loaded


def test_dashboard_provider() -> None:
    text, provisioning = _yaml("dashboards.yml")
    assert provisioning["apiVersion"] == 1
    [provider] = provisioning["providers"]
    assert provider["type"] == "file"
    assert provider["orgId"] == 1
    path = provider["options"]["path"]
    assert path.startswith("/")
    # The comment tells where to put the JSON: under the provider's path.
    assert f"{path}/redis-connection-exporter.json" in text


def test_example_datasource(dashboard: dict[str, Any]) -> None:
    _, provisioning = _yaml("datasource.yml")
    assert provisioning["apiVersion"] == 1
    [datasource] = provisioning["datasources"]
    assert datasource["type"] == _variable(dashboard, "datasource")["query"]
    assert datasource["url"].startswith("http")
