"""Process limits set at start (exporter/runtime.py): malloc arenas and the open files limit.

Each check runs in a child process, so the test process keeps its own limits and allocator.
"""

from __future__ import annotations

import errno
import resource
import subprocess
import sys
import textwrap

import pytest
from redis import exceptions as redis_errors

from exporter.conn.errors import out_of_files_hint
from exporter.runtime import BASE_RESERVE, HTTP_RESERVE, FileBudget, fix_mmap_threshold

# Eight threads that each allocate from malloc (Python objects over 512 bytes), then glibc's
# malloc_stats() lists one "Arena N:" block per arena on stderr.
ARENAS_SCRIPT = textwrap.dedent("""
    import ctypes, os, sys, threading
    if sys.argv[1] == "limit":
        from exporter.runtime import limit_malloc_arenas
        print(limit_malloc_arenas(os.environ))
    ready = threading.Barrier(8)
    def allocate():
        ready.wait()
        kept = [bytes(4096) for _ in range(2000)]
        ready.wait()
    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for thread in threads: thread.start()
    for thread in threads: thread.join()
    ctypes.CDLL("libc.so.6").malloc_stats()
""")


def _arenas(mode: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-c", ARENAS_SCRIPT, mode], capture_output=True,
                            text=True, timeout=60, env=env, check=True)
    return sum(line.startswith("Arena ") for line in result.stderr.splitlines()), result.stdout


def test_malloc_arenas_are_capped_at_two_before_threads_start() -> None:
    unlimited, _ = _arenas("none")
    limited, said = _arenas("limit")
    assert unlimited > 2, "the check cannot fail: threads did not get arenas of their own"
    assert said.strip() == "2"
    assert limited <= 2


def test_malloc_arena_max_in_the_environment_wins() -> None:
    limited, said = _arenas("limit", env={"MALLOC_ARENA_MAX": "4", "PATH": "/usr/bin:/bin"})
    assert said.strip() == "None"  # left to glibc, which read the variable itself
    assert limited <= 4


# A 24 MB block freed, then a slightly smaller one freed: with glibc's dynamic threshold the
# first free raises the threshold, so the second block comes from the heap and stays resident.
MMAP_SCRIPT = textwrap.dedent("""
    import os, sys
    if sys.argv[1] == "fixed":
        from exporter.runtime import fix_mmap_threshold
        print(fix_mmap_threshold(os.environ))
    def rss_kb():
        with open("/proc/self/status") as status:
            return int(status.read().split("VmRSS:")[1].split()[0])
    before = rss_kb()
    body = b"x" * (24 << 20)
    del body
    body = b"x" * (23 << 20)
    del body
    print(rss_kb() - before)
""")


def _kept_kb(mode: str) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-c", MMAP_SCRIPT, mode], capture_output=True,
                            text=True, timeout=60, check=True)
    lines = result.stdout.split()
    return int(lines[-1]), lines[0] if len(lines) > 1 else ""


def test_a_large_block_freed_is_returned_with_the_fixed_mmap_threshold() -> None:
    kept_dynamic, _ = _kept_kb("none")
    kept_fixed, said = _kept_kb("fixed")
    assert kept_dynamic > 16 << 10, "the check cannot fail: glibc returned the block anyway"
    assert said == str(128 * 1024)
    assert kept_fixed < 4 << 10


def test_malloc_mmap_threshold_in_the_environment_wins() -> None:
    assert fix_mmap_threshold({"MALLOC_MMAP_THRESHOLD_": "65536"}) is None


def _child(script: str, soft: int, hard: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["prlimit", f"--nofile={soft}:{hard}", "--", sys.executable, "-c",
                           textwrap.dedent(script)], capture_output=True, text=True, timeout=60,
                          check=True)


def test_the_soft_open_files_limit_is_raised_to_the_hard_one() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.fail(f"this machine's hard open files limit is {hard}: nothing to raise to")
    result = _child("""
        import resource
        from exporter.runtime import raise_open_files_limit
        print(*raise_open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    """, 1024, hard)
    limit, raised_from, now = result.stdout.split()
    assert raised_from == "1024"
    assert int(limit) == int(now) > 1024


def test_a_budget_that_cannot_fit_is_an_error_naming_the_limit() -> None:
    result = _child("""
        import logging, sys
        logging.basicConfig(stream=sys.stderr, level=logging.INFO)
        from exporter.runtime import check_file_budget
        print(check_file_budget(targets=600, probes=2).fits)
    """, 512, 512)
    assert result.stdout.strip() == "False"
    assert "open files limit too low" in result.stderr
    assert "limit=512" in result.stderr and "needed=" in result.stderr


def test_a_budget_counts_targets_probes_and_a_reserve() -> None:
    budget = FileBudget(limit=1024, raised_from=None, targets=700, probes=16)
    assert budget.needed == 700 + 16 + HTTP_RESERVE + BASE_RESERVE
    assert budget.fits == (budget.needed <= 1024)


def test_out_of_files_names_the_limit_through_redis_py_wrapping() -> None:
    """redis-py raises ConnectionError from the OSError of connect(): the hint must find it."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as cause:
            raise redis_errors.ConnectionError("Error 24 connecting to 127.0.0.1:6379.") \
                from cause
    except redis_errors.ConnectionError as error:
        hint = out_of_files_hint(error)
    assert f"open files limit, {soft}" in hint and "LimitNOFILE" in hint
    assert out_of_files_hint(redis_errors.ConnectionError("Connection refused")) == ""
