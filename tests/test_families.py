"""The one table (exporter/expose/families.py) says what is exported: names, types, HELP and
labels. These tests hold the rendered text to it, so the table cannot drift from the code."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.expose import families
from exporter.expose.selfmetrics import SelfMetrics
from exporter.pipeline.groups import GroupMeasures
from tests.support.golden import GOLDEN_CASES, GoldenCase, render_case

pytestmark = pytest.mark.usefixtures("both_scanners")

BY_NAME = {family.name: family for family in (*families.TARGET_FAMILIES,
                                              *families.GLOBAL_FAMILIES)}


def _label_names(family: families.Family, group_by: tuple[str, ...]) -> list[str]:
    names: list[str] = []
    for label in family.labels:
        names.extend(group_by if label == families.GROUP_BY else (label,))
    return names


def _check(text: str, group_by: tuple[str, ...]) -> int:
    """Every family is in the table with its type and HELP; every sample has its labels."""
    checked = 0
    for parsed in text_string_to_metric_families(text):
        # prometheus-client's parser names a counter family without its `_total`.
        family = BY_NAME.get(parsed.name) or BY_NAME.get(parsed.name + "_total")
        assert family is not None, f"{parsed.name} is not in the table"
        assert (parsed.type, parsed.documentation) == (family.type, family.help)
        for sample in parsed.samples:
            expected = _label_names(family, group_by)
            if sample.name.endswith("_bucket"):
                expected.append("le")
            assert sorted(sample.labels) == sorted(expected), sample
            checked += 1
    return checked


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=[case.name for case in GOLDEN_CASES])
def test_rendered_samples_carry_the_labels_of_their_family(case: GoldenCase) -> None:
    assert _check(render_case(case), case.group_by) >= 100


def test_global_families_are_rendered_from_the_table() -> None:
    self_metrics = SelfMetrics()
    self_metrics.observe(families.Step.INFO, 0.01)
    text = self_metrics.render(up=2, down=1).decode()
    assert _check(text, ()) > 5
    assert {family.name for family in text_string_to_metric_families(text)} == {
        family.name.removesuffix("_total") if family.type == "counter" else family.name
        for family in families.GLOBAL_FAMILIES}  # the parser names counters without _total


def test_closed_sets_are_listed_in_the_help_that_names_them() -> None:
    assert re.search(r"\((\w+, ){10}\w+\)", families.POLL_ERRORS.help)
    for value in families.ERROR_KINDS:
        assert value in families.POLL_ERRORS.help
    for value in families.CAPABILITIES:
        assert value in families.CAPABILITY.help
    for value in families.STEPS:
        assert value in families.LAST_DURATION.help and value in families.POLL_DURATION.help


def test_the_closed_sets_hold_every_constant_once() -> None:
    for holder, values in ((families.Kind, families.ERROR_KINDS),
                           (families.Rejection, families.REJECTIONS),
                           (families.Step, families.STEPS),
                           (families.Capability, families.CAPABILITIES)):
        constants = {value for name, value in vars(holder).items() if name.isupper()}
        assert sorted(constants) == sorted(values) and len(set(values)) == len(values)


def test_every_field_of_the_group_record_has_its_family() -> None:
    """A per-group measure is one field of GroupMeasures and one family in the table."""
    assert list(families.GROUP_FAMILIES) == list(GroupMeasures._fields)
    assert all(family.labels == ("target", families.GROUP_BY)
               for family in families.GROUP_FAMILIES.values())
