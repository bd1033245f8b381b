"""TLS to Redis: a real redis-server 7.0 with a TLS port only, certificates from a test CA.

Needs a redis-server built with TLS (Debian's is): with CI=true its absence is a failure,
elsewhere a skip.
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.app import Exporter
from tests.conftest import metrics_url
from tests.support.clients import RawClient
from tests.support.redis_server import RedisServer, free_port, require_binary
from tests.support.scrape import body_when, fetch, value, values, wait_for
from tests.support.tls import CA, PKI, KeyPair, issue, make_ca, make_pki
from tests.support.topology import cluster_port, one_node_cluster

FAST = {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"}
NO_PROBE = {"connect_probe": {"enabled": False}}
WAIT = 20.0
ERRORS = "redis_connection_exporter_poll_errors_total"

ExporterFactory = Callable[..., Exporter]
RedisFactory = Callable[..., RedisServer]


@functools.cache
def _tls_support_problem() -> str | None:
    """None when redis-server accepts the tls-* directives, else why not."""
    binary = require_binary("redis-server")
    result = subprocess.run([binary, "--port", "0", "--tls-port", "0", "--save", ""],
                            capture_output=True, text=True, timeout=10, check=False)
    output = result.stdout + result.stderr
    if "Bad directive" in output or "not listen anywhere" not in output:
        return f"redis-server was built without TLS support: {output.strip()[-300:]}"
    return None


@pytest.fixture(autouse=True)
def _require_tls_build() -> None:
    require_binary("openssl")
    problem = _tls_support_problem()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    """A second CA that signed none of the certificates in `pki`."""
    return make_ca(tmp_path_factory.mktemp("other-ca"), "rce-unrelated-ca")




def start_tls_redis(redis_factory: RedisFactory, pki: PKI, auth_clients: bool = True,
                    server: KeyPair | None = None, extra: tuple[str, ...] = ()) -> RedisServer:
    """A redis-server listening on a TLS port only; its `port` is the TLS port."""
    cert = server or pki.server
    tls_port = free_port()
    return redis_factory(port=tls_port, extra_args=[
        "--port", "0", "--tls-port", str(tls_port),
        "--tls-cert-file", cert.cert, "--tls-key-file", cert.key,
        "--tls-ca-cert-file", pki.ca.cert,
        "--tls-auth-clients", "yes" if auth_clients else "no", *extra])


class TLSClient(RawClient):
    """A RawClient over TLS with the test client certificate."""

    def __init__(self, port: int, pki: PKI, timeout: float = 5.0) -> None:
        context = ssl.create_default_context(cafile=pki.ca.cert)
        context.load_cert_chain(pki.client.cert, pki.client.key)
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            self.sock = context.wrap_socket(raw, server_hostname="localhost")
        except BaseException:
            raw.close()
            raise
        self._buffer = b""


def tls_settings(pki: PKI, ca: CA | None = None, client_cert: bool = True,
                 **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"ca_file": (ca or pki.ca).cert}
    if client_cert:
        settings.update(cert_file=pki.client.cert, key_file=pki.client.key)
    settings.update(extra)
    return settings


def config(url: str, tls: dict[str, Any], name: str = "secure",
           defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"poll": FAST, "defaults": defaults or NO_PROBE,
            "targets": [{"name": name, "url": url, "tls": tls}]}


def wait_state(exporter: Exporter, check: Callable[[str], bool], message: str,
               timeout: float = WAIT) -> str:
    last = ""

    def probe() -> str | None:
        nonlocal last
        last = fetch(metrics_url(exporter))
        return last if check(last) else None

    try:
        found = wait_for(probe, timeout=timeout, message=message)
    except AssertionError as error:
        raise AssertionError(f"{error}; exporter state: {describe(last)}") from None
    assert isinstance(found, str)
    return found


def describe(text: str, target: str = "secure") -> str:
    errors = {f"{lab['step']}/{lab['kind']}": val for lab, val in
              values(text, ERRORS, target=target)}
    return f"redis_up={value(text, 'redis_up', target=target)} errors={errors}"


def up_with_groups(text: str, target: str = "secure") -> bool:
    return (value(text, "redis_up", target=target) == 1
            and bool(values(text, "redis_client_connections", target=target)))


def down_with_kind(kind: str, target: str = "secure") -> Callable[[str], bool]:
    def check(text: str) -> bool:
        errors = value(text, ERRORS, target=target, step="info", kind=kind) or 0
        return value(text, "redis_up", target=target) == 0 and errors >= 1
    return check


def other_kinds(text: str, kind: str, target: str = "secure") -> dict[str, float]:
    return {lab["kind"]: val for lab, val in values(text, ERRORS, target=target, step="info")
            if lab["kind"] != kind}


# -- verified TLS, mutual authentication ------------------------------------------------------
def test_mutual_tls_target_is_polled(redis_factory: RedisFactory, pki: PKI,
                                     exporter_factory: ExporterFactory) -> None:
    server = start_tls_redis(redis_factory, pki)
    exporter = exporter_factory(config(f"rediss://localhost:{server.port}", tls_settings(pki)))
    text = wait_state(exporter, up_with_groups, "redis_up 1 over TLS")
    assert value(text, "redis_client_connections", target="secure",
                 name="redis-connection-exporter", client_type="normal") == 1
    assert values(text, ERRORS, target="secure") == []
    assert value(text, "redis_connection_exporter_pool_connections_created_total",
                 target="secure") == 1


def test_server_name_overrides_the_name_verified_against_the_certificate(
        redis_factory: RedisFactory, pki: PKI,
        exporter_factory: ExporterFactory) -> None:
    server = start_tls_redis(redis_factory, pki)
    exporter = exporter_factory(config(f"rediss://127.0.0.1:{server.port}",
                                       tls_settings(pki, server_name="localhost")))
    wait_state(exporter, up_with_groups, "redis_up 1 with server_name localhost")


def test_server_name_is_required_when_the_certificate_names_only_a_host_name(
        redis_factory: RedisFactory, pki: PKI, exporter_factory: ExporterFactory,
        tmp_path: Path) -> None:
    """A certificate for `redis.test` only: 127.0.0.1 verifies only through server_name."""
    named = issue(pki.ca, tmp_path, "redis-test", server=True, dns=("redis.test",))
    server = start_tls_redis(redis_factory, pki, server=named)
    url = f"rediss://127.0.0.1:{server.port}"
    raw = config(url, tls_settings(pki, server_name="redis.test"), name="named")
    raw["targets"].append({"name": "secure", "url": url, "tls": tls_settings(pki)})
    exporter = exporter_factory(raw)
    text = wait_state(exporter, lambda text: up_with_groups(text, "named")
                      and down_with_kind("tls")(text),
                      "server_name target up, the other down with kind tls")
    assert other_kinds(text, "tls") == {}


# -- verification failures ------------------------------------------------------------------
def test_wrong_ca_is_a_tls_error(redis_factory: RedisFactory, pki: PKI, other_ca: CA,
                                 exporter_factory: ExporterFactory) -> None:
    server = start_tls_redis(redis_factory, pki)
    exporter = exporter_factory(config(f"rediss://localhost:{server.port}",
                                       tls_settings(pki, ca=other_ca)))
    text = wait_state(exporter, down_with_kind("tls"), "redis_up 0 with kind tls")
    assert other_kinds(text, "tls") == {}
    assert value(text, "redis_connected_clients", target="secure") is None


def test_insecure_skip_verify_accepts_an_unverifiable_server(
        redis_factory: RedisFactory, pki: PKI, other_ca: CA,
        exporter_factory: ExporterFactory) -> None:
    server = start_tls_redis(redis_factory, pki, auth_clients=False)
    exporter = exporter_factory(config(
        f"rediss://localhost:{server.port}",
        {"ca_file": other_ca.cert, "insecure_skip_verify": True}))
    text = wait_state(exporter, up_with_groups, "redis_up 1 without verification")
    assert values(text, ERRORS, target="secure") == []


def test_missing_client_certificate_is_a_tls_error(
        redis_factory: RedisFactory, pki: PKI, exporter_factory: ExporterFactory) -> None:
    server = start_tls_redis(redis_factory, pki, auth_clients=True)
    exporter = exporter_factory(config(f"rediss://localhost:{server.port}",
                                       tls_settings(pki, client_cert=False)))
    text = wait_state(exporter, lambda text: value(text, "redis_up", target="secure") == 0
                      and bool(values(text, ERRORS, target="secure", step="info")),
                      "redis_up 0 without a client certificate")
    kinds = {lab["kind"] for lab, _ in values(text, ERRORS, target="secure", step="info")}
    assert kinds == {"tls"}, f"a refused client certificate is reported as {kinds}"


# -- maxclients over TLS --------------------------------------------------------------------
MAXCLIENTS = 12


def _fill(port: int, pki: PKI, opened: list[RawClient]) -> None:
    """Open TLS clients until Redis turns one away (it closes before the TLS handshake)."""
    for _ in range(MAXCLIENTS + 2):
        try:
            client = TLSClient(port, pki)
        except (OSError, ssl.SSLError):
            return
        try:
            reply = client.call("PING")
        except (OSError, ConnectionError):
            client.close()
            return
        opened.append(client)
        assert reply == b"+PONG"
    raise AssertionError("the server accepted more than maxclients clients")


def test_tls_handshake_eof_at_maxclients_is_kind_maxclients(
        redis_factory: RedisFactory, pki: PKI, exporter_factory: ExporterFactory,
        clients: list[RawClient]) -> None:
    """The brief: an EOF during the TLS handshake is `maxclients` when INFO shows no headroom."""
    server = start_tls_redis(redis_factory, pki, extra=("--maxclients", str(MAXCLIENTS)))
    exporter = exporter_factory(config(f"rediss://localhost:{server.port}",
                                       tls_settings(pki)))
    wait_state(exporter, up_with_groups, "redis_up 1 over TLS")
    _fill(server.port, pki, clients)
    wait_state(exporter, lambda text: value(text, "redis_connection_headroom",
                                            target="secure") == 0, "headroom 0")
    admin = clients[0]
    listing = admin.call("CLIENT", "LIST").decode()
    ours = [line for line in listing.splitlines() if "name=redis-connection-exporter" in line]
    assert len(ours) == 1, listing
    exporter_id = ours[0].split(" ", 1)[0].removeprefix("id=")
    assert admin.call("CLIENT", "KILL", "ID", exporter_id) == b":1"
    clients.append(TLSClient(server.port, pki))  # take the freed slot: full again
    assert clients[-1].call("PING") == b"+PONG"
    started = time.monotonic()

    text = wait_state(exporter, lambda text: value(text, "redis_up", target="secure") == 0
                      and sum(val for _, val in values(text, ERRORS, target="secure",
                                                       step="info")) >= 3,
                      "three failed polls at maxclients", timeout=25)
    assert time.monotonic() - started < 25
    kinds = {lab["kind"]: val for lab, val in values(text, ERRORS, target="secure",
                                                     step="info")}
    assert kinds.get("maxclients", 0) >= 2, \
        f"TLS handshake EOFs at maxclients (headroom 0) were reported as {kinds}"
    assert "tls" not in kinds, kinds


def test_a_tls_cluster_is_followed_on_its_tls_ports_with_sni_per_node(
        exporter_factory: ExporterFactory, pki: PKI) -> None:
    # With tls-cluster the bus listens on the TLS port + 10000: both need a cluster port.
    plain = cluster_port()
    tls_port = next(port for port in iter(cluster_port, None) if port != plain)
    node = one_node_cluster(extra_args=(
        "--tls-port", str(tls_port), "--tls-cluster", "yes", "--tls-replication", "yes",
        "--tls-cert-file", pki.server.cert, "--tls-key-file", pki.server.key,
        "--tls-ca-cert-file", pki.ca.cert, "--tls-auth-clients", "no"), port=plain)
    try:
        # `{host}` becomes each node's own address: the certificate names 127.0.0.1. Sent
        # as the literal text, the name check would fail and the node would stay down.
        exporter = exporter_factory({
            "poll": FAST, "defaults": NO_PROBE,
            "targets": [{"name": "shop", "tls": tls_settings(pki, client_cert=False,
                                                             server_name="{host}"),
                         "cluster": {"seeds": [f"rediss://127.0.0.1:{tls_port}"]}}]})
        name = f"shop/127.0.0.1:{tls_port}"  # the TLS port, not the plain one
        text = body_when(metrics_url(exporter),
                         lambda body: value(body, "redis_up", target=name) == 1,
                         "the node polled over TLS", timeout=WAIT)
        assert [labels["target"] for labels, _ in
                values(text, "redis_connection_exporter_target_info")] == [name]
    finally:
        node.stop()
