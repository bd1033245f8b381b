"""Shared fixtures: real redis-server processes and an in-process exporter on free ports."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from exporter.app import Exporter, WebSettings
from exporter.config.loader import build_config
from exporter.config.model import Config
from exporter.pipeline import clientlist
from tests.support.clients import RawClient
from tests.support.redis_server import RedisServer, start_redis
from tests.support.servers import ServerBuild, build, matrix_ids

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`cli.main` reconfigures the root logger (onto captured stderr); put it back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def clients() -> Iterator[list[RawClient]]:
    """Raw test connections a test opens; closed at teardown, before its servers stop."""
    opened: list[RawClient] = []
    yield opened
    for client in opened:
        client.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes `server_build` runs once per real server build (the matrix), or per
    build that has what `@pytest.mark.server_needs("acl", ...)` names."""
    if "server_build" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("server_needs")
        needs = tuple(marker.args) if marker else ()
        metafunc.parametrize("server_build", matrix_ids(needs), indirect=True)


@pytest.fixture
def server_build(request: pytest.FixtureRequest) -> ServerBuild:
    """The build a matrix test runs on: Redis 5.0 to 8.0, Valkey 8.0 and 8.1."""
    return build(request.param)


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    """Start as many redis-servers as a test needs; all are killed at teardown."""
    started: list[RedisServer] = []

    def make(**kwargs: Any) -> RedisServer:
        server = start_redis(**kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_factory()


@pytest.fixture
def exporter_factory() -> Iterator[Callable[..., Exporter]]:
    """Run the exporter in this process on a free port, with a config (or a dict of one)."""
    running: list[Exporter] = []

    def make(raw: dict[str, Any] | Config, env: dict[str, str] | None = None,
             web: WebSettings | None = None, loader: Callable[[], Config] | None = None,
             **options: Any) -> Exporter:
        config = raw if isinstance(raw, Config) else build_config(
            yaml.safe_load(yaml.safe_dump(raw)), env=env or {})
        exporter = Exporter(config, web or WebSettings(listen_address="127.0.0.1:0"), loader,
                            **options)
        exporter.start()
        running.append(exporter)
        return exporter

    yield make
    for exporter in running:
        exporter.stop()


def metrics_url(exporter: Exporter) -> str:
    return f"http://{exporter.bound_address()}/metrics"


def require_compiled_scanner() -> None:
    """Skip without the compiled CLIENT LIST scanner; with CI=true fail: `pip install` must
    have built it there."""
    if not clientlist.compiled_scanner_available():
        message = "the compiled scanner was not built (no C compiler when pip installed?)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def compiled_scanner() -> None:
    require_compiled_scanner()


@pytest.fixture(params=["compiled", "pure"])
def both_scanners(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once with the compiled CLIENT LIST scanner and once with the pure path.

    With CI=true a missing compiled scanner fails: `pip install` must have built it there.
    """
    scanner: str = request.param
    if scanner == "compiled":
        require_compiled_scanner()
    if scanner == "pure":
        monkeypatch.setattr(clientlist, "_compiled", None)
    return scanner
