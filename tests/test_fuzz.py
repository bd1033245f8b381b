"""Bad input never crashes the poller: INFO parsing and rendering under hypothesis, and a
target that answers garbage (not RESP at all) is classified `protocol` while the rest carry on.

CLIENT LIST parsing is fuzzed in test_clientlist_scanners.py (both scanners, same results).
"""

from __future__ import annotations

import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.expose import families as metrics
from exporter.expose.render import render_redis
from exporter.pipeline.digest import RedisView
from exporter.pipeline.info import effective_max_clients, parse_info
from tests.conftest import metrics_url
from tests.support.golden import DATA_DIR, VERSIONS, read_data
from tests.support.redis_server import RedisServer
from tests.support.scrape import fetch, value, wait_for

# Valkey names itself in server_name and <server_name>_version (the instance info labels).
FIELDS = sorted({item.field for item in metrics.INFO_FIELDS} | {
    "redis_version", "role", "redis_mode", "server_mode", "server_name", "valkey_version",
    "maxclients", "connected_clients", "connected_slaves", "cluster_connections", "run_id",
    "uptime_in_seconds", "tcp_port"})
values = st.one_of(
    st.integers(-10**30, 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "inf", "-inf", "1e400", "0x10", "12abc", " 7 ", "1_000"]),
    st.text(max_size=20).filter(lambda text: "\n" not in text and "\r" not in text),
)
lines = st.one_of(
    st.tuples(st.sampled_from(FIELDS), values).map(lambda pair: f"{pair[0]}:{pair[1]}"),
    st.tuples(st.text(max_size=10), values).map(lambda pair: f"{pair[0]}:{pair[1]}"),
    st.sampled_from(["# Server", "# Clients", "", "no colon here", ":", "::::"]),
)


@st.composite
def info_replies(draw: st.DrawFn) -> bytes:
    text = "\r\n".join(draw(st.lists(lines, max_size=40)))
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):  # invalid UTF-8 and stray bytes
        raw += draw(st.binary(max_size=20))
    if raw and draw(st.booleans()):
        raw = raw[:draw(st.integers(0, len(raw)))]  # truncated
    return raw


@settings(max_examples=400, deadline=None)
@given(raw=info_replies(), override=st.one_of(st.none(), st.integers(1, 100_000)))
def test_any_info_reply_renders_valid_exposition(raw: bytes, override: int | None) -> None:
    info = parse_info(raw)
    view = RedisView(info=info, max_clients=effective_max_clients(override, info, None),
                     start_time=None)
    text = "".join(render_redis("fuzz", view).values())
    families = list(text_string_to_metric_families(text))  # raises on invalid exposition
    assert any(family.name == "redis_up" for family in families)


INFO_REPLIES = [f"{version}/{name}" for version in VERSIONS for name in ("info.txt", "info_all.txt")
                if os.path.exists(os.path.join(DATA_DIR, version, name))]


@pytest.mark.parametrize("reply", INFO_REPLIES)
def test_every_fixture_info_reply_renders_valid_exposition(reply: str) -> None:
    """The fixtures too, plain INFO included (Redis 8.0's # Threads and # Keysizes sections,
    Valkey 8.1's paused_* fields), not only the sections the poll asks for."""
    info = parse_info(read_data(reply))
    view = RedisView(info=info, max_clients=effective_max_clients(None, info, 10000.0),
                     start_time=None)
    text = "".join(render_redis("real", view).values())
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"redis_up", "redis_instance_info", "redis_connected_clients"} <= names


class _GarbageHandler(socketserver.BaseRequestHandler):
    """Answers every read with bytes that are not RESP (an HTTP server on the wrong port)."""

    def handle(self) -> None:
        self.request.settimeout(5)
        try:
            while self.request.recv(65536):
                self.request.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        except OSError:
            pass


@pytest.fixture
def garbage_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _GarbageHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_a_garbage_answering_target_is_protocol_and_the_rest_carry_on(
        garbage_port: int, redis_server: RedisServer,
        exporter_factory: Callable[..., Exporter]) -> None:
    exporter = exporter_factory({
        "poll": {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"},
        "defaults": {"connect_probe": {"enabled": False}},
        "targets": [{"name": "garbage", "url": f"redis://127.0.0.1:{garbage_port}"},
                    {"name": "healthy", "url": redis_server.url}]})
    url = metrics_url(exporter)
    errors = "redis_connection_exporter_poll_errors_total"

    def classified() -> str | None:
        text = fetch(url)
        protocol = value(text, errors, target="garbage", step="info", kind="protocol") or 0
        return text if protocol >= 2 else None

    text = str(wait_for(classified, message="garbage classified as protocol twice"))
    assert value(text, "redis_up", target="garbage") == 0
    assert value(text, "redis_up", target="healthy") == 1
    assert value(text, "redis_connected_clients", target="healthy") is not None
    with socket.create_connection(("127.0.0.1", garbage_port), timeout=2):
        pass  # the fake still serves: the exporter's failures did not take it down
