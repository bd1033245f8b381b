"""Client churn with distinct names: the exporter's memory stays flat and the group cap holds.

    python3 -m bench.churn --connections 10000 --window 300 --seconds 120 --markdown churn.md

A fresh redis-server, polled by this exporter (a subprocess: poll interval and
client_list_interval 1s, backoff off, default max_groups 50 and name_rewrite), while a
generator (this module with --generate-on, a subprocess) opens `--connections` connections at
an even rate over `--seconds`, each with its own CLIENT SETNAME (`job-<hex>-run`, which the
default name_rewrite leaves alone), holds a rolling window of `--window` at once and closes the
oldest as it opens new ones. Every second the exporter's VmRSS is read from /proc and /metrics
is scraped: the number of redis_client_connections series for the target (at most max_groups +
1 for `__other__`) and whether the groups sum to the CLIENT LIST line count (the snapshot
histograms' _count, and INFO connected_clients), and whether every opened series together
moved exactly as `redis_connections_received_total` since the first scrape (the churn
identity; both from one scrape, so one snapshot) with no counter going down. Prints a Markdown
table; every process is stopped by PID, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from bench.hold_clients import open_named
from bench.processes import free_port, process, redis_server, rss_bytes, wait_listening
from exporter.config.model import ClientListConfig
from exporter.pipeline.grouping import OTHER, rewrite_name

TARGET = "churn"
MAX_GROUPS = ClientListConfig().max_groups
CONFIG = """\
poll: {{interval: 1s, client_list_interval: 1s, timeout: 1s}}
client_list:
  backoff: {{above_clients: null}}
targets:
  - {{name: {target}, url: "redis://127.0.0.1:{port}"}}
