"""Run every benchmark in turn and write one Markdown report.

    python3 -m bench.run_all [--quick] [--out bench/results/RESULTS.md]

Each benchmark runs as its own process (they start their own redis-servers, load generators
and exporters, and stop them by PID); one after the other, so they never share the CPU. Each
writes its table with --markdown; this script adds a header with the machine and versions and
joins them. A benchmark that fails (or misses a goal: exit code 1) is reported as such and the
others still run. --quick shortens every run for a smoke test; its numbers mean little.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from exporter import __version__
from exporter.pipeline import clientlist

FULL = {
    "poll_cost": ["--clients", "1000", "10000", "19900", "--rounds", "15", "--runs", "3"],
    "scrape_compare": ["--clients", "10000"],
    "many_targets": [],
    "churn": ["--connections", "10000"],
    "topology": [],
}
QUICK = {
    "poll_cost": ["--clients", "1000", "--rounds", "3", "--runs", "1"],
    "scrape_compare": ["--clients", "1000", "--scrapes", "3"],
    "many_targets": ["--targets", "100", "--window", "20", "--settle", "5", "--requests", "5"],
    "churn": ["--connections", "500", "--seconds", "15", "--warmup", "5"],
    "topology": ["--reads", "20"],
}
TITLES = {
    "poll_cost": "Poll cost: the CLIENT LIST step against the raw round trip",
    "scrape_compare": "/metrics body and latency against prometheus-redis-exporter",
    "many_targets": "1,000 targets: CPU, RSS, lateness, /metrics latency",
    "churn": "Memory and the group cap under connection churn",
    "topology": "Cluster and Sentinel entries: discovery, failovers, topology read cost",
}
TIMEOUT_SECONDS = 30 * 60


def _header() -> str:
    redis_server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                                  check=False).stdout.strip()
    return "\n".join([
        "# Benchmark results",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.platform()}",
        f"- exporter {__version__}, Python {platform.python_version()}, redis-py "
        f"{redis.__version__}, compiled scanner: "
        f"{'yes' if clientlist.compiled_scanner_available() else 'no'}",
        f"- {redis_server}",
        "",
    ])


def run(name: str, args: list[str]) -> tuple[str, str]:
    """(status, Markdown) of one benchmark."""
    with tempfile.TemporaryDirectory(prefix="rce-bench-") as workdir:
        markdown = Path(workdir) / f"{name}.md"
        started = time.monotonic()
        try:
            result = subprocess.run(
                [sys.executable, "-m", f"bench.{name}", *args, "--markdown", str(markdown)],
                capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired:
            return "timed out", ""
        seconds = time.monotonic() - started
        status = {0: "all goals met", 1: "a goal missed"}.get(
            result.returncode, f"failed (exit {result.returncode})")
        body = markdown.read_text(encoding="utf-8") if markdown.exists() else (
            "```\n" + (result.stdout + result.stderr)[-3000:] + "\n```\n")
    command = " ".join(["python3 -m bench." + name, *args])
    return status, f"`{command}` ({seconds:.0f} s): {status}\n\n{body}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="bench/results/RESULTS.md")
    parser.add_argument("--only", nargs="+", choices=sorted(FULL))
    options = parser.parse_args()
    plan = QUICK if options.quick else FULL
    sections = [_header()]
    failed = False
    for name, args in plan.items():
        if options.only and name not in options.only:
            continue
        print(f"== {name}", flush=True)
        status, text = run(name, args)
        print(f"   {status}", flush=True)
        failed |= status != "all goals met"
        sections.append(f"## {TITLES[name]}\n\n{text}")
    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    Path(options.out).write_text("\n".join(sections), encoding="utf-8")
    print(f"wrote {options.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
