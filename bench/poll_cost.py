"""Poll cost of one target next to the raw CLIENT LIST round trip, in one interleaved run.

    python -m bench.poll_cost --clients 1000 10000 --rounds 15

For each N: a fresh redis-server, N idle named clients held by bench.hold_clients, then
`--rounds` interleaved rounds of (raw CLIENT LIST through a plain socket, the exporter's full
poll step with CLIENT LIST due, raw again for an A/A ratio), each after the same pause a real
poll has. Prints a Markdown table of medians (min..max) and per-round ratios. Every process it
starts is stopped by PID, also on failure.
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
from exporter.config import Config, PollConfig, TargetConfig
from exporter.config_targets import parse_target_url
from exporter.poller import TargetPoller
from exporter.snapshot import SnapshotStore
from exporter.watchdog import Watchdog

PAUSE_SECONDS = 0.25  # Redis sits idle before each call, as it does between real polls


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
    config = Config(poll=PollConfig(timeout=30.0), targets=(target,))
    store = SnapshotStore()
    store.set_targets(("bench",))
    return TargetPoller(target, config, Watchdog(), store)


def _timed(action: Callable[[], object]) -> tuple[float, float]:
    gc.collect()
    time.sleep(PAUSE_SECONDS)
    cpu, wall = time.process_time(), time.perf_counter()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def _poll_with_list(poller: TargetPoller) -> Callable[[], object]:
    def run() -> None:
        poller.listing.last_run = None  # CLIENT LIST due on every measured poll
        if not poller.poll():
            raise RuntimeError(f"poll failed: {poller.stats.kind}")
    return run


def measure(clients: int, rounds: int) -> dict[str, list[float]]:
    with redis_with_clients(clients) as port:
        raw = RawClientList(port)
        poller = _poller(port)
        poll = _poll_with_list(poller)
        for _ in range(2):  # warm-up: connect, learn the version, first CLIENT LIST
            poll()
            raw()
        series: dict[str, list[float]] = {"raw": [], "raw_b": [], "poll": [], "cpu": []}
        for _ in range(rounds):
            series["raw"].append(_timed(raw)[0])
            wall, cpu = _timed(poll)
            series["poll"].append(wall)
            series["cpu"].append(cpu)
            series["raw_b"].append(_timed(raw)[0])
        series["bytes"] = [float(poller.stats.client_list_bytes or 0)]
        poller.close()
        raw.sock.close()
    return series


def _fmt(values: list[float], scale: float = 1000.0, digits: int = 2) -> str:
    return (f"{statistics.median(values) * scale:.{digits}f} "
            f"({min(values) * scale:.{digits}f}..{max(values) * scale:.{digits}f})")


def report(results: dict[int, dict[str, list[float]]]) -> str:
    lines = [
        "| clients | reply bytes | raw CLIENT LIST ms | exporter poll ms | ratio poll/raw | "
        "A/A raw/raw | exporter CPU ms per poll |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for clients, series in results.items():
        ratio = [p / r for p, r in zip(series["poll"], series["raw"])]
        same = [b / a for a, b in zip(series["raw"], series["raw_b"])]
        lines.append(
            f"| {clients:,} | {int(series['bytes'][0]):,} | {_fmt(series['raw'])} | "
            f"{_fmt(series['poll'])} | {_fmt(ratio, 1.0)}x | {_fmt(same, 1.0)}x | "
            f"{_fmt(series['cpu'])} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=15)
    options = parser.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    results = {n: measure(n, options.rounds) for n in options.clients}
    print(f"Medians (min..max) over {options.rounds} interleaved rounds; ratios per round.")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
