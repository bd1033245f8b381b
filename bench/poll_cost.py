"""Poll cost of one target next to the raw CLIENT LIST round trip, in one interleaved run.

    python -m bench.poll_cost --clients 1000 10000 19900 --rounds 15 --runs 3 \
        [--markdown bench/results/poll_cost.md]

For each N: a fresh redis-server, N idle named clients held by bench.hold_clients, then
`--runs` blocks of `--rounds` interleaved rounds, each call after the same pause a real poll
has (Redis idle, the exporter's caches cold):
  - raw: CLIENT LIST through a plain blocking socket, send to last byte read;
  - step: the exporter's CLIENT LIST step (fetch through its poll connection, parse,
    aggregate, cap, render and publish), with the compiled scanner and with the pure path;
  - poll: a whole poll with CLIENT LIST due (INFO + CONFIG GET + CLIENT LIST in one round
    trip, and everything above);
  - raw again, for an A/A ratio.
Ratios are taken per round (same round, same host state), then the median per run; the table
gives min / median / max over the runs. Every process it starts is stopped by PID, also on
failure.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable

from bench.processes import redis_with_clients
from exporter.config.model import BackoffConfig, ClientListConfig, Config, PollConfig, TargetConfig
from exporter.config.targets import parse_target_url
from exporter.conn.watchdog import Watchdog
from exporter.expose.snapshot import SnapshotStore
from exporter.pipeline import clientlist
from exporter.pipeline.digest import PollDigest
from exporter.pipeline.steps import client_list_step
from exporter.poll.poller import TargetPoller

PAUSE_SECONDS = 0.25  # Redis sits idle before each call, as it does between real polls
SERIES = ("raw", "step", "step_pure", "poll", "raw_b")


class RawClientList:
    """CLIENT LIST through a plain blocking socket: send to last byte of the bulk reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray(64 * 1024 * 1024)

    def __call__(self) -> int:
        self.sock.sendall(b"*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n")
        view = memoryview(self.buffer)
        got = self.sock.recv_into(view)
        header_end = bytes(view[:64]).index(b"\r\n")
        total = int(bytes(view[1:header_end])) + header_end + 4
        while got < total:
            got += self.sock.recv_into(view[got:])
        return total


def _poller(port: int) -> TargetPoller:
    target = TargetConfig(name="bench", endpoint=parse_target_url(f"redis://127.0.0.1:{port}"))
    # The default config, except the backoff that would skip CLIENT LIST above 5,000 clients.
    client_list = ClientListConfig(backoff=BackoffConfig(above_clients=None))
    config = Config(poll=PollConfig(timeout=30.0), client_list=client_list, targets=(target,))
    store = SnapshotStore()
    poller = TargetPoller(target, config, Watchdog(), store)
    store.add(target.name, poller)
    return poller


def _timed(action: Callable[[], object]) -> tuple[float, float]:
    gc.collect()
    time.sleep(PAUSE_SECONDS)
    cpu, wall = time.process_time(), time.perf_counter()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def _poll_with_list(poller: TargetPoller) -> Callable[[], object]:
    def run() -> None:
        poller.planner.last_list = None  # CLIENT LIST due on every measured poll
        if not poller.poll():
            raise RuntimeError(f"poll failed: {poller.stats.kind}")
    return run


def _client_list_step(poller: TargetPoller, compiled: bool) -> Callable[[], object]:
    """What a poll adds when CLIENT LIST is due: its own round trip, digest, render, publish."""
    def run() -> None:
        saved = clientlist._compiled
        if not compiled:
            clientlist._compiled = None
        try:
            step = client_list_step(poller.target.commands.client)
            [(reply, _)] = poller.conn.execute(step.commands)
            PollDigest(poller.memory, poller.settings, time.time()).take(step, [reply])
            poller.publish()
        finally:
            clientlist._compiled = saved
    return run


