"""Targets that Prometheus discovers, measured: first-scrape latency, memory per registered
target, and the expiry timing.

    python -m bench.dynamic_targets --targets 1000 --servers 4

Starts `--servers` redis-servers with enough databases that `host:port/db` gives `--targets`
distinct targets (each its own poller and held connection), and an exporter that knows none of
them (`dynamic_targets.allow: [127.0.0.1/32]`). Registers every target by scraping it once, as
Prometheus would on its first scrape (waiting for the first poll), then reads RSS; stops
scraping and times how long after `expire_after` the exporter closes its connections.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.exporter_process import exporter, memory_mb
from bench.processes import free_port, process, wait_listening


@contextlib.contextmanager
def server_with_databases(databases: int, maxclients: int) -> Iterator[int]:
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="rce-bench-")
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", workdir, "--maxclients", str(maxclients),
            "--databases", str(databases)]
    with process(args):
        wait_listening(port)
        yield port


def exporter_connections(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n")
        data = b""
        while not data.endswith(b"\r\n") or data.count(b"\r\n") < 2:
            data += sock.recv(1 << 20)
    return data.count(b"name=redis-connection-exporter ")


def scrape(port: int, target: str) -> tuple[int, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    try:
        connection.request("GET", f"/scrape?target={target}",
                           headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"})
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--expire-after", type=float, default=10.0)
    options = parser.parse_args(argv)
    per_server = -(-options.targets // options.servers)
    with tempfile.TemporaryDirectory(prefix="rce-dynamic-") as workdir, \
            contextlib.ExitStack() as stack:
        ports = [stack.enter_context(server_with_databases(per_server, per_server + 64))
                 for _ in range(options.servers)]
        config = Path(workdir, "config.yaml")
        config.write_text(
            "poll: {interval: 15s}\n"
            "defaults: {connect_probe: {enabled: false}}\n"
            "targets: [{name: none, url: 'redis://127.0.0.1:1'}]\n"
            f"dynamic_targets: {{allow: ['127.0.0.1/32'], max_targets: {options.targets + 10},"
            f" expire_after: {options.expire_after:g}s}}\n")
        targets = [f"127.0.0.1:{ports[index % len(ports)]}/{index // len(ports)}"
                   for index in range(options.targets)]
        with exporter(str(config), workdir) as (pid, client):
            time.sleep(2)
            before = memory_mb(pid)[0]
            latencies, statuses = [], []
            for target in targets:
                status, seconds = scrape(client.port, target)
                statuses.append(status)
                latencies.append(seconds * 1000)
            stopped = time.monotonic()  # the last scrape: from here on, nothing scrapes
            time.sleep(2)
            after = memory_mb(pid)[0]
            held = sum(exporter_connections(port) for port in ports)
            while sum(exporter_connections(port) for port in ports) and \
                    time.monotonic() - stopped < options.expire_after + 30:
                time.sleep(0.2)
            expired_after = time.monotonic() - stopped
            left = sum(exporter_connections(port) for port in ports)
    ok = statuses.count(200)
    print("| measure | value |\n|---|---|")
    print(f"| targets registered by a first scrape (200) | {ok} of {options.targets} |")
    print(f"| first scrape, ms (median / p99 / max) | {statistics.median(latencies):.1f} / "
          f"{sorted(latencies)[int(0.99 * len(latencies)) - 1]:.1f} / {max(latencies):.1f} |")
    print(f"| exporter connections held after registering | {held} |")
    print(f"| RSS before / after {ok} targets, MiB | {before:.1f} / {after:.1f} "
          f"({(after - before) * 1024 / max(ok, 1):.1f} KiB per target) |")
    print(f"| connections closed, s after the last scrape (expire_after "
          f"{options.expire_after:g}s) | {expired_after:.1f} (left: {left}) |")
    return 0 if ok == options.targets and left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
