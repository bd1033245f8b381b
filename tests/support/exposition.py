"""Checks of an exposition body shared by the golden and the live /metrics tests."""

from __future__ import annotations

import re
import subprocess

from tests.support.redis_server import require_binary

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")


def promtool_problems(body: bytes) -> tuple[int, str]:
    """(exit code, everything promtool printed) for `promtool check metrics` on `body`."""
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                            timeout=30, check=False)
    return result.returncode, (result.stdout + result.stderr).decode("utf-8", "replace").strip()


def _family(name: str, types: dict[str, str]) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and types.get(base) == "histogram":
            return base
    return name


def check_families(text: str) -> None:
    """Each family: one HELP, then one TYPE, then all its samples in one run."""
    lines = text.splitlines()
    types = {parts[2]: parts[3] for parts in (line.split(" ") for line in lines)
             if parts[:2] == ["#", "TYPE"]}
    helps: dict[str, int] = {}
    typed: dict[str, int] = {}
    finished: set[str] = set()
    current: str | None = None
    for number, line in enumerate(lines, 1):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helps, f"line {number}: second HELP for {name}"
            helps[name] = number
            if current is not None:
                finished.add(current)
            current = name
            continue
        if line.startswith("# TYPE "):
            name = line.split(" ")[2]
            assert name not in typed, f"line {number}: second TYPE for {name}"
            assert name == current, f"line {number}: TYPE {name} not after its HELP"
            typed[name] = number
            continue
        match = SAMPLE.match(line)
        assert match, f"line {number} is not a sample: {line!r}"
        family = _family(match.group(1), types)
        assert family not in finished, f"line {number}: {family} is not contiguous"
        assert family == current, f"line {number}: {family} sample outside its run"
        assert family in typed, f"line {number}: {family} sample before its TYPE"
    assert set(helps) == set(typed) == set(types)
