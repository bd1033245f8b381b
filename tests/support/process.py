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
    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None,
                 open_files: tuple[int, int] | None = None, log_file: str | None = None) -> None:
        """`open_files`: the (soft, hard) RLIMIT_NOFILE the process starts with; `log_file`:
        stderr goes there instead of a pipe (a pipe nobody reads stalls a chatty process)."""
        # util-linux prlimit (essential in Debian): a preexec_fn is unsafe in a threaded test.
        limit = ["prlimit", f"--nofile={open_files[0]}:{open_files[1]}", "--"] if open_files else []
        self.args = [*limit, sys.executable, "-m", "exporter", *args]
        self.env = {**os.environ, **(env or {})}
        self.log_file = log_file
        self.process: subprocess.Popen[str] | None = None
        self.stderr = ""
        self.base = ""


    @classmethod
    def serving(cls, config_file: str, *args: str, env: dict[str, str] | None = None,
                open_files: tuple[int, int] | None = None,
                log_file: str | None = None) -> ExporterProcess:
        """Started with `config_file` on a free loopback port, and ready; `.base` is its URL."""
        port = free_port()
        proc = cls(["--config.file", config_file, "--web.listen-address", f"127.0.0.1:{port}",
                    *args], env=env, open_files=open_files, log_file=log_file)
        proc.base = f"http://127.0.0.1:{port}"
        proc.start(ready_url=f"{proc.base}/-/ready")
        return proc

    def start(self, ready_url: str | None = None, timeout: float = 10.0) -> None:
        if self.log_file:
            with open(self.log_file, "w", encoding="utf-8") as log:  # the child keeps its copy
                self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, text=True,
                                                stdout=subprocess.PIPE, stderr=log)
        else:
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
        if self.log_file:
            with open(self.log_file, encoding="utf-8") as handle:
                self.stderr = handle.read()
        return self.stderr
