"""Process limits set once at start, before any thread: malloc arenas and open files.

glibc gives each thread that allocates concurrently its own malloc arena (up to 8 per core),
and memory freed in one arena is not reused by the others: with 32 poll workers that doubled
the exporter's resident memory. Two arenas keep the pollers' allocations in shared heaps.
glibc also raises its mmap threshold to the size of each large block freed (up to 32 MiB), so
after the first /metrics body (~24 MB at 1,000 targets) later ones come from the heap and stay
resident; a fixed threshold keeps every block over 128 KiB in mmap, returned when freed.
`MALLOC_ARENA_MAX` and `MALLOC_MMAP_THRESHOLD_` in the environment win (glibc reads them).

Every held poll connection is a file descriptor, and a process inherits a soft limit of 1,024
from Debian shells and systemd. As Go programs do, the soft limit is raised to the hard one;
the budget (targets, probes, HTTP, the rest) is logged, and an error names the limit when the
budget does not fit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
import resource
from collections.abc import Mapping
from dataclasses import dataclass

from exporter.logsetup import kv

log = logging.getLogger(__name__)

ARENA_MAX = 2
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, made fixed
_M_ARENA_MAX = -8  # glibc malloc.h
_M_MMAP_THRESHOLD = -3
# Descriptors besides poll connections and probes: the listening socket, log and config
# files, Python's own, and the HTTP connections of scrapers (Prometheus replicas, curl).
HTTP_RESERVE = 256
BASE_RESERVE = 32


def limit_malloc_arenas(env: Mapping[str, str], arenas: int = ARENA_MAX) -> int | None:
    """Cap glibc's malloc arenas; the cap in force, or None when it cannot be set here (not
    glibc) or the environment sets it already."""
    return _mallopt(env, "MALLOC_ARENA_MAX", _M_ARENA_MAX, arenas)


def fix_mmap_threshold(env: Mapping[str, str], threshold: int = MMAP_THRESHOLD) -> int | None:
    """Fix glibc's mmap threshold (no dynamic raise); the threshold in force, or None when it
    cannot be set here or the environment sets it already."""
    return _mallopt(env, "MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, threshold)


def _mallopt(env: Mapping[str, str], variable: str, option: int, value: int) -> int | None:
    if variable in env:
        return None
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        ok = libc.mallopt(ctypes.c_int(option), ctypes.c_int(value))
    except (OSError, AttributeError):
        return None
    return value if ok == 1 else None


@dataclass(frozen=True)
class FileBudget:
    """Descriptors the exporter needs against the soft limit it runs with."""

    limit: int
    raised_from: int | None  # the inherited soft limit, when it was raised
    targets: int
    probes: int

    @property
    def needed(self) -> int:
        return self.targets + self.probes + HTTP_RESERVE + BASE_RESERVE

    @property
    def fits(self) -> bool:
        return self.needed <= self.limit


def raise_open_files_limit() -> tuple[int, int | None]:
    """Soft RLIMIT_NOFILE up to the hard limit; (the soft limit now, the one inherited if it
    was raised). A hard limit of infinity is capped by the kernel's fs.nr_open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else _nr_open()
    if soft != resource.RLIM_INFINITY and soft >= wanted:
        return soft, None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        return soft, None
    return wanted, soft


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open", encoding="ascii") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 1 << 20


def check_file_budget(targets: int, probes: int) -> FileBudget:
    """Raise the soft limit, then log the budget (`probes`: connect probes that can be open at
    once); an error when the targets cannot fit."""
    limit, raised_from = raise_open_files_limit()
    budget = FileBudget(limit, raised_from, targets, probes)
    fields = kv(limit=limit, raised_from=raised_from, needed=budget.needed, targets=targets,
                probes=budget.probes, http=HTTP_RESERVE, other=BASE_RESERVE)
    if budget.fits:
        log.info("open files %s", fields)
    else:
        log.error("open files limit too low for the targets: new connections will fail with "
                  "'Too many open files'; raise the hard limit (systemd LimitNOFILE, "
                  "ulimit -Hn, docker --ulimit nofile) %s", fields)
    return budget