"""
MB = 1024 * 1024


# -- the generator (its own process) ----------------------------------------------------------
def job_name(rng: random.Random, names: int = 0) -> str:
    """A distinct name per connection, or one of `names` (stable groups) when given."""
    if names:
        return f"job-{rng.randrange(names):03d}-run"
    return f"job-{rng.getrandbits(48):012x}-run"


async def generate(port: int, connections: int, window: int, seconds: float,
                   seed: int, names: int) -> None:
    """Open `connections` at an even rate, holding at most `window` at once."""
    rng = random.Random(seed)
    held: collections.deque[asyncio.StreamWriter] = collections.deque()
    rate = connections / seconds
    print("READY", flush=True)
    start = time.monotonic()
    opened = 0
    while opened < connections:
        due = min(connections, int((time.monotonic() - start) * rate) + 1)
        if due > opened:
            while held and len(held) + due - opened > window:
                held.popleft().close()
            held.extend(await asyncio.gather(
                *[open_named(port, job_name(rng, names)) for _ in range(due - opened)]))
            opened = due
        await asyncio.sleep(0.02)
    while held:
        held.popleft().close()
    await asyncio.sleep(0.2)


# -- the observer (this process) --------------------------------------------------------------
@dataclass
class Sample:
    at: float
    rss: int
    series: int
    groups_sum: int
    histogram_count: int
    info_clients: int
    received: int
    tuples: frozenset[str]
    opened: int  # every redis_client_connections_opened_total series, summed
    closed: int
    counters: dict[str, float]  # every opened and closed series, by family and labels


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    churn_started: float = 0.0
    churn_ended: float = 0.0


def scrape(port: int, pid: int, started: float) -> Sample:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    groups: dict[str, float] = {}
    found: dict[str, float] = {}
    churn = {"redis_client_connections_opened_total": 0.0,
             "redis_client_connections_closed_total": 0.0}
    counters: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if item.labels.get("target") != TARGET:
                continue
            if item.name == "redis_client_connections":
                key = "/".join(v for k, v in sorted(item.labels.items()) if k != "target")
                groups[key] = item.value
            elif item.name in ("redis_client_idle_seconds_count", "redis_connected_clients",
                               "redis_connections_received_total"):
                found[item.name] = item.value
            elif item.name in churn:
                churn[item.name] += item.value
                labels = ",".join(f"{k}={v}" for k, v in sorted(item.labels.items()))
                counters[f"{item.name}{{{labels}}}"] = item.value
    return Sample(time.monotonic() - started, rss_bytes(pid), len(groups),
                  int(sum(groups.values())), int(found.get("redis_client_idle_seconds_count", -1)),
                  int(found.get("redis_connected_clients", -1)),
                  int(found.get("redis_connections_received_total", 0)), frozenset(groups),
                  int(churn["redis_client_connections_opened_total"]),
                  int(churn["redis_client_connections_closed_total"]), counters)


def wait_groups(port: int, pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if scrape(port, pid, 0.0).series:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError("the exporter served no redis_client_connections")


def observe(options: argparse.Namespace) -> Run:
    for name in (job_name(random.Random(seed)) for seed in range(100)):
        if rewrite_name(name, ClientListConfig().name_rewrite) != name:
            raise RuntimeError(f"the default name_rewrite collapses {name}")
    run = Run()
    workdir = tempfile.mkdtemp(prefix="rce-bench-")
    with redis_server(options.window + 200) as redis_port:
        config = os.path.join(workdir, "config.yaml")
        with open(config, "w") as handle:
            handle.write(CONFIG.format(target=TARGET, port=redis_port))
        port = free_port()
        command = [sys.executable, "-m", "exporter", "--config.file", config,
                   "--web.listen-address", f"127.0.0.1:{port}"]
        with process(command, stderr_path=os.path.join(workdir, "exporter.log")) as exporter:
            wait_listening(port, "exporter")
            wait_groups(port, exporter.pid)
            generator = [sys.executable, "-m", "bench.churn", "--generate-on", str(redis_port),
                         "--connections", str(options.connections), "--window",
                         str(options.window), "--seconds", str(options.seconds),
                         "--names", str(options.names)]
            started = time.monotonic()
            with process(generator, ready="READY") as churn:
                run.churn_started = time.monotonic() - started
                tick = 0
                while churn.poll() is None:
                    tick += 1
                    run.samples.append(scrape(port, exporter.pid, started))
                    time.sleep(max(started + tick - time.monotonic(), 0.0))
                if churn.returncode != 0:
                    raise RuntimeError(f"the generator failed ({churn.returncode})")
                run.churn_ended = time.monotonic() - started
            for _ in range(options.settle):
                tick += 1
                time.sleep(max(started + tick - time.monotonic(), 0.0))
                run.samples.append(scrape(port, exporter.pid, started))
    return run


def write_samples(run: Run, path: str) -> None:
    with open(path, "w") as handle:
        handle.write("seconds,phase,rss_bytes,series,groups_sum,histogram_count,info_clients\n")
        for s in run.samples:
            phase = "churn" if s.at <= run.churn_ended else "settle"
            handle.write(f"{s.at:.1f},{phase},{s.rss},{s.series},{s.groups_sum},"
                         f"{s.histogram_count},{s.info_clients}\n")


def _mb(value: float) -> str:
    return f"{value / MB:.1f}"


def report(run: Run, options: argparse.Namespace) -> tuple[str, bool]:
    during = [s for s in run.samples if s.at <= run.churn_ended]
    warm = [s for s in during if s.at >= run.churn_started + options.warmup] or during
    after = [s for s in run.samples if s.at > run.churn_ended]
    start, end = warm[0].rss, warm[-1].rss
    peak = max(s.rss for s in run.samples if s.at >= warm[0].at)
    settled = after[-1].rss if after else end
    slope = statistics.linear_regression([s.at for s in warm], [s.rss for s in warm]).slope \
        if len(warm) > 1 else 0.0
    allowed = max(start * options.rss_percent / 100, options.rss_mb * MB)
    flat = end - start <= allowed and settled - start <= allowed
    max_series = max(s.series for s in run.samples)
    cap_ok = max_series <= MAX_GROUPS + 1
    sums_ok = all(s.groups_sum == s.histogram_count for s in run.samples)
    info_off = sum(1 for s in run.samples if s.groups_sum != s.info_clients)
    seen = len(frozenset().union(*(s.tuples for s in run.samples)))
    other = sum(1 for s in run.samples if any(OTHER in key for key in s.tuples))
    opened = run.samples[-1].received - run.samples[0].received
    # Each series only grows while it exists. A tuple that leaves the kept set takes its
    # series (and its count) away: only then is the plain sum of the series not conserved.
    monotone = all(later.counters.get(key, value) >= value
                   for earlier, later in zip(run.samples, run.samples[1:])
                   for key, value in earlier.counters.items())
    # The identity per scrape window: the opened series grew exactly as connections received,
    # in every window where no series left (a tuple that leaves takes its count with it).
    windows = [(earlier, later) for earlier, later in zip(run.samples, run.samples[1:])
               if all(key in later.counters for key in earlier.counters)]
    left = len(run.samples) - 1 - len(windows)
    off = [later for earlier, later in windows
           if later.opened - earlier.opened != later.received - earlier.received]
    attributed = sum(later.opened - earlier.opened for earlier, later in windows)
    received = sum(later.received - earlier.received for earlier, later in windows)
    naming = f"names from {options.names}" if options.names else "distinct names"
    table = [
        f"{options.connections:,} connections with {naming} over {options.seconds:g} s, "
        f"a rolling window of {options.window}; 1 s polls and CLIENT LIST; "
        f"{len(run.samples)} samples (1/s), warm-up {options.warmup:g} s, "
        f"settle {options.settle} s after the churn.",
        "",
        "| RSS MB start | peak | end of churn | after settle | growth end-start | slope KB/min |"
        " connections received | max series (cap) | distinct tuples seen | with __other__ |"
        " groups sum = lines | groups sum != INFO clients |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        f"| {_mb(start)} | {_mb(peak)} | {_mb(end)} | {_mb(settled)} | "
        f"{(end - start) / MB:+.1f} MB ({(end - start) / start * 100:+.1f}%) | "
        f"{slope * 60 / 1024:+.0f} | {opened:,} | {max_series} ({MAX_GROUPS} + 1) | {seen:,} | "
        f"{other} of {len(run.samples)} | "
        f"{'always' if sums_ok else 'NO'} | {info_off} of {len(run.samples)} |",
        "",
        "| check | goal | result |",
        "|---|---|---|",
        f"| RSS flat | end and after-settle within +{options.rss_percent:g}% or "
        f"+{options.rss_mb:g} MB of start | {'pass' if flat else 'FAIL'} |",
        f"| group cap | at most {MAX_GROUPS + 1} series | {'pass' if cap_ok else 'FAIL'} |",
        f"| no client lost | groups sum to the CLIENT LIST line count in every scrape | "
        f"{'pass' if sums_ok else 'FAIL'} |",
        f"| churn identity | opened series grew as connections received in every window "
        f"without a series leaving ({attributed:,} = {received:,} over {len(windows)} windows; "
        f"{len(off)} off; {left} windows with a tuple leaving not compared) | "
        f"{'pass' if not off and windows else 'FAIL'} |",
        f"| counters only grow | no opened or closed series ever went down | "
        f"{'pass' if monotone else 'FAIL'} |",
    ]
    return "\n".join(table), flat and cap_ok and sums_ok and not off and monotone


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--window", type=int, default=300, help="connections held at once")
    parser.add_argument("--names", type=int, default=0,
                        help="draw names from this many (stable groups); 0: all distinct")
    parser.add_argument("--seconds", type=float, default=120, help="length of the churn")
    parser.add_argument("--warmup", type=float, default=15,
                        help="seconds of churn before the start RSS")
    parser.add_argument("--settle", type=int, default=5, help="samples after the churn")
    parser.add_argument("--rss-percent", type=float, default=10)
    parser.add_argument("--rss-mb", type=float, default=5)
    parser.add_argument("--markdown", help="also write the tables to this file")
    parser.add_argument("--samples", help="also write every 1 s sample to this CSV file")
    parser.add_argument("--generate-on", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=42, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.generate_on is not None:
        asyncio.run(generate(options.generate_on, options.connections, options.window,
                             options.seconds, options.seed, options.names))
        return 0
    run = observe(options)
    table, passed = report(run, options)
    print(table)
    if options.samples:
        write_samples(run, options.samples)
    if options.markdown:
        with open(options.markdown, "w") as handle:
            handle.write(table + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
