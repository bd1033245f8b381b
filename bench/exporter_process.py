"""The exporter as a benchmark subprocess, and what /proc says about it (CPU, memory)."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from bench.processes import free_port, process

T = TypeVar("T")


class Http:
    """GET over one keep-alive connection; reconnects once if the server closed it."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def get(self, path: str, want_gzip: bool = False) -> tuple[int, float, bytes]:
        """(status, seconds from send to the last byte of the body, body as sent)."""
        headers = {"Accept-Encoding": "gzip"} if want_gzip else {}
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                self.conn.request("GET", path, headers=headers)
                response = self.conn.getresponse()
                body = response.read()
                return response.status, time.perf_counter() - started, body
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def scrape(self) -> tuple[float, bytes]:
        """(seconds of the GET, plain body), fetched gzipped as Prometheus does."""
        status, seconds, body = self.get("/metrics", want_gzip=True)
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return seconds, gzip.decompress(body)

    def metrics(self) -> bytes:
        return self.scrape()[1]

    def close(self) -> None:
        self.conn.close()


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of the process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            result = check()
            if result is not None:
                return result
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


@contextlib.contextmanager
def exporter(config: str, workdir: str,
             env: dict[str, str] | None = None) -> Iterator[tuple[int, Http]]:
    """The exporter as a subprocess (its log in workdir, `env` added to this one's); yields
    (pid, keep-alive client)."""
    port = free_port()
    args = [sys.executable, "-m", "exporter", "--config.file", config,
            "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"]
    with process(args, stderr_path=os.path.join(workdir, "exporter.log"), env=env) as proc:
        client = Http(port)
        try:
            wait_for(lambda: client.get("/-/ready")[0] == 200 or None, 30, "/-/ready")
            yield proc.pid, client
        finally:
            client.close()
