"""The README is the front door: its metric table and commands must match the code."""

from __future__ import annotations

import os
import re

from exporter.expose import families as metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        return handle.read()


def test_metric_table_lists_exactly_the_exported_families() -> None:
    documented = dict(re.findall(r"^\| `([a-z_]+)` \| (gauge|counter|histogram) \|",
                                 _readme(), re.MULTILINE))
    exported = {family.name: family.type for family in metrics.TARGET_FAMILIES}
    exported.update({family.name: family.type for family in (*metrics.GLOBAL_FAMILIES,
                                                              *metrics.LIBRARY_POOL_FAMILIES)})
    assert documented == exported


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = _readme()
    assert "\n./scripts/test\n" in readme
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as handle:
        assert "./scripts/test" in handle.read()
