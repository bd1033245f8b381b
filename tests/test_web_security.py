"""--web.config.file (DESIGN.md "HTTP surface"): TLS, mTLS and bcrypt basic auth in
exporter-toolkit format, on every path, with real TLS clients and certificates made by openssl."""

from __future__ import annotations

import base64
import http.client
import logging
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from exporter import cli
from exporter.app import Exporter, WebSettings
from exporter.config.web import WebConfigError, load_web_config
from exporter.expose.basic_auth import BasicAuth
from tests.support.redis_server import free_port
from tests.support.tls import PKI, KeyPair, issue, make_ca, make_pki

PASSWORD = "correct horse battery"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
PATHS = ("/metrics", "/", "/-/healthy", "/-/ready")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """A client certificate from a CA the exporter does not trust."""
    directory = tmp_path_factory.mktemp("other")
    return issue(make_ca(directory, "other-ca"), directory, "stranger", server=False)


def write(directory: Path, content: dict[str, Any] | str, name: str = "web.yml") -> str:
    path = directory / name
    text = content if isinstance(content, str) else yaml.safe_dump(content)
    path.write_text(text, encoding="utf-8")
    return str(path)


def serve(exporter_factory: Callable[..., Exporter], web_config_file: str) -> int:
    """An exporter with one (refused) target behind the web config; its port."""
    exporter = exporter_factory(
        {"defaults": {"connect_probe": {"enabled": False}},
         "targets": [{"name": "gone", "url": f"redis://127.0.0.1:{free_port()}"}]},
        web=WebSettings(listen_address="127.0.0.1:0", config_file=web_config_file))
    return int(exporter.bound_address().rsplit(":", 1)[1])


def client_context(pki: PKI, cert: KeyPair | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca.cert)
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return context


def get(port: int, path: str = "/metrics", context: ssl.SSLContext | None = None,
        headers: dict[str, str] | None = None,
        method: str = "GET") -> tuple[int, http.client.HTTPResponse]:
    connection = (http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
                  if context is not None else
                  http.client.HTTPConnection("127.0.0.1", port, timeout=5))
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status, response
    finally:
        connection.close()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# --------------------------------------------------------------------------------------------
# TLS


