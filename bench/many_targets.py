"""One exporter polling 1,000 targets: steady-state CPU, memory, poll lateness, /metrics latency.

    python -m bench.many_targets --targets 1000 --servers 4 --window 120

Starts `--servers` redis-servers on free loopback ports, each holding `--clients-per-server`
idle named clients (bench.hold_clients), writes a config with `--targets` targets spread over
them (default settings otherwise, poll interval 15s, connect probe on) and starts the exporter
as a subprocess. Once every target reports `redis_up 1` and the schedule has settled, it
samples the exporter over `--window` seconds while scraping /metrics with gzip every interval,
as Prometheus does: CPU (utime + stime of all threads, % of one core), RSS, VmHWM, and the age
of the newest successful INFO of every target. Then it times `--requests` GETs of /metrics over
one keep-alive connection, plain and gzip interleaved, and a small extra phase shows that the
body of one target does not grow with its clients. Prints a Markdown table of goals, medians
(min..max) and pass/fail. Every process it starts is stopped by PID, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bench.exporter_process import Http, cpu_seconds, exporter, memory_mb, wait_for
from bench.processes import process, redis_server, redis_with_clients
from bench.worker_memory import WorkerRss, measure
from bench.worker_memory import rows as worker_rows

T = TypeVar("T")
MB = 1024 * 1024
INFO_SUCCESS = re.compile(
    rb'^redis_connection_exporter_last_poll_success_timestamp_seconds'
    rb'\{target="([^"]*)",step="info"\} (\S+)$', re.MULTILINE)
UP_ONE = re.compile(rb'^redis_up\{target="[^"]*"\} 1$', re.MULTILINE)
EVERY_STEP = [re.compile(
    rb'^redis_connection_exporter_last_poll_success_timestamp_seconds'
    rb'\{target="[^"]*",step="' + step + rb'"\} ', re.MULTILINE)
    for step in (b"info", b"client_list", b"probe")]
GOAL_LATENCY_MS = 50.0
GOAL_CPU_PERCENT = 25.0
GOAL_RSS_MB = 150.0
O1_BYTES_SLACK = 0.01  # values grow by a few digits; a new series would add ~100 bytes


# -- the 1,000-target phase ------------------------------------------------------------------
@contextlib.contextmanager
def server_holding(clients: int, maxclients: int, seconds: float) -> Iterator[int]:
    """A redis-server with room for the exporter's connections, holding idle named clients."""
    with redis_server(maxclients) as port:
        loadgen = [sys.executable, "-m", "bench.hold_clients", "--port", str(port),
                   "--clients", str(clients), "--seconds", f"{seconds:g}"]
        with process(loadgen, ready="READY"):
            yield port


def write_config(path: str, ports: Sequence[int], targets: int, interval: float) -> None:
    lines = ["poll:", f"  interval: {interval:g}s", "targets:"]
    for index in range(targets):
        port = ports[index % len(ports)]
        lines += [f"  - name: t{index:04d}", f"    url: redis://127.0.0.1:{port}"]
    Path(path).write_text("\n".join(lines) + "\n")


@dataclass
class Steady:
    """What the window measured; every list is one value per sample."""

    cpu_percent: list[float] = field(default_factory=list)  # per scrape interval
    cpu_mean: float = 0.0
    seconds: float = 0.0  # length of the window
    rss_mb: list[float] = field(default_factory=list)
    hwm_mb: float = 0.0
    max_age: list[float] = field(default_factory=list)  # oldest INFO success per scrape
    scrape_ms: list[float] = field(default_factory=list)


def info_successes(body: bytes) -> dict[bytes, float]:
    return {name: float(value) for name, value in INFO_SUCCESS.findall(body)}


def steady_state(pid: int, client: Http, window: float, interval: float) -> Steady:
    """Scrape every interval (gzip, like Prometheus), sample CPU and memory every second."""
    out = Steady()
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    slice_cpu, slice_start = start_cpu, start
    next_scrape = start
    while True:
        now = time.monotonic()
        if now >= next_scrape:
            seconds, body = client.scrape()
            out.scrape_ms.append(seconds * 1000)
            wall = time.time()
            out.max_age.append(max(wall - stamp for stamp in info_successes(body).values()))
            if out.scrape_ms[1:]:  # a slice ends at every scrape after the first
                cpu = cpu_seconds(pid)
                out.cpu_percent.append(100 * (cpu - slice_cpu) / (now - slice_start))
                slice_cpu, slice_start = cpu, now
            next_scrape += interval
        rss, _ = memory_mb(pid)
        out.rss_mb.append(rss)
        if now - start >= window:
            break
        time.sleep(min(1.0, max(0.0, next_scrape - time.monotonic())))
    elapsed = time.monotonic() - start
    out.seconds = elapsed
    out.cpu_mean = 100 * (cpu_seconds(pid) - start_cpu) / elapsed
    out.hwm_mb = memory_mb(pid)[1]
    return out


