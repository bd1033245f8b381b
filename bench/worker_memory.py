"""Exporter memory at 1,000 targets by the number of poll workers (`poll.concurrency`).

glibc gives each allocating thread a malloc arena of its own (up to 8 per core): with 32
workers that doubled the resident memory. The exporter caps the arenas at 2 at start; this
phase measures RSS at 16 and 32 workers (5 s interval) with the cap, and with glibc's own
default (`MALLOC_ARENA_MAX` set to 8 x cores, which the exporter leaves alone) for comparison.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.exporter_process import exporter, memory_mb, wait_for

GOAL_RSS_MB = 120.0
INTERVAL = 5.0


@dataclass(frozen=True)
class WorkerRss:
    workers: int
    capped: bool  # the exporter's arena cap (False: glibc's default number of arenas)
    rss_mb: float  # median over the window
    hwm_mb: float

    @property
    def label(self) -> str:
        return "2 (the exporter's cap)" if self.capped else \
            f"{8 * (os.cpu_count() or 1)} (glibc's default)"


def write_config(path: str, ports: Sequence[int], targets: int, workers: int) -> None:
    lines = ["poll:", f"  interval: {INTERVAL:g}s", f"  concurrency: {workers}", "targets:"]
    for index in range(targets):
        lines += [f"  - name: t{index:04d}",
                  f"    url: redis://127.0.0.1:{ports[index % len(ports)]}"]
    Path(path).write_text("\n".join(lines) + "\n")


def measure(ports: Sequence[int], targets: int, workers: int, capped: bool, workdir: str,
            settle: float, window: float, count_up: Callable[[bytes], int]) -> WorkerRss:
    """One exporter with `workers` poll workers; RSS sampled every second over `window`."""
    config = os.path.join(workdir, f"workers-{workers}.yaml")
    write_config(config, ports, targets, workers)
    env = None if capped else {"MALLOC_ARENA_MAX": str(8 * (os.cpu_count() or 1))}
    with exporter(config, workdir, env) as (pid, client):
        wait_for(lambda: count_up(client.metrics()) == targets or None, 180,
                 f"{targets} targets up with {workers} workers")
        time.sleep(settle)
        samples = []
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:
            client.scrape()
            samples.append(memory_mb(pid)[0])
            time.sleep(1.0)
        return WorkerRss(workers, capped, statistics.median(samples), memory_mb(pid)[1])


def rows(results: Sequence[WorkerRss], targets: int) -> list[str]:
    lines = []
    for result in results:
        goal = f"< {GOAL_RSS_MB:g}" if result.capped else ""
        verdict = ("pass" if result.rss_mb < GOAL_RSS_MB else "**FAIL**") if result.capped \
            else ""
        lines.append(f"| RSS MiB, {targets:,} targets every {INTERVAL:g}s, {result.workers} "
                     f"workers, malloc arenas {result.label} | {goal} | {result.rss_mb:.1f}; "
                     f"VmHWM {result.hwm_mb:.1f} | {verdict} |")
    return lines