def test_tls_serves_every_path_and_plain_http_to_it_fails(
        pki: PKI, exporter_factory: Callable[..., Exporter]) -> None:
    directory = Path(pki.server.cert).parent  # relative paths: against the file's directory
    port = serve(exporter_factory, write(directory, {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key"}}))
    silent = socket.create_connection(("127.0.0.1", port), timeout=5)  # never says hello
    try:
        for path in PATHS:  # the handshake runs in the request's thread, not the accept loop
            status, _ = get(port, path, client_context(pki))
            assert status == 200, path
    finally:
        silent.close()
    with pytest.raises((http.client.HTTPException, OSError)):
        get(port)
    status, _ = get(port, context=client_context(pki))  # a failed client harms no other
    assert status == 200


def test_min_version_tls13_rejects_a_tls12_only_client(
        pki: PKI, tmp_path: Path, exporter_factory: Callable[..., Exporter]) -> None:
    port = serve(exporter_factory, write(tmp_path, {"tls_server_config": {
        "cert_file": pki.server.cert, "key_file": pki.server.key, "min_version": "TLS13"}}))
    old = client_context(pki)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        get(port, context=old)
    _, response = get(port, context=client_context(pki))
    assert response.status == 200


def test_mtls_require_and_verify_accepts_only_certificates_of_the_client_ca(
        pki: PKI, stranger: KeyPair, tmp_path: Path,
        exporter_factory: Callable[..., Exporter]) -> None:
    port = serve(exporter_factory, write(tmp_path, {"tls_server_config": {
        "cert_file": pki.server.cert, "key_file": pki.server.key,
        "client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": pki.ca.cert}}))
    # TLS 1.3: the server's verdict on the client certificate arrives with the first read.
    for context in (client_context(pki), client_context(pki, stranger)):
        with pytest.raises((ssl.SSLError, http.client.HTTPException, OSError)):
            get(port, context=context)
    for path in PATHS:
        status, _ = get(port, path, client_context(pki, pki.client))
        assert status == 200, path


def test_verify_client_cert_if_given_lets_in_no_cert_but_not_a_stranger(
        pki: PKI, stranger: KeyPair, tmp_path: Path,
        exporter_factory: Callable[..., Exporter]) -> None:
    port = serve(exporter_factory, write(tmp_path, {"tls_server_config": {
        "cert_file": pki.server.cert, "key_file": pki.server.key,
        "client_auth_type": "VerifyClientCertIfGiven", "client_ca_file": pki.ca.cert}}))
    assert get(port, context=client_context(pki))[0] == 200
    assert get(port, context=client_context(pki, pki.client))[0] == 200
    with pytest.raises((ssl.SSLError, http.client.HTTPException, OSError)):
        get(port, context=client_context(pki, stranger))


# --------------------------------------------------------------------------------------------
# Basic auth


def test_basic_auth_guards_every_path(tmp_path: Path,
                                      exporter_factory: Callable[..., Exporter]) -> None:
    port = serve(exporter_factory, write(tmp_path, {"basic_auth_users": {"alice": HASH}}))
    for path in PATHS:
        assert get(port, path, headers=basic("alice", PASSWORD))[0] == 200, path
    refused = [{}, basic("alice", "wrong"), basic("mallory", PASSWORD),
               {"Authorization": "Basic !!notbase64"}, {"Authorization": "Bearer x"}]
    for headers in refused:
        for path in PATHS:
            status, response = get(port, path, headers=headers)
            assert status == 401, (path, headers)
            assert response.headers["WWW-Authenticate"] == "Basic"
    status, response = get(port, "/-/reload", headers={}, method="POST")
    assert status == 401


def test_basic_auth_over_tls(pki: PKI, tmp_path: Path,
                             exporter_factory: Callable[..., Exporter]) -> None:
    port = serve(exporter_factory, write(tmp_path, {
        "tls_server_config": {"cert_file": pki.server.cert, "key_file": pki.server.key},
        "basic_auth_users": {"alice": HASH}}))
    assert get(port, context=client_context(pki), headers=basic("alice", PASSWORD))[0] == 200
    assert get(port, context=client_context(pki), headers=basic("alice", "no"))[0] == 401


def test_verdicts_are_cached_so_bcrypt_runs_once_per_credentials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        exporter_factory: Callable[..., Exporter]) -> None:
    port = serve(exporter_factory, write(tmp_path, {"basic_auth_users": {"alice": HASH}}))
    checked: list[bytes] = []
    real = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    for _ in range(2):
        assert get(port, headers=basic("alice", PASSWORD))[0] == 200
    assert len(checked) == 1
    for _ in range(2):
        assert get(port, headers=basic("alice", "wrong"))[0] == 401
    assert len(checked) == 2
    # An unknown user still pays one bcrypt, at the users' cost: no timing difference.
    assert get(port, headers=basic("mallory", PASSWORD))[0] == 401
    assert len(checked) == 3
    assert checked[2] != HASH.encode()
    assert checked[2].split(b"$")[2] == b"05"


def test_cache_is_bounded_and_keyed_without_plain_passwords() -> None:
    auth = BasicAuth({"alice": HASH.encode()})
    for index in range(BasicAuth.CACHE_SIZE + 5):
        assert not auth.check(basic("alice", f"guess-{index}")["Authorization"])
    assert auth.check(basic("alice", PASSWORD)["Authorization"])
    assert len(auth._cache) <= BasicAuth.CACHE_SIZE
    assert len(auth._refused) <= BasicAuth.CACHE_SIZE
    assert all(PASSWORD.encode() not in key for key in (*auth._cache, *auth._refused))
    assert "guess" not in repr(auth._cache) + repr(auth._refused)


def test_wrong_guesses_never_evict_a_good_login_nor_queue_it_behind_bcrypt() -> None:
    """A flood of uncached guesses: the cached login still passes at once, and a guess that
    finds every bcrypt slot taken is answered BUSY instead of waiting."""
    auth = BasicAuth({"alice": HASH.encode()})
    good = basic("alice", PASSWORD)["Authorization"]
    assert auth.check(good) is True
    for index in range(3 * BasicAuth.CACHE_SIZE):
        assert auth.check(basic("alice", f"guess-{index}")["Authorization"]) is False
    for _ in range(BasicAuth.BCRYPT_SLOTS):  # every slot taken, as by concurrent guesses
        assert auth._slots.acquire(blocking=False)
    try:
        assert auth.check(good) is True  # cached: no bcrypt needed
        assert auth.check(basic("alice", "another guess")["Authorization"]) is BasicAuth.BUSY
    finally:
        for _ in range(BasicAuth.BCRYPT_SLOTS):
            auth._slots.release()


def test_a_password_never_reaches_the_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                           exporter_factory: Callable[..., Exporter]) -> None:
    caplog.set_level(logging.DEBUG)
    path = write(tmp_path, {"basic_auth_users": {"alice": HASH}})
    port = serve(exporter_factory, path)
    get(port, headers=basic("alice", PASSWORD))
    get(port, headers=basic("alice", "wrong-secret"))
    assert HASH not in repr(load_web_config(path))
    for secret in (PASSWORD, "wrong-secret", HASH):
        assert secret not in caplog.text


def test_an_empty_web_config_file_serves_plain_http(
        tmp_path: Path, exporter_factory: Callable[..., Exporter]) -> None:
    port = serve(exporter_factory, write(tmp_path, ""))
    assert get(port)[0] == 200


# --------------------------------------------------------------------------------------------
# Bad files: every problem with its key path, exit 2 before binding, no secret in the output


def check_config(path: str, capsys: pytest.CaptureFixture[str],
                 extra: tuple[str, ...] = ("--check-config",)) -> tuple[int, str]:
    code = cli.main(["--web.config.file", path, *extra], env={})
    return code, capsys.readouterr().err


def test_unknown_and_unsupported_keys_are_errors_with_key_paths(
        pki: PKI, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret_key = "-----BEGIN PRIVATE KEY-----inline-secret"
    path = write(tmp_path, {
        "tls_server_config": {"cert_file": pki.server.cert, "key_file": pki.server.key,
                              "bogus": 1, "key": secret_key, "cipher_suites": ["X"],
                              "min_version": "TLS11"},
        "http_server_config": {"headers": {"X-Frame-Options": "deny"}, "http2": True,
                               "nope": 1},
        "rate_limit": {"interval": "1s", "burst": 2},
        "basic_auth_users": {"alice": HASH, "bob": "plain-text-password"},
        "extra": 1,
    })
    code, err = check_config(path, capsys)
    assert code == 2
    for line in ("tls_server_config.bogus: unknown key",
                 "tls_server_config.key: not supported",
                 "tls_server_config.cipher_suites: not supported",
                 "tls_server_config.min_version: TLS11 is not supported",
                 "http_server_config.headers: not supported",
                 "http_server_config.http2: HTTP/2 is not supported",
                 "http_server_config.nope: unknown key",
                 "rate_limit: not supported",
                 "basic_auth_users.bob: not a bcrypt hash",
                 "extra: unknown key"):
        assert f"web config error: {line}" in err
    for secret in (HASH, "plain-text-password", secret_key, "inline-secret"):
        assert secret not in err


@pytest.mark.parametrize(("tls", "expected"), [
    ({"cert_file": "missing.crt", "key_file": "server.key"},
     "tls_server_config.cert_file: cannot read "),
    ({"cert_file": "server.crt"}, "tls_server_config.key_file: required"),
    ({"cert_file": "server.crt", "key_file": "client.key"},
     "tls_server_config: cert_file and key_file are not"),
    ({"cert_file": "server.crt", "key_file": "server.key", "client_ca_file": "rce-test-ca.crt"},
     "tls_server_config.client_ca_file: set, but client_auth_type is NoClientCert"),
    ({"cert_file": "server.crt", "key_file": "server.key",
      "client_auth_type": "RequireAnyClientCert", "client_ca_file": "rce-test-ca.crt"},
     "tls_server_config.client_auth_type: RequireAnyClientCert is not supported"),
    ({"cert_file": "server.crt", "key_file": "server.key", "client_auth_type": "Sometimes"},
     "tls_server_config.client_auth_type: must be one of"),
    ({"cert_file": "server.crt", "key_file": "server.key", "min_version": "TLS13",
      "max_version": "TLS12"}, "tls_server_config.min_version: above max_version"),
    ({"cert_file": "server.crt", "key_file": "server.key",
      "client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": "server.key"},
     "tls_server_config.client_ca_file: no PEM CA certificate"),
])
def test_bad_tls_settings_exit_2(pki: PKI, tls: dict[str, str], expected: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = write(Path(pki.server.cert).parent, {"tls_server_config": tls}, "bad.yml")
    code, err = check_config(path, capsys)
    assert code == 2
    assert f"web config error: {expected}" in err
    assert "Traceback" not in err


def test_a_bad_web_config_exits_2_before_binding(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_run(*_args: object, **_kwargs: object) -> int:
        raise AssertionError("must exit before it serves")

    monkeypatch.setattr(cli, "run", no_run)
    path = write(tmp_path, {"tls_server_config": {"bogus": 1}})
    code, err = check_config(path, capsys, ("--web.listen-address", "127.0.0.1:0"))
    assert code == 2
    assert "tls_server_config.bogus: unknown key" in err
    code, err = check_config(str(tmp_path / "absent.yml"), capsys, ())
    assert code == 2
    assert "absent.yml: cannot read" in err


def test_web_and_main_config_problems_are_reported_together(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, {"basic_auth_users": {"alice": "x"}})
    config = write(tmp_path, {"poll": {"bogus": 1}}, "config.yml")
    code, err = check_config(path, capsys, ("--config.file", config, "--check-config"))
    assert code == 2
    assert "config error: poll.bogus" in err
    assert "web config error: basic_auth_users.alice: not a bcrypt hash" in err


def test_good_web_config_passes_check_config_from_the_environment(
        pki: PKI, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, {
        "tls_server_config": {"cert_file": pki.server.cert, "key_file": pki.server.key,
                              "client_auth_type": "RequireAndVerifyClientCert",
                              "client_ca_file": pki.ca.cert, "min_version": "TLS12",
                              "max_version": "TLS13"},
        "http_server_config": {"http2": False},
        "basic_auth_users": {"alice": HASH}})
    code = cli.main(["--check-config"], env={cli.env_name("--web.config.file"): path})
    assert code == 0
    assert "web config OK: tls=True basic_auth_users=1" in capsys.readouterr().out


def test_the_example_file_is_valid_apart_from_its_certificate_files() -> None:
    with pytest.raises(WebConfigError) as caught:
        load_web_config(os.path.join(ROOT, "web-config.example.yml"))
    assert all("cannot read" in problem for problem in caught.value.problems)


def test_python_m_exporter_exits_2_on_a_bad_web_config(tmp_path: Path) -> None:
    path = write(tmp_path, {"tls_server_config": {"cert_file": "a.crt", "key_file": "a.key",
                                                  "bogus": True},
                            "basic_auth_users": {"alice": HASH}})
    result = subprocess.run([sys.executable, "-m", "exporter", "--web.config.file", path,
                             "--check-config"], capture_output=True, text=True, timeout=60,
                            cwd=ROOT, check=False)
    assert result.returncode == 2
    assert "web config error: tls_server_config.bogus: unknown key" in result.stderr
    assert HASH not in result.stderr + result.stdout
