"""Run the exporter as a real process (`python -m exporter`), as users and systemd do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from tests.support.redis_server import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ExporterProcess:
    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.args = [sys.executable, "-m", "exporter", *args]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.stderr = ""
        self.base = ""

    @classmethod
    def serving(cls, config_file: str, *args: str,
                env: dict[str, str] | None = None) -> ExporterProcess:
        """Started with `config_file` on a free loopback port, and ready; `.base` is its URL."""
        port = free_port()
        proc = cls(["--config.file", config_file, "--web.listen-address", f"127.0.0.1:{port}",
                    *args], env=env)
        proc.base = f"http://127.0.0.1:{port}"
        proc.start(ready_url=f"{proc.base}/-/ready")
        return proc

    def start(self, ready_url: str | None = None, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if ready_url is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exporter exited: {self.finish()}")
            try:
                with urllib.request.urlopen(ready_url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise AssertionError("exporter did not become ready")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def finish(self) -> str:
        """Stop if still running; return stderr."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        _, self.stderr = self.process.communicate(timeout=10)
        return self.stderr
