"""Targets that Prometheus discovers: the decisions of exporter/sources/dynamic.py with a fake
resolver and clock (refusal order, normalization, caps, expiry, re-resolution), then the whole
path through /scrape against real Redis servers."""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.app import Exporter
from exporter.config.allowlist import parse_rules
from exporter.config.model import AuthModule, DynamicTargetsConfig
from exporter.sources.dynamic import DynamicTargets, Refused
from tests.support.clients import RawClient
from tests.support.prometheus import finite, run_prometheus
from tests.support.redis_server import RedisServer
from tests.support.scrape import value, values, wait_for

NAMES = {"cache.prod": ["10.0.0.7"], "evil.example": ["10.0.0.7", "192.0.2.1"],
         "10.0.0.7": ["10.0.0.7"], "10.0.0.8": ["10.0.0.8"], "192.0.2.1": ["192.0.2.1"]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _targets(clock: Clock | None = None, names: dict[str, list[str]] | None = None,
             **config: object) -> DynamicTargets:
    table = NAMES if names is None else names
    settings = {"allow": parse_rules(["10.0.0.0/8"]), **config}
    modules = {"prod": AuthModule("prod", {"username": "exporter"}, parse_rules(["10.0.0.7"]))}

    def resolve(host: str, _port: int) -> list[str]:  # an IP literal resolves to itself
        try:
            return table.get(host, [str(ipaddress.ip_address(host))])
        except ValueError:
            return table.get(host, [])

    return DynamicTargets(DynamicTargetsConfig(**settings),  # type: ignore[arg-type]
                          modules, clock or Clock(), resolve)


@pytest.mark.parametrize(("text", "module", "reason", "status"), [
    ("10.0.0.7\x00.prod.svc.cluster.local", "prod", "malformed", 400),  # NUL ends the name
    ("cache%2eprod", None, "malformed", 400),
    ("10.1:6379", None, "malformed", 400),  # neither an IP literal nor a name
    ("unix:///run/redis.sock", "nope", "unknown_module", 404),  # DESIGN's order
    ("redis://user:secret@10.0.0.7:6379", None, "credentials", 400),
    ("redis://:secret@10.0.0.7", None, "credentials", 400),
    ("10.0.0.7:notaport", None, "malformed", 400),
    ("http://10.0.0.7", None, "malformed", 400),
    ("unix:///run/redis.sock", None, "not_allowed", 403),
    ("10.0.0.7", "nope", "unknown_module", 404),
    ("192.0.2.1:6379", None, "not_allowed", 403),
    ("evil.example:6379", None, "not_allowed", 403),  # one of its addresses is not allowed
    ("nowhere.invalid", None, "not_allowed", 403),  # resolves to nothing
    ("10.0.0.8", "prod", "module_not_allowed", 403),  # allowed, but not for that module
])
def test_refusals_in_order_with_fixed_texts(text: str, module: str | None, reason: str,
                                            status: int) -> None:
    with pytest.raises(Refused) as caught:
        _targets().admit(text, module)
    assert (caught.value.reason, caught.value.status) == (reason, status)
    assert "10.0.0" not in caught.value.text and "secret" not in caught.value.text


def test_spellings_of_one_target_share_one_registration() -> None:
    targets = _targets()
    first, new = targets.admit("10.0.0.7:6379", None)
    assert new and first.target.name == "10.0.0.7:6379"
    for spelling in ("redis://10.0.0.7:6379", "redis://10.0.0.7", "10.0.0.7",
                     "REDIS://10.0.0.7:6379/0"):
        again, new = targets.admit(spelling, None)
        assert not new and again is first, spelling
    other, new = targets.admit("10.0.0.7:6379/2", None)  # another db: another target
    assert new and other.target.name == "10.0.0.7:6379/2"


def test_one_host_has_one_spelling() -> None:
    names = {"cache.prod": ["10.0.0.7"], "fd00::7": ["fd00::7"]}
    targets = _targets(names=names, allow=parse_rules(["10.0.0.0/8", "fd00::/8"]))
    first, _ = targets.admit("cache.prod.:6379", None)
    assert first.target.name == "cache.prod:6379"
    assert targets.admit("CACHE.prod", None) == (first, False)
    six, _ = targets.admit("[fd00:0::7]:6379", None)
    assert six.target.name == "[fd00::7]:6379"
    assert targets.admit("redis://[fd00::7]", None) == (six, False)


def test_a_module_with_tls_settings_is_only_used_over_tls() -> None:
    targets = _targets()
    targets.modules["secure"] = AuthModule("secure", {"tls": {"ca_file": "/etc/ca.pem"}},
                                           parse_rules(["10.0.0.0/8"]))
    with pytest.raises(Refused) as caught:
        targets.admit("redis://10.0.0.7:6380", "secure")  # its password in clear text
    assert caught.value.reason == "module_not_allowed"
    registered, _ = targets.admit("rediss://10.0.0.7:6380", "secure")
    assert registered.target.tls.ca_file == "/etc/ca.pem"


def test_a_configured_name_is_never_taken_by_a_discovered_target() -> None:
    with pytest.raises(Refused) as caught:
        _targets().admit("redis://10.0.0.7", None, reserved=lambda name: name == "10.0.0.7:6379")
    assert caught.value.reason == "not_allowed"


def test_a_reload_takes_trust_back_from_registered_targets() -> None:
    targets = _targets()
    targets.admit("10.0.0.7", "prod")
    targets.admit("10.0.0.8", None)
    targets.config = DynamicTargetsConfig(allow=parse_rules(["10.0.0.7/32"]))
    assert targets.revalidate() == (["10.0.0.8:6379"], [])
    targets.modules = {}  # the module is gone: its target must not keep its password
    dropped, _ = targets.revalidate()
    assert dropped == ["10.0.0.7:6379"] and targets.names() == []


def test_a_reload_that_changes_a_module_renews_its_targets() -> None:
    targets = _targets()
    targets.admit("10.0.0.7", "prod")
    targets.modules["prod"] = AuthModule("prod", {"username": "rotated"},
                                         parse_rules(["10.0.0.7"]))
    dropped, renewed = targets.revalidate()
    assert dropped == [] and [r.target.username for r in renewed] == ["rotated"]


def test_a_name_is_connected_by_the_address_that_was_checked() -> None:
    registered, _ = _targets().admit("rediss://cache.prod:6380", "prod")
    assert registered.target.name == "cache.prod:6380"
    assert registered.target.endpoint.host == "10.0.0.7"
    assert registered.target.tls.server_name == "cache.prod"  # TLS still checks the name
    assert registered.target.username == "exporter"  # the module's, and only it


def test_defaults_never_give_a_discovered_target_credentials() -> None:
    targets = _targets(defaults={"connect_probe": {"enabled": False}})
    registered, _ = targets.admit("10.0.0.8", None)
    assert registered.target.username is None and registered.target.password is None
    assert registered.target.connect_probe.enabled is False


def test_another_module_for_a_registered_target_is_refused() -> None:
    targets = _targets()
    targets.admit("10.0.0.7", "prod")
    with pytest.raises(Refused) as caught:
        targets.admit("10.0.0.7", None)
    assert caught.value.reason == "module_not_allowed"


def test_caps_on_targets_and_first_polls_in_flight() -> None:
    targets = _targets(max_targets=2, max_pending=1)
    targets.admit("10.0.0.7", None)
    with pytest.raises(Refused) as caught:
        targets.admit("10.0.0.8", None)
    assert caught.value.reason == "pending"
    targets.first_poll_done("10.0.0.7:6379")
    targets.admit("10.0.0.8", None)
    targets.first_poll_done("10.0.0.8:6379")
    with pytest.raises(Refused) as caught:
        targets.admit("10.0.0.9", None)
    assert caught.value.reason == "max_targets"


def test_a_target_expires_after_its_last_scrape() -> None:
    clock = Clock()
    targets = _targets(clock, expire_after=600.0)
    targets.admit("10.0.0.7", None)
    clock.now += 599
    targets.admit("redis://10.0.0.7", None)  # a scrape: the clock starts again
    clock.now += 599
    assert targets.expired() == []
    clock.now += 1
    assert targets.expired() == ["10.0.0.7:6379"]
    assert targets.names() == []


def test_a_host_that_now_resolves_elsewhere_is_checked_again() -> None:
    names = {"cache.prod": ["10.0.0.7"]}
    targets = _targets(names=names)
    targets.admit("cache.prod", None)
    assert targets.recheck("cache.prod:6379") is None  # nothing changed
    names["cache.prod"] = ["10.0.0.9"]
    renewed = targets.recheck("cache.prod:6379")
    assert renewed is not None and renewed.target.endpoint.host == "10.0.0.9"
    names["cache.prod"] = ["192.0.2.1"]  # rebound outside the allowlist: dropped
    with pytest.raises(Refused):
        targets.recheck("cache.prod:6379")
    assert targets.names() == []


# -- the whole path: /scrape against real servers -------------------------------------------

def _scrape(exporter: Exporter, target: str, module: str | None = None,
            timeout_header: str | None = "10") -> tuple[int, str]:
    host, port = exporter.bound_address().rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=15)
    query = f"/scrape?target={target}" + (f"&auth_module={module}" if module else "")
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": timeout_header} if timeout_header else {}
    try:
        connection.request("GET", query, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _get(exporter: Exporter, path: str) -> str:
    host, port = exporter.bound_address().rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        connection.request("GET", path)
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def _metrics(exporter: Exporter) -> str:
    return _get(exporter, "/metrics")


def _exporter_connections(server: RedisServer) -> int:
    client = RawClient(server.port)
    try:
        if server.password:
            assert client.call("AUTH", server.password) == b"+OK"
        listing = client.call("CLIENT", "LIST").decode()
    finally:
        client.close()
    return listing.count("name=redis-connection-exporter ")


def test_a_discovered_target_is_polled_at_once_and_refusals_are_counted(
        redis_factory: Callable[..., RedisServer], exporter_factory: Callable[..., Exporter],
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-dyn4mic"
    server = redis_factory(password=secret)
    (tmp_path / "pw").write_text(secret + "\n")
    exporter = exporter_factory({
        "defaults": {"connect_probe": {"enabled": False}},
        "targets": [{"name": "static", "url": f"redis://127.0.0.1:{redis_factory().port}"}],
        "auth_modules": {"prod": {"password_file": str(tmp_path / "pw"),
                                  "targets": ["127.0.0.1/32"]}},
        "dynamic_targets": {"allow": ["127.0.0.1/32"], "max_targets": 2},
    })
    address = f"127.0.0.1:{server.port}"
    status, body = _scrape(exporter, address, "prod")
    assert status == 200, body
    assert value(body, "redis_up") == 1  # the first scrape waited for the first poll
    assert values(body, "redis_client_connections")
    # Other spellings: the same poller, the same one connection on Redis.
    for spelling in (f"redis://{address}", f"redis://{address}/0"):
        status, body = _scrape(exporter, spelling, "prod")
        assert status == 200 and value(body, "redis_up") == 1
    assert _exporter_connections(server) == 1
    refusals = {
        "127.0.0.2:6379": (403, "not_allowed"),
        f"redis://user:{secret}@{address}": (400, "credentials"),
        "localhost:1:2": (400, "malformed"),
        "127.0.0.1%00.prod.svc.cluster.local": (400, "malformed"),
    }
    for target, (expected, _) in refusals.items():
        status, body = _scrape(exporter, target)
        assert status == expected, (target, body)
        assert target not in body and secret not in body
    assert _scrape(exporter, address, "nope")[0] == 404
    assert _scrape(exporter, address)[0] == 403  # registered with another module
    text = _metrics(exporter)
    assert value(text, "redis_up", target=address) == 1
    assert value(text, "redis_connection_exporter_target_info", target=address,
                 source="dynamic", address=address) == 1
    assert value(text, "redis_connection_exporter_target_info", target="static",
                 source="static") == 1
    assert value(text, "redis_connection_exporter_dynamic_target_rejections_total",
                 reason="not_allowed") == 1
    assert value(text, "redis_connection_exporter_dynamic_target_rejections_total",
                 reason="module_not_allowed") == 1
    assert value(text, "redis_connection_exporter_dynamic_target_rejections_total",
                 reason="unknown_module") == 1
    landing = _get(exporter, "/")
    assert f"<td>{address}</td><td>up</td>" in landing and "discovered, scraped 0s ago" in landing
    assert "<td>configured</td>" in landing  # the static target
    for where in (text, landing, caplog.text):
        assert secret not in where


def test_a_refused_first_poll_answers_its_redis_up_0(
        exporter_factory: Callable[..., Exporter]) -> None:
    exporter = exporter_factory({
        "defaults": {"connect_probe": {"enabled": False}},
        "targets": [{"name": "static", "url": "redis://127.0.0.1:1"}],
        "dynamic_targets": {"allow": ["127.0.0.1/32"]},
    })
    status, body = _scrape(exporter, "127.0.0.1:1")  # nothing listens there
    assert status == 200
    assert value(body, "redis_up") == 0
    assert values(body, "redis_connection_exporter_poll_errors_total")


def test_without_dynamic_targets_an_unknown_target_is_404(
        exporter_factory: Callable[..., Exporter]) -> None:
    exporter = exporter_factory({"targets": [{"name": "static", "url": "redis://127.0.0.1:1"}]})
    assert _scrape(exporter, "127.0.0.1:6379")[0] == 404


def test_an_unscraped_target_expires_and_its_connection_closes(
        redis_server: RedisServer, exporter_factory: Callable[..., Exporter]) -> None:
    exporter = exporter_factory({
        "poll": {"interval": "1s", "timeout": "1s"},
        "defaults": {"connect_probe": {"enabled": False}},
        "targets": [{"name": "static", "url": "redis://127.0.0.1:1"}],
        "dynamic_targets": {"allow": ["127.0.0.1/32"], "expire_after": "2s"},
    })
    address = f"127.0.0.1:{redis_server.port}"
    assert _scrape(exporter, address)[0] == 200
    assert _exporter_connections(redis_server) == 1
    wait_for(lambda: _exporter_connections(redis_server) == 0, timeout=10,
             message="the expired target's connection closed")
    assert value(_metrics(exporter), "redis_up", target=address) is None


def test_a_reload_keeps_discovered_targets(redis_server: RedisServer, tmp_path: Path,
                                           exporter_factory: Callable[..., Exporter]) -> None:
    from exporter.config.loader import load_config_file  # noqa: PLC0415

    config = tmp_path / "config.yaml"
    text = ("defaults: {connect_probe: {enabled: false}}\n"
            "targets: [{name: static, url: 'redis://127.0.0.1:1'}]\n"
            "dynamic_targets: {allow: ['127.0.0.1/32']}\n")
    config.write_text(text)
    exporter = exporter_factory(load_config_file(str(config)),
                                loader=lambda: load_config_file(str(config)))
    address = f"127.0.0.1:{redis_server.port}"
    assert _scrape(exporter, address)[0] == 200
    config.write_text(text.replace("static", "renamed"))
    assert exporter.reload() == []
    assert value(_metrics(exporter), "redis_up", target=address) == 1
    wait_for(lambda: value(_metrics(exporter), "redis_up", target="renamed") is not None,
             timeout=5, message="the renamed static target polled")
    assert _exporter_connections(redis_server) == 1  # the same connection


def test_a_real_prometheus_with_file_sd_drives_the_targets(
        redis_factory: Callable[..., RedisServer], exporter_factory: Callable[..., Exporter],
        tmp_path: Path) -> None:
    """Prometheus discovers a Redis that is not in the exporter's file through file_sd and
    scrapes it with the multi-target relabelling and an auth_module: redis_up 1 and its groups
    on that instance. Dropped from the file_sd file, it is no longer scraped, and the exporter
    closes its connection `expire_after` later."""
    secret = "file-sd-s3cret"
    server = redis_factory(password=secret)
    client = RawClient(server.port)
    try:
        assert client.call("AUTH", secret) == b"+OK"
        assert client.call("CLIENT", "SETNAME", "checkout") == b"+OK"
        (tmp_path / "pw").write_text(secret)
        exporter = exporter_factory({
            "poll": {"interval": "1s", "timeout": "1s"},
            "defaults": {"connect_probe": {"enabled": False}},
            "targets": [{"name": "static", "url": "redis://127.0.0.1:1"}],
            "auth_modules": {"prod": {"password_file": str(tmp_path / "pw"),
                                      "targets": ["127.0.0.1/32"]}},
            "dynamic_targets": {"allow": ["127.0.0.1/32"], "expire_after": "3s"},
        })
        address = f"127.0.0.1:{server.port}"
        job = {
            "job_name": "redis", "metrics_path": "/scrape", "scrape_interval": "1s",
            "scrape_timeout": "1s", "params": {"auth_module": ["prod"]},
            "file_sd_configs": [{"files": ["targets.json"]}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": exporter.bound_address()}],
        }
        with run_prometheus({"global": {"scrape_interval": "1s"}, "scrape_configs": [job]},
                            files={"targets.json": json.dumps([{"targets": [address]}])}
                            ) as prometheus:
            prometheus.wait_for(f'redis_up{{instance="{address}"}} == 1', finite)
            groups = prometheus.wait_for(
                f'redis_client_connections{{instance="{address}",name="checkout"}}', finite)
            assert [sample for _, sample in groups] == [1.0]
            assert _exporter_connections(server) == 1
            (Path(prometheus.workdir) / "targets.json").write_text("[]")
            wait_for(lambda: _exporter_connections(server) == 0, timeout=30,
                     message="polling stopped expire_after the last scrape")
    finally:
        client.close()


def test_a_first_poll_slower_than_prometheus_waits_answers_503_in_time(
        exporter_factory: Callable[..., Exporter]) -> None:
    """A server that accepts and never answers: the first scrape waits min(header - 0.5 s,
    poll.timeout), then answers 503 with a fixed text, well before Prometheus gives up."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        exporter = exporter_factory({
            "poll": {"interval": "5s", "timeout": "5s"},
            "defaults": {"connect_probe": {"enabled": False}},
            "targets": [{"name": "static", "url": "redis://127.0.0.1:1"}],
            "dynamic_targets": {"allow": ["127.0.0.1/32"]},
        })
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        status, body = _scrape(exporter, address, timeout_header="1.5")
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert status == 503 and address not in body
    assert 0.9 <= elapsed < 1.4  # 1.5 - 0.5 s, not poll.timeout's 5 s


def test_a_configured_target_keeps_its_name(redis_server: RedisServer,
                                            exporter_factory: Callable[..., Exporter]) -> None:
    """A discovered spelling of a configured target's name is refused: the configured poller
    (and its credentials and settings) stays the only one of that name."""
    address = f"127.0.0.1:{redis_server.port}"
    exporter = exporter_factory({
        "defaults": {"connect_probe": {"enabled": False}},
        "targets": [{"name": address, "url": redis_server.url}],
        "dynamic_targets": {"allow": ["127.0.0.1/32"]},
    })
    assert _scrape(exporter, f"redis://{address}")[0] == 403
    assert _scrape(exporter, address)[0] == 200  # the configured one, by its name
    assert list(exporter.pollers) == [address]
    assert exporter.dynamic.names() == []
