"""/metrics of this exporter next to the peer's per-client export, on one Redis with N clients.

    python3 -m bench.scrape_compare --clients 10000 --scrapes 20 --markdown scrape.md

A fresh redis-server holds N idle named clients (bench.hold_clients). Then, one after the
other, this exporter (a subprocess; default config but for `client_list.backoff.above_clients:
null` and a short poll interval) and the peer (`--peer-command`, by default Debian's
prometheus-redis-exporter with -export-client-list -export-client-port) are scraped
`--scrapes` times, as Prometheus does (Accept-Encoding: gzip). Reported per exporter: scrape
latency median (min..max), body and gzip bytes, sample lines, clients counted (ours: the sum
of redis_client_connections; the peer's: its redis_connected_clients_details series) against
INFO connected_clients, and the exporter's CPU per scrape. The goal: our target-derived lines
(those with target="...": everything but the global self metrics) are at most 1/20 of the
peer's body, and every client is counted. Every process is stopped by PID, also on failure.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from bench.processes import (
    cpu_seconds,
    free_port,
    process,
    redis_with_clients,
    wait_listening,
)

TARGET = "bench"
OWN_NAME = "redis-connection-exporter"
PEER_COMMAND = ("prometheus-redis-exporter -redis.addr redis://127.0.0.1:{redis_port} "
                "-export-client-list -export-client-port "
                "-web.listen-address 127.0.0.1:{listen_port}")
CONFIG = """\
poll: {{interval: {interval}, timeout: {interval}}}
client_list:
  backoff: {{above_clients: null}}
targets:
  - {{name: {target}, url: "redis://127.0.0.1:{port}"}}
"""


@dataclass
class Scrapes:
    """What the scrapes of one exporter gave."""

    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    body: bytes = b""
    wire_bytes: int = 0
    gzip_served: bool = False


@dataclass
class Row:
    name: str
    scrapes: Scrapes
    counted: int
    expected: int
    info_clients: int
    target_bytes: int

    @property
    def sample_lines(self) -> int:
        return sum(1 for line in self.scrapes.body.splitlines()
                   if line and not line.startswith(b"#"))

    @property
    def complete(self) -> bool:
        return self.counted == self.expected == self.info_clients


def get(port: int, path: str = "/metrics") -> tuple[bytes, int, bool]:
    """(body, bytes on the wire, gzip served?) of one GET with Accept-Encoding: gzip."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
        response = conn.getresponse()
        wire = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} on :{port}: HTTP {response.status}")
        zipped = response.getheader("Content-Encoding") == "gzip"
    finally:
        conn.close()
    return (gzip.decompress(wire) if zipped else wire), len(wire), zipped


def scrape_series(port: int, pid: int, count: int, pause: float) -> Scrapes:
    out = Scrapes()
    for _ in range(count):
        time.sleep(pause)
        cpu, wall = cpu_seconds(pid), time.perf_counter()
        out.body, out.wire_bytes, out.gzip_served = get(port)
        out.seconds.append(time.perf_counter() - wall)
        out.cpu.append(cpu_seconds(pid) - cpu)
    return out


def samples(body: bytes) -> list[tuple[str, dict[str, str], float]]:
    return [(item.name, dict(item.labels), float(item.value))
            for family in text_string_to_metric_families(body.decode())
            for item in family.samples]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise RuntimeError(f"timed out waiting for {what}")


def ours_counts(body: bytes) -> tuple[int, int, int]:
    """(sum of groups, own connections, INFO connected_clients) from our body."""
    total = own = info = 0
    for name, labels, val in samples(body):
        if labels.get("target") != TARGET:
            continue
        if name == "redis_client_connections":
            total += int(val)
            own += int(val) if labels.get("name") == OWN_NAME else 0
        elif name == "redis_connected_clients":
            info = int(val)
    return total, own, info


def measure_ours(redis_port: int, clients: int, options: argparse.Namespace) -> Row:
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="rce-bench-")
    config = os.path.join(workdir, "config.yaml")
    with open(config, "w") as handle:
        handle.write(CONFIG.format(interval=options.interval, target=TARGET, port=redis_port))
    command = [sys.executable, "-m", "exporter", "--config.file", config,
               "--web.listen-address", f"127.0.0.1:{port}"]
    with process(command, stderr_path=os.path.join(workdir, "exporter.log")) as proc:
        wait_listening(port, "exporter")
        # Warm-up: the first CLIENT LIST counted every held client (the probe has come and gone).
        wait_until(lambda: ours_counts(get(port)[0])[0] == clients + 1, 120,
                   f"{clients + 1} clients in redis_client_connections")
        scrapes = scrape_series(port, proc.pid, options.scrapes, options.pause)
    total, own, info = ours_counts(scrapes.body)
    target_bytes = sum(len(line) + 1 for line in scrapes.body.splitlines()
                       if f'target="{TARGET}"'.encode() in line)
    return Row("redis-connection-exporter", scrapes, total, clients + own, info, target_bytes)


