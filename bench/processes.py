"""Processes a benchmark starts: each one is stopped by PID when its block ends, also on failure."""

from __future__ import annotations

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
def process(args: Sequence[str], ready: str | None = None) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
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
def redis_with_clients(clients: int) -> Iterator[int]:
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="rce-bench-")
    server = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no", "--dir", workdir, "--maxclients", str(clients + 64)]
    with process(server):
        wait_listening(port)
        loadgen = [sys.executable, "-m", "bench.hold_clients", "--port", str(port),
                   "--clients", str(clients), "--seconds", "600"]
        with process(loadgen, ready="READY"):
            yield port


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")