def latency(client: Http, requests: int, pause: float) -> dict[str, list[float]]:
    """Interleaved plain and gzip GETs of /metrics; ms per request, bytes of each body."""
    series: dict[str, list[float]] = {"plain": [], "gzip": [], "plain_bytes": [],
                                      "gzip_bytes": []}
    for _ in range(requests):
        for kind in ("plain", "gzip"):
            time.sleep(pause)
            status, seconds, body = client.get("/metrics", want_gzip=kind == "gzip")
            if status != 200:
                raise RuntimeError(f"/metrics answered {status}")
            series[kind].append(seconds * 1000)
            series[f"{kind}_bytes"].append(len(body))
    return series


@dataclass
class ManyResult:
    targets: int
    steady: Steady
    latency: dict[str, list[float]]
    startup_seconds: float  # exporter start to redis_up 1 on every target
    workers: list[WorkerRss]  # RSS by poll workers, with and without the arena cap


def run_many(options: argparse.Namespace, workdir: str) -> ManyResult:
    per_server = -(-options.targets // options.servers)
    phases = 1 + 2 * len(options.workers)
    hold_seconds = phases * (options.settle + options.window + 200) + 600
    with contextlib.ExitStack() as stack:
        ports = [stack.enter_context(server_holding(
            options.clients_per_server, options.clients_per_server + per_server + 256,
            hold_seconds)) for _ in range(options.servers)]
        config = os.path.join(workdir, "many.yaml")
        write_config(config, ports, options.targets, options.interval)
        with exporter(config, workdir) as (pid, client):
            started = time.monotonic()
            wait_for(lambda: len(UP_ONE.findall(client.metrics())) == options.targets or None,
                     options.startup_timeout, f"redis_up 1 on all {options.targets} targets")
            startup = time.monotonic() - started
            print(f"all {options.targets} targets up after {startup:.1f}s; settling "
                  f"{options.settle:g}s, then measuring {options.window:g}s", file=sys.stderr)
            time.sleep(options.settle)
            steady = steady_state(pid, client, options.window, options.interval)
            timings = latency(client, options.requests, options.pause)
        workers = []
        for count in options.workers:
            for capped in (True, False):
                print(f"RSS with {count} workers, arenas capped: {capped}", file=sys.stderr)
                workers.append(measure(ports, options.targets, count, capped, workdir,
                                       options.settle, options.window,
                                       lambda body: len(UP_ONE.findall(body))))
        return ManyResult(options.targets, steady, timings, startup, workers)


# -- /metrics is O(1) in clients -------------------------------------------------------------
def every_step_done(body: bytes) -> bytes | None:
    """The body once INFO, CLIENT LIST and the probe all succeeded: no series comes later."""
    return body if all(step.search(body) for step in EVERY_STEP) else None


def one_target(clients: int, workdir: str, requests: int, pause: float) -> dict[str, float]:
    """Body bytes, series and median GET ms of one target holding `clients` idle clients."""
    with redis_with_clients(clients) as port:
        config = os.path.join(workdir, f"one-{clients}.yaml")
        Path(config).write_text(f"targets:\n  - name: one\n    url: redis://127.0.0.1:{port}\n")
        with exporter(config, workdir) as (_, client):
            wait_for(lambda: every_step_done(client.metrics()), 60,
                     f"every step on {clients} clients")
            times, sizes, series = [], [], []
            for _ in range(requests):
                time.sleep(pause)
                _, seconds, body = client.get("/metrics")
                times.append(seconds * 1000)
                sizes.append(len(body))
                series.append(sum(1 for line in body.splitlines() if not line.startswith(b"#")))
    if len(set(series)) != 1:
        raise RuntimeError(f"series changed between requests: {sorted(set(series))}")
    return {"bytes": statistics.median(sizes), "series": series[0],
            "ms": statistics.median(times),
            "ms_min": min(times), "ms_max": max(times)}


# -- report ----------------------------------------------------------------------------------
def fmt(values: Sequence[float], digits: int = 1) -> str:
    return (f"{statistics.median(values):,.{digits}f} "
            f"({min(values):,.{digits}f}..{max(values):,.{digits}f})")


def verdict(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


def report(many: ManyResult, o1: dict[int, dict[str, float]], interval: float,
           settle: float) -> str:
    steady, lat = many.steady, many.latency
    rows = [
        ("GET /metrics plain, ms", f"median <= {GOAL_LATENCY_MS:g}", fmt(lat["plain"]),
         statistics.median(lat["plain"]) <= GOAL_LATENCY_MS),
        ("GET /metrics gzip, ms", f"median <= {GOAL_LATENCY_MS:g}", fmt(lat["gzip"]),
         statistics.median(lat["gzip"]) <= GOAL_LATENCY_MS),
        ("exporter CPU, % of one core", f"mean < {GOAL_CPU_PERCENT:g}",
         f"mean {steady.cpu_mean:.1f}; per {interval:g}s: {fmt(steady.cpu_percent)}",
         steady.cpu_mean < GOAL_CPU_PERCENT),
        ("exporter RSS, MiB", f"peak (VmHWM) < {GOAL_RSS_MB:g}",
         f"{fmt(steady.rss_mb)}; VmHWM {steady.hwm_mb:.1f}", steady.hwm_mb < GOAL_RSS_MB),
        ("oldest INFO success per scrape, s", f"max < {2 * interval:g} (2x interval)",
         fmt(steady.max_age), max(steady.max_age) < 2 * interval),
    ]
    lines = [f"{many.targets:,} targets up {many.startup_seconds:.1f} s after the exporter "
             f"started; interval {interval:g}s; measured over "
             f"{steady.seconds:.0f} s after all targets were up and {settle:g} s of settling; "
             "medians (min..max).", "",
             "| measure | goal | measured | result |", "|---|---|---|---|"]
    lines += [f"| {name} | {goal} | {value} | {verdict(ok)} |" for name, goal, value, ok in rows]
    lines += [
        f"| /metrics body bytes (plain / gzip) | | {statistics.median(lat['plain_bytes']):,.0f}"
        f" / {statistics.median(lat['gzip_bytes']):,.0f} | |",
        f"| scrape every {interval:g}s during the window (gzip), ms | | "
        f"{fmt(steady.scrape_ms)} | |",
    ]
    lines += worker_rows(many.workers, many.targets)
    if o1:
        (small_n, small), (large_n, large) = sorted(o1.items())[0], sorted(o1.items())[-1]
        flat = large["ms"] <= max(small["ms"] * 1.5, small["ms"] + 2.0)
        same = (small["series"] == large["series"]
                and abs(large["bytes"] - small["bytes"]) <= O1_BYTES_SLACK * small["bytes"])
        lines += [
            f"| one target, body bytes / series, {small_n:,} vs {large_n:,} clients | same "
            f"series, bytes within {O1_BYTES_SLACK:.0%} | {small['bytes']:,.0f} / "
            f"{small['series']:.0f} vs {large['bytes']:,.0f} / {large['series']:.0f} | "
            f"{verdict(same)} |",
            f"| one target, GET /metrics ms, {small_n:,} vs {large_n:,} clients | flat | "
            f"{small['ms']:.2f} ({small['ms_min']:.2f}..{small['ms_max']:.2f}) vs "
            f"{large['ms']:.2f} ({large['ms_min']:.2f}..{large['ms_max']:.2f}) | "
            f"{verdict(flat)} |",
        ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--clients-per-server", type=int, default=50)
    parser.add_argument("--interval", type=float, default=15.0, help="poll.interval, seconds")
    parser.add_argument("--settle", type=float, default=30.0,
                        help="seconds after all targets are up before measuring")
    parser.add_argument("--window", type=float, default=120.0, help="steady-state seconds")
    parser.add_argument("--requests", type=int, default=50, help="GETs per encoding")
    parser.add_argument("--pause", type=float, default=0.1, help="seconds before each GET")
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--o1-clients", type=int, nargs="*", default=[200, 5000],
                        help="client counts of the one-target phase (none: skip it)")
    parser.add_argument("--workers", type=int, nargs="*", default=[16, 32],
                        help="poll.concurrency values of the RSS phase (none: skip it)")
    parser.add_argument("--markdown", help="also write the table to this file")
    return parser.parse_args(argv)


def _stop_on_sigterm(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds every `with`: processes stopped


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="rce-many-") as workdir:
        try:
            many = run_many(options, workdir)
            o1 = {n: one_target(n, workdir, 20, options.pause) for n in options.o1_clients}
        except BaseException:
            log = Path(workdir, "exporter.log")
            if log.exists():
                print(log.read_text()[-4000:], file=sys.stderr)
            raise
    table = report(many, o1, options.interval, options.settle)
    print(table)
    if options.markdown:
        Path(options.markdown).write_text(table + "\n")
    return 0 if "FAIL" not in table else 1


if __name__ == "__main__":
    sys.exit(main())
