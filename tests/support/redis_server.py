"""Start and stop real server processes (any build of tests/support/servers.py: Redis 5.0 to
8.0, Valkey 8) on free loopback ports for tests.

With CI=true a missing binary is a failure, never a skip. When no binary exists but a Docker
engine does (a developer laptop), `testcontainers` provides the default server instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.servers import ServerBuild, build


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str) -> str:
    """Path of a binary the tests need; fail in CI, skip elsewhere, when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (run the README's test set-up command)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class RedisServer:
    """One running redis-server; `url` for the exporter config, `client()` for test clients."""

    port: int
    workdir: str
    args: list[str]
    build: ServerBuild | None = None  # None: a container (REDIS_TEST_BACKEND=testcontainers)
    process: subprocess.Popen[bytes] | None = None
    password: str | None = None
    unixsocket: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.build is not None
        with open(os.path.join(self.workdir, "redis.log"), "ab") as log:
            self.process = subprocess.Popen([self.build.binary, *self.args], stdout=log,
                                            stderr=log, cwd=self.workdir)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.build.id} exited: {self._log_tail()}") from None
                time.sleep(0.05)
        raise RuntimeError(f"{self.build.id} did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def _log_tail(self) -> str:
        with open(os.path.join(self.workdir, "redis.log"), "rb") as handle:
            return handle.read()[-2000:].decode("utf-8", "replace")


class ContainerRedisServer(RedisServer):
    """The same server in a `redis:7.0` container, for machines with Docker and no binary.

    Selected with REDIS_TEST_BACKEND=testcontainers. Tests that need a unix socket or a
    restart on the same port are not meaningful here; CI always uses the binary.
    """

    container: Any = None

    def start(self) -> None:
        # Imported here: only this opt-in path needs Docker's client libraries.
        from testcontainers.redis import RedisContainer  # noqa: PLC0415

        self.container = RedisContainer("redis:7.0").with_command(
            ["redis-server", *[arg for arg in self.args if arg != "--daemonize"
                               and not arg.startswith("/")]])
        self.container.start()
        self.port = int(self.container.get_exposed_port(6379))

    def stop(self) -> None:
        if self.container is not None:
            self.container.stop()
            self.container = None


def start_redis(extra_args: Sequence[str] = (), password: str | None = None,
                port: int | None = None, unixsocket: bool = False,
                workdir: str | None = None, server: ServerBuild | None = None) -> RedisServer:
    """A server of build `server` (default: the system's redis-server, Redis 7.0)."""
    if server is None and os.environ.get("REDIS_TEST_BACKEND") == "testcontainers":
        container_args = ["--save", "", "--appendonly", "no", "--maxclients", "1000"]
        if password:
            container_args += ["--requirepass", password]
        container: RedisServer = ContainerRedisServer(
            port=0, workdir=tempfile.mkdtemp(prefix="rce-redis-"),
            args=[*container_args, *extra_args], password=password)
        container.start()
        return container
    port = port or free_port()
    workdir = workdir or tempfile.mkdtemp(prefix="rce-redis-")
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", workdir, "--maxclients", "1000"]
    sock = None
    if unixsocket:
        sock = os.path.join(workdir, "redis.sock")
        args += ["--unixsocket", sock, "--unixsocketperm", "700"]
    if password:
        args += ["--requirepass", password]
    args += list(extra_args)
    started = RedisServer(port=port, workdir=workdir, args=args, build=server or build(),
                          password=password, unixsocket=sock)
    started.start()
    return started
