"""Installing on a stock Debian/Ubuntu Python, which refuses `pip install` outside a venv
(PEP 668's EXTERNALLY-MANAGED marker): the README's one-line alternative must work there."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"


def _venv_line() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"^python3 -m venv .*$", readme, re.MULTILINE)
    assert len(found) == 1, "the README has one venv install line"
    return str(found[0])


def _system_python() -> str:
    markers = glob.glob("/usr/lib/python3*/EXTERNALLY-MANAGED")
    if not os.path.exists(SYSTEM_PYTHON) or not markers:
        message = "no system Python with an EXTERNALLY-MANAGED marker here"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SYSTEM_PYTHON


def test_the_readme_venv_line_installs_and_runs_on_an_externally_managed_python(
        tmp_path: Path) -> None:
    python = _system_python()
    source = tmp_path / "source"  # a copy: the venv and the build land there, not in the repo
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.so", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
        ".servers", ".venv", "tests", "bench"))
    # The machine's environment (its pip settings and registry) with `python3` the system's.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTHON", "PYENV", "VIRTUAL_ENV"))}
    env["PATH"] = f"{os.path.dirname(python)}:/bin"
    refused = subprocess.run([python, "-m", "pip", "install", "--dry-run", "--no-deps", "."],
                             cwd=source, env=env, capture_output=True, text=True, timeout=120,
                             check=False)
    if "No module named pip" not in refused.stderr:  # the premise, where pip is there
        assert refused.returncode != 0
        assert "externally-managed-environment" in refused.stdout + refused.stderr
    # The README's line, its last command asked to check the default config and exit.
    result = subprocess.run(["sh", "-c", _venv_line() + " --check-config"], cwd=source,
                            env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "config OK: 1 target(s)" in result.stdout
    assert (source / ".venv" / "bin" / "redis-connection-exporter").exists()
