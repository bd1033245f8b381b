"""Processes a benchmark starts: each one is stopped by PID when its block ends, also on failure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process(args: Sequence[str], ready: str | None = None, stderr_path: str | None = None,
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """Start `args` (`env` added to this process' environment); wait for a stdout line
    containing `ready` when given; stderr to a file."""
    # stdout is read only for the ready line; otherwise it goes nowhere, so it can never fill up.
    stdout = subprocess.PIPE if ready is not None else subprocess.DEVNULL
    with open(stderr_path or os.devnull, "w") as stderr:
        proc = subprocess.Popen(list(args), stdout=stdout, stderr=stderr, text=True,
                                env={**os.environ, **env} if env else None)
    try:
        if ready is not None:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if ready not in line:
                raise RuntimeError(f"{args[0]} did not print {ready}: {line!r}")
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def redis_server(maxclients: int) -> Iterator[int]:
    """A fresh redis-server on a free loopback port; yields the port."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="rce-bench-")
    server = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no", "--dir", workdir, "--maxclients", str(maxclients)]
    with process(server):
        wait_listening(port)
        yield port


@contextmanager
def redis_with_clients(clients: int) -> Iterator[int]:
    with redis_server(clients + 64) as port:
        loadgen = [sys.executable, "-m", "bench.hold_clients", "--port", str(port),
                   "--clients", str(clients), "--seconds", "600"]
        with process(loadgen, ready="READY"):
            yield port


def wait_listening(port: int, what: str = "redis-server") -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, its exited threads included (/proc, clock ticks)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, from /proc."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
