"""/scrape?target=<name> (DESIGN.md "HTTP surface"): one target's series without the `target`
label, for the multi-target pattern; 400, 404, gzip, basic auth; built once per snapshot."""

from __future__ import annotations

import base64
import gzip
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import bcrypt
import pytest
import yaml

from exporter.app import Exporter, WebSettings
from exporter.config.loader import build_config
from exporter.expose import families as metrics
from exporter.expose.exposition import TargetExposition, without_target_label
from exporter.expose.snapshot import Snapshot, SnapshotStore
from exporter.sharding import Shard, hashmod
from tests.support.clients import open_named
from tests.support.exposition import check_families, promtool_problems
from tests.support.redis_server import RedisServer, free_port
from tests.support.scrape import Sample, fetch, samples, value, wait_for

FAST = {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"}
ODD = 'we"ird\\name {target="x",}'  # quotes, a backslash and the label's own syntax


def get(base: str, query: str, headers: dict[str, str] | None = None
        ) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(f"{base}/scrape{query}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def scrape(base: str, target: str) -> str:
    status, body, _ = get(base, f"?target={quote(target, safe='')}")
    assert status == 200, body
    return body.decode()


def target_samples_of_metrics(base: str, target: str) -> list[Sample]:
    """The target's samples on /metrics, with the `target` label dropped."""
    return [(name, {k: v for k, v in labels.items() if k != "target"}, number)
            for name, labels, number in samples(fetch(f"{base}/metrics"))
            if labels.get("target") == target]


def test_known_target_is_its_metrics_series_without_the_target_label(
        redis_factory: Callable[..., RedisServer],
        exporter_factory: Callable[..., Exporter]) -> None:
    first, second = redis_factory(), redis_factory()
    clients = open_named(first.port, ["api-1", "worker"])
    try:
        exporter = exporter_factory({
            "poll": FAST, "defaults": {"connect_probe": {"interval": "1s"}},
            "targets": [{"name": ODD, "url": first.url}, {"name": "two", "url": second.url}]})
        base = f"http://{exporter.bound_address()}"
        wait_for(lambda: value(scrape(base, ODD), "redis_up") == 1
                 and "redis_client_connections" in scrape(base, ODD)
                 and value(scrape(base, ODD), "redis_connection_exporter_connect_probe_success")
                 == 1, message="the odd target polled, listed and probed")
        for _ in range(5):  # a poll between the two requests changes values: retry on that
            text = scrape(base, ODD)
            expected = target_samples_of_metrics(base, ODD)
            if samples(text) == expected:
                break
    finally:
        for client in clients:
            client.close()
    got = samples(text)
    assert got == expected
    assert all("target" not in labels for _, labels, _ in got)
    assert 'target="' not in text
    assert {name for name, _, _ in got} >= {"redis_up", "redis_connected_clients",
                                            "redis_client_connections",
                                            "redis_client_idle_seconds_bucket",
                                            "redis_connection_exporter_pool_max_connections"}
    assert "redis_up 1\n" in text  # a label set that was only `target` is gone, braces too
    assert metrics.BUILD_INFO.name not in text  # global self metrics stay on /metrics
    check_families(text)
    code, problems = promtool_problems(text.encode())
    assert (code, problems) == (0, "")
    wait_for(lambda: value(scrape(base, "two"), "redis_up") == 1,
             message="the second target polled")
    other = scrape(base, "two")
    assert "api-1" not in other  # the first target's groups stay in its own body


def test_gzip_is_the_same_body(redis_server: RedisServer,
                               exporter_factory: Callable[..., Exporter]) -> None:
    exporter = exporter_factory({"poll": {"interval": "10s", "timeout": "1s"},
                                 "targets": [{"name": "one", "url": redis_server.url}]})
    base = f"http://{exporter.bound_address()}"
    wait_for(lambda: value(scrape(base, "one"), "redis_up") == 1, message="first poll")
    for _ in range(5):
        _, plain_before, headers = get(base, "?target=one")
        _, compressed, gz_headers = get(base, "?target=one", {"Accept-Encoding": "gzip"})
        _, plain_after, _ = get(base, "?target=one")
        if plain_before == plain_after:
            break
    assert "Content-Encoding" not in headers
    assert gz_headers["Content-Encoding"] == "gzip"
    assert gz_headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert gzip.decompress(compressed) == plain_before == plain_after


@pytest.mark.parametrize(("query", "problem"), [
    ("", "missing"), ("?target=", "missing"), ("?other=one", "missing"),
    ("?target=one&target=one", "repeated"), ("?target=one&target=two", "repeated")])
def test_missing_or_repeated_target_is_400(
        query: str, problem: str, exporter_factory: Callable[..., Exporter]) -> None:
    exporter = exporter_factory({"targets": [
        {"name": "one", "url": f"redis://127.0.0.1:{free_port()}"}]})
    status, body, _ = get(f"http://{exporter.bound_address()}", query)
    assert status == 400
    assert f"'target' parameter is {problem}" in body.decode()


def test_unknown_and_other_shard_targets_are_404() -> None:
    names = ["cache", "sessions", "queue-3", "jobs"]
    mine = [name for name in names if hashmod(name, 2) == 1]
    others = [name for name in names if hashmod(name, 2) == 0]
    assert mine and others
    url = f"redis://127.0.0.1:{free_port()}"
    raw = {"poll": FAST, "targets": [{"name": name, "url": url} for name in names]}
    exporter = Exporter(build_config(raw, env={}), WebSettings("127.0.0.1:0"), shard=Shard(1, 2))
    exporter.start()
    try:
        base = f"http://{exporter.bound_address()}"
        status, body, _ = get(base, "?target=nope")
        assert (status, body) == (404, b"unknown target 'nope'\n")
        for name in others:
            status, body, _ = get(base, f"?target={name}")
            assert status == 404
            assert (f"target {name!r} is not in this shard: it is in shard 0, this exporter "
                    "is shard 1 of 2") in body.decode()
        for name in mine:
            assert get(base, f"?target={name}")[0] == 200
    finally:
        exporter.stop()


def test_scrape_is_behind_basic_auth(tmp_path: Path,
                                     exporter_factory: Callable[..., Exporter]) -> None:
    password = "scrape-secret"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_file = tmp_path / "web.yml"
    web_file.write_text(yaml.safe_dump({"basic_auth_users": {"prom": hashed}}), encoding="utf-8")
    exporter = exporter_factory(
        {"targets": [{"name": "one", "url": f"redis://127.0.0.1:{free_port()}"}]},
        web=WebSettings("127.0.0.1:0", config_file=str(web_file)))
    base = f"http://{exporter.bound_address()}"
    assert get(base, "?target=one")[0] == 401
    assert get(base, "?target=nope")[0] == 401  # no target names leak before auth
    token = base64.b64encode(f"prom:{password}".encode()).decode()
    assert get(base, "?target=one", {"Authorization": f"Basic {token}"})[0] == 200


# --------------------------------------------------------------------------------------------
# Pure: the label removal and the per-snapshot cache


def snapshot(target: str, text: str) -> Snapshot:
    """A snapshot whose families are `text` (samples of redis_up and the pool gauge)."""
    families: dict[str, str] = {}
    for line in text.splitlines(keepends=True):
        name = line.split("{")[0].split(" ")[0]
        families[name] = families.get(name, "") + line
    return Snapshot(target, families, up=True, polled=True, last_poll_wall=1.0, error_kind=None)


def test_only_the_target_label_is_removed() -> None:
    escaped = 'we\\"ird\\\\name {target=\\"x\\",}'
    assert escaped == ODD.replace("\\", "\\\\").replace('"', '\\"')
    pool = "redis_connection_exporter_pool_connections"
    snap = snapshot(ODD, f'redis_up{{target="{escaped}"}} 1\n'
                         f'{pool}{{target="{escaped}",state="in_use"}} 1\n'
                         f'{pool}{{target="{escaped}",state="{escaped}"}} 0\n')
    body = without_target_label(snap).decode()
    assert "redis_up 1\n" in body
    assert f'{pool}{{state="in_use"}} 1\n' in body
    assert f'{pool}{{state="{escaped}"}} 0\n' in body  # a value that looks like it is kept
    assert body.count("# TYPE ") == 2
    check_families(body)


def test_bodies_are_built_once_per_snapshot() -> None:
    store = SnapshotStore()
    poller = object()  # the owner a poller would be
    store.add("a", poller)
    store.add("b", poller)
    store.put(snapshot("a", 'redis_up{target="a"} 1\n'), poller)
    store.put(snapshot("b", 'redis_up{target="b"} 0\n'), poller)
    bodies = TargetExposition(store)
    first = bodies.body("a", want_gzip=False)
    assert first is bodies.body("a", want_gzip=False)  # the same object: not rebuilt
    zipped = bodies.body("a", want_gzip=True)
    assert zipped is not None and zipped is bodies.body("a", want_gzip=True)
    assert first is not None and gzip.decompress(zipped) == first
    store.put(snapshot("a", 'redis_up{target="a"} 0\n'), poller)  # a new poll: a new body
    assert bodies.body("a", want_gzip=False) == first.replace(b"\nredis_up 1", b"\nredis_up 0")
    assert bodies.body("b", want_gzip=False) is not None
    store.remove("a", poller)  # "a" removed by a reload
    assert bodies.body("a", want_gzip=False) is None
    store.add("c", poller)
    store.put(snapshot("c", 'redis_up{target="c"} 1\n'), poller)
    assert bodies.body("c", want_gzip=False) is not None
    assert set(bodies._cache) == {"b", "c"}  # the removed target's body was let go
