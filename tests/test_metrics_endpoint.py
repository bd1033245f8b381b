"""The live /metrics body: valid for promtool, contiguous families, gzip, bounded by groups."""

from __future__ import annotations

import gzip
import urllib.request
from collections.abc import Callable

import pytest

from exporter.app import Exporter
from exporter.expose.exposition import COMPRESS_CHUNK, compress
from tests.conftest import metrics_url
from tests.support.clients import RawClient, open_named
from tests.support.exposition import check_families, promtool_problems
from tests.support.redis_server import RedisServer, free_port
from tests.support.scrape import fetch, value, values, wait_for

FAST = {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"}


def _get(url: str, gzip_ok: bool) -> tuple[bytes, str | None]:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip_ok else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read(), response.headers.get("Content-Encoding")


def test_body_passes_promtool_and_keeps_families_contiguous_across_targets(
        redis_factory: Callable[..., RedisServer],
        exporter_factory: Callable[..., Exporter]) -> None:
    first, second = redis_factory(), redis_factory()
    clients = open_named(first.port, ["api-1", "api-2", "worker"])
    try:
        exporter = exporter_factory({
            "poll": FAST, "defaults": {"connect_probe": {"interval": "1s"}},
            "targets": [{"name": "one", "url": first.url}, {"name": "two", "url": second.url},
                        {"name": "gone", "url": f"redis://127.0.0.1:{free_port()}"}],
        })
        url = metrics_url(exporter)

        def every_target_polled() -> bool:
            text = fetch(url)
            return (value(text, "redis_up", target="one") == 1
                    and value(text, "redis_up", target="two") == 1
                    and value(text, "redis_up", target="gone") == 0
                    and bool(values(text, "redis_client_connections", target="two")))

        wait_for(every_target_polled, message="all three targets polled")
        body, encoding = _get(url, gzip_ok=False)
    finally:
        for client in clients:
            client.close()
    assert encoding is None
    code, problems = promtool_problems(body)
    assert code == 0, problems
    assert problems == ""
    text = body.decode()
    check_families(text)
    assert 'redis_up{target="gone"} 0' in text
    assert text.count("# TYPE redis_up gauge") == 1


@pytest.mark.parametrize("gzip_first", [False, True], ids=["plain-first", "gzip-first"])
def test_gzip_body_is_the_same_body(gzip_first: bool, redis_server: RedisServer,
                                    exporter_factory: Callable[..., Exporter]) -> None:
    """gzip asked first (a Prometheus): compressed from the parts, the plain body never
    joined; asked after the plain body: compressed from that body."""
    exporter = exporter_factory({"poll": {"interval": "10s", "timeout": "1s"},
                                 "targets": [{"name": "one", "url": redis_server.url},
                                             {"name": "two", "url": redis_server.url}]})
    url = metrics_url(exporter)

    def polled() -> bool:
        # Asked in the encoding under test: no plain body of this generation exists before.
        body, encoding = _get(url, gzip_ok=gzip_first)
        text = (gzip.decompress(body) if encoding == "gzip" else body).decode()
        return value(text, "redis_up", target="two") == 1

    wait_for(polled, message="first polls")
    for _ in range(5):  # a poll between the requests changes the body: retry on that
        outer_before, outer_encoding = _get(url, gzip_ok=gzip_first)
        inner, inner_encoding = _get(url, gzip_ok=not gzip_first)
        outer_after, _ = _get(url, gzip_ok=gzip_first)
        if outer_before == outer_after:
            break
    assert outer_before == outer_after
    zipped, encoding, plain = ((outer_before, outer_encoding, inner) if gzip_first
                               else (inner, inner_encoding, outer_before))
    assert encoding == "gzip"
    assert gzip.decompress(zipped) == plain


def test_compress_joins_parts_across_chunks() -> None:
    parts = [f"redis_up{{target=\"t{index}\"}} 1\n".encode() for index in range(20000)]
    parts.insert(7, b"x" * (3 * COMPRESS_CHUNK))  # one part larger than a chunk
    assert sum(map(len, parts)) > 4 * COMPRESS_CHUNK
    assert gzip.decompress(compress(parts)) == b"".join(parts)
    assert gzip.decompress(compress([])) == b""


def test_body_size_is_bounded_by_groups_not_clients(
        redis_server: RedisServer, exporter_factory: Callable[..., Exporter]) -> None:
    names = ["web", "worker", "cron"]
    exporter = exporter_factory({
        "poll": FAST, "defaults": {"connect_probe": {"enabled": False}},
        "targets": [{"name": "one", "url": redis_server.url}],
    })
    url = metrics_url(exporter)
    opened: list[RawClient] = []

    def body_with(clients: int) -> bytes:
        opened.extend(open_named(redis_server.port,
                                 [names[i % 3] for i in range(clients - len(opened))]))

        def counted() -> bytes | None:
            body, _ = _get(url, gzip_ok=False)
            total = sum(val for _, val in values(body.decode(), "redis_client_connections"))
            return body if total == clients + 1 else None

        body = wait_for(counted, message=f"{clients} clients counted")
        assert isinstance(body, bytes)
        return body

    try:
        small = body_with(12)
        large = body_with(600)
    finally:
        for client in opened:
            client.close()
    # Same series; only digits of values differ.
    assert len(small.splitlines()) == len(large.splitlines())
    assert abs(len(large) - len(small)) < 400


def test_landing_page_shows_each_target_state_error_and_probe(
        redis_server: RedisServer, exporter_factory: Callable[..., Exporter]) -> None:
    exporter = exporter_factory({
        "poll": FAST, "defaults": {"connect_probe": {"interval": "1s"}},
        "targets": [{"name": "<b>main</b>", "url": redis_server.url},
                    {"name": "gone", "url": f"redis://127.0.0.1:{free_port()}"}],
    })
    base = f"http://{exporter.bound_address()}"

    def both_polled_and_probed() -> str | None:
        page = fetch(f"{base}/")
        done = (page.count("<td>ok</td>") == 1 and "<td>up</td>" in page
                and "<td>refused</td><td>refused" in page)
        return page if done else None

    page = str(wait_for(both_polled_and_probed, message="both targets polled and probed"))
    assert "<td>&lt;b&gt;main&lt;/b&gt;</td><td>up</td>" in page  # names are escaped
    assert "<b>main</b>" not in page
    assert "<td>gone</td><td>down</td><td>never</td><td>refused</td><td>refused</td>" in page
    for link in ('href="/metrics"', 'href="/-/healthy"', 'href="/-/ready"'):
        assert link in page