def measure(clients: int, rounds: int, runs: int) -> list[dict[str, list[float]]]:
    if not clientlist.compiled_scanner_available():
        raise SystemExit("the compiled scanner is not built: pip install -e . with a C compiler")
    with redis_with_clients(clients) as port:
        raw = RawClientList(port)
        poller = _poller(port)
        actions: dict[str, Callable[[], object]] = {
            "raw": raw, "step": _client_list_step(poller, True),
            "step_pure": _client_list_step(poller, False),
            "poll": _poll_with_list(poller), "raw_b": raw}
        for _ in range(2):  # warm-up: connect, learn the version, first CLIENT LIST
            for action in actions.values():
                action()
        results = []
        for _ in range(runs):
            series: dict[str, list[float]] = {}
            for _ in range(rounds):
                for name, action in actions.items():
                    wall, cpu = _timed(action)
                    series.setdefault(name, []).append(wall)
                    series.setdefault(f"{name}_cpu", []).append(cpu)
            series["bytes"] = [float(poller.stats.client_list_bytes or 0)]
            listed = poller.memory.aggregate.listed  # what churn keeps between polls
            series["state"] = [float(sum(map(len, listed.tracked.arrays()))) if listed else 0.0]
            results.append(series)
        poller.close()
        raw.sock.close()
    return results


def _run_medians(results: list[dict[str, list[float]]], name: str, over: str | None = None,
                 ) -> list[float]:
    """Per run: the median of `name` (or of name/over per round)."""
    medians = []
    for series in results:
        values = series[name] if over is None else [
            value / base for value, base in zip(series[name], series[over])]
        medians.append(statistics.median(values))
    return medians


def _spread(values: list[float], scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    """min / median / max over the runs."""
    return " / ".join(f"{v * scale:.{digits}f}{unit}"
                      for v in (min(values), statistics.median(values), max(values)))


def report(all_results: dict[int, list[dict[str, list[float]]]], rounds: int) -> str:
    runs = len(next(iter(all_results.values())))
    lines = [
        f"Each cell: min / median / max over {runs} runs of the per-run median over {rounds} "
        "interleaved rounds; ratios are taken per round. Times in ms.",
        "",
        "| clients | reply bytes | raw CLIENT LIST | step (compiled) | step / raw | "
        "step pure / raw | whole poll / raw | A/A raw / raw | CPU per step compiled | "
        "CPU per step pure | state kept between polls |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for clients, results in all_results.items():
        ms = 1000.0
        lines.append(
            f"| {clients:,} | {int(results[0]['bytes'][0]):,} "
            f"| {_spread(_run_medians(results, 'raw'), ms)} "
            f"| {_spread(_run_medians(results, 'step'), ms)} "
            f"| {_spread(_run_medians(results, 'step', 'raw'), unit='x')} "
            f"| {_spread(_run_medians(results, 'step_pure', 'raw'), unit='x')} "
            f"| {_spread(_run_medians(results, 'poll', 'raw'), unit='x')} "
            f"| {_spread(_run_medians(results, 'raw_b', 'raw'), unit='x')} "
            f"| {_spread(_run_medians(results, 'step_cpu'), ms)} "
            f"| {_spread(_run_medians(results, 'step_pure_cpu'), ms)} "
            f"| {int(results[0]['state'][0]):,} B |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 10000, 19900])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--markdown", help="also write the table to this file")
    options = parser.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    results = {n: measure(n, options.rounds, options.runs) for n in options.clients}
    table, met = report(results, options.rounds), True
    checks = ["", "| clients | goal | median over runs | result |", "|---:|---|---:|---|"]
    for clients, runs in results.items():
        for series, goal, what in (("step", 1.3, "compiled"), ("step_pure", 1.6, "pure"),
                                   ("poll", 1.3, "whole poll")):
            ratio = statistics.median(_run_medians(runs, series, "raw"))
            met &= ratio <= goal
            label = what if series == "poll" else f"step {what}"
            checks.append(f"| {clients:,} | {label} / raw <= {goal}x | {ratio:.2f}x | "
                          f"{'pass' if ratio <= goal else 'FAIL'} |")
    table += "\n" + "\n".join(checks)
    print(table)
    if options.markdown:
        with open(options.markdown, "w", encoding="utf-8") as handle:
            handle.write(table + "\n")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