def measure_peer(redis_port: int, clients: int, options: argparse.Namespace) -> Row:
    port = free_port()
    command = shlex.split(options.peer_command.format(redis_port=redis_port, listen_port=port))
    with process(command) as proc:
        wait_listening(port, command[0])
        get(port)  # warm-up: its first connection and CLIENT LIST
        scrapes = scrape_series(port, proc.pid, options.scrapes, options.pause)
    found = samples(scrapes.body)
    details = sum(1 for name, _, _ in found if name == "redis_connected_clients_details")
    info = next((int(val) for name, _, val in found if name == "redis_connected_clients"), 0)
    # Its own scrape connection is in the CLIENT LIST it exports.
    return Row("peer (" + command[0] + ")", scrapes, details, clients + 1, info,
               len(scrapes.body))


def _ms(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1000:.2f} "
            f"({min(values) * 1000:.2f}..{max(values) * 1000:.2f})")


def _gzip_bytes(scrapes: Scrapes) -> str:
    if scrapes.gzip_served:
        return f"{scrapes.wire_bytes:,}"
    return f"{len(gzip.compress(scrapes.body, 6)):,} (not served)"


def report(clients: int, ours: Row, peer: Row, options: argparse.Namespace) -> str:
    lines = [
        f"{clients:,} idle named clients, {options.scrapes} scrapes each "
        f"({options.pause * 1000:.0f} ms apart, Accept-Encoding: gzip); "
        "medians (min..max); CPU is the exporter process's, mean per scrape.",
        "",
        "| exporter | scrape ms | body bytes | gzip bytes | sample lines | target lines bytes |"
        " clients counted | expected | INFO connected_clients | CPU ms per scrape |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in (ours, peer):
        lines.append(
            f"| {row.name} | {_ms(row.scrapes.seconds)} | {len(row.scrapes.body):,} | "
            f"{_gzip_bytes(row.scrapes)} | {row.sample_lines:,} | {row.target_bytes:,} | "
            f"{row.counted:,} | {row.expected:,} | {row.info_clients:,} | "
            f"{statistics.fmean(row.scrapes.cpu) * 1000:.2f} |")
    ratio = peer.target_bytes / max(ours.target_bytes, 1)
    body_ratio = len(peer.scrapes.body) / max(len(ours.scrapes.body), 1)
    latency = statistics.median(peer.scrapes.seconds) / statistics.median(ours.scrapes.seconds)
    size_ok = ratio >= options.goal
    lines += [
        "",
        "| check | value | goal | result |",
        "|---|---:|---:|---|",
        f"| peer body / our target lines | {ratio:.1f}x | >= {options.goal:g}x | "
        f"{'pass' if size_ok else 'FAIL'} |",
        f"| peer body / our whole body | {body_ratio:.1f}x | | info |",
        f"| peer scrape ms / ours (medians) | {latency:.1f}x | | info |",
        f"| ours: every client counted | {ours.counted:,} = {ours.expected:,} = INFO "
        f"{ours.info_clients:,} | equal | {'pass' if ours.complete else 'FAIL'} |",
        f"| peer: every client counted | {peer.counted:,} vs {peer.expected:,}, INFO "
        f"{peer.info_clients:,} | equal | {'pass' if peer.complete else 'FAIL'} |",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10000)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--pause", type=float, default=0.25, help="seconds between scrapes")
    parser.add_argument("--interval", default="5s", help="our poll.interval")
    parser.add_argument("--goal", type=float, default=20.0,
                        help="peer body / our target lines must be at least this")
    parser.add_argument("--peer-command", default=PEER_COMMAND,
                        help="peer command line; {redis_port} and {listen_port} are filled in")
    parser.add_argument("--markdown", help="also write the tables to this file")
    options = parser.parse_args()
    with redis_with_clients(options.clients) as redis_port:
        ours = measure_ours(redis_port, options.clients, options)
        peer = measure_peer(redis_port, options.clients, options)
    table = report(options.clients, ours, peer, options)
    print(table)
    if options.markdown:
        with open(options.markdown, "w") as handle:
            handle.write(table + "\n")
    passed = ours.complete and ours.target_bytes * options.goal <= len(peer.scrapes.body)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
