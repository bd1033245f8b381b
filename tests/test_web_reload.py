"""Certificate rotation and basic auth changes without a restart (--web.config.file reloads).

Real TLS clients read the certificate the exporter presents, before and after: SIGHUP, a file
change alone, and a broken rotation that must keep the last good certificate.
"""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import signal
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import yaml

from exporter.app import Exporter, WebSettings
from tests.support.process import ExporterProcess
from tests.support.redis_server import free_port
from tests.support.scrape import value, wait_for
from tests.support.tls import PKI, issue, make_pki

GAUGE = "redis_connection_exporter_web_config_last_reload_successful"


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return make_pki(tmp_path / "pki")


def _served_certificate(port: int) -> bytes:
    """The DER certificate a TLS client is shown on a new connection."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _der(cert_file: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(Path(cert_file).read_text(encoding="ascii"))


def _metrics(port: int, ca: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=ca)
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        connection.request("GET", "/metrics", headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _rotate(pki: PKI, directory: Path, name: str) -> str:
    """A new certificate and key from the same CA, copied over the served files."""
    fresh = issue(pki.ca, directory / name, name, server=True, dns=("localhost",),
                  ips=("127.0.0.1",))
    shutil.copyfile(fresh.key, directory / "served.key")
    shutil.copyfile(fresh.cert, directory / "served.crt")
    return fresh.cert


def _web_config(directory: Path, pki: PKI, users: dict[str, str] | None = None) -> str:
    shutil.copyfile(pki.server.cert, directory / "served.crt")
    shutil.copyfile(pki.server.key, directory / "served.key")
    content: dict[str, object] = {"tls_server_config": {"cert_file": "served.crt",
                                                        "key_file": "served.key"}}
    if users:
        content["basic_auth_users"] = users
    path = directory / "web.yml"
    path.write_text(yaml.safe_dump(content), encoding="utf-8")
    return str(path)


def test_sighup_serves_a_rotated_certificate_and_keeps_it_through_a_broken_rotation(
        pki: PKI, tmp_path: Path) -> None:
    web = _web_config(tmp_path, pki)
    config = tmp_path / "config.yaml"
    config.write_text("defaults: {connect_probe: {enabled: false}}\ntargets:\n"
                      f"  - {{name: gone, url: 'redis://127.0.0.1:{free_port()}'}}\n")
    port = free_port()
    proc = ExporterProcess(["--config.file", str(config), "--web.config.file", web,
                            "--web.listen-address", f"127.0.0.1:{port}"])
    proc.start()
    try:
        wait_for(lambda: _listening(port), message="TLS listener up")
        assert _served_certificate(port) == _der(pki.server.cert)
        # Rewritten in place and signalled at once: SIGHUP applies it (the watcher may too).
        second = _rotate(pki, tmp_path, "second")
        proc.signal(signal.SIGHUP)
        wait_for(lambda: _served_certificate(port) == _der(second), timeout=5,
                 message="the rotated certificate served after SIGHUP")
        assert value(_metrics(port, pki.ca.cert)[1], GAUGE) == 1
        # A broken rotation: a certificate without its key. The last good one stays.
        (tmp_path / "served.crt").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
        proc.signal(signal.SIGHUP)
        wait_for(lambda: value(_metrics(port, pki.ca.cert)[1], GAUGE) == 0, timeout=5,
                 message="the failed reload reported")
        assert _served_certificate(port) == _der(second)
    finally:
        stderr = proc.finish()
    assert "web config reload rejected" in stderr
    assert "tls_server_config" in stderr  # the key path


def test_a_changed_certificate_file_is_served_without_a_signal(
        pki: PKI, tmp_path: Path, exporter_factory: Callable[..., Exporter]) -> None:
    web = _web_config(tmp_path, pki)
    exporter = exporter_factory(
        {"defaults": {"connect_probe": {"enabled": False}},
         "targets": [{"name": "gone", "url": f"redis://127.0.0.1:{free_port()}"}]},
        web=WebSettings(listen_address="127.0.0.1:0", config_file=web))
    port = int(exporter.bound_address().rsplit(":", 1)[1])
    assert _served_certificate(port) == _der(pki.server.cert)
    held = http.client.HTTPSConnection("127.0.0.1", port, timeout=5,
                                       context=ssl.create_default_context(cafile=pki.ca.cert))
    held.request("GET", "/-/healthy")
    assert held.getresponse().read() == b"Healthy\n"
    # As cert-manager does in a Secret volume: new files appear, then the link moves.
    second = _rotate(pki, tmp_path, "second")
    wait_for(lambda: _served_certificate(port) == _der(second), timeout=5,
             message="the rotated certificate served")
    # A connection made before is closed (idle now): no session lives on under settings
    # that were replaced, such as a removed client CA.
    with pytest.raises((http.client.HTTPException, OSError)):
        held.request("GET", "/-/healthy")
        held.getresponse().read()
    held.close()


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_basic_auth_users_reload_with_the_file(
        pki: PKI, tmp_path: Path, exporter_factory: Callable[..., Exporter]) -> None:
    def hashed(password: str) -> str:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()

    web = _web_config(tmp_path, pki, {"alice": hashed("old secret")})
    exporter = exporter_factory(
        {"defaults": {"connect_probe": {"enabled": False}},
         "targets": [{"name": "gone", "url": f"redis://127.0.0.1:{free_port()}"}]},
        web=WebSettings(listen_address="127.0.0.1:0", config_file=web,
                        enable_lifecycle=True))
    port = int(exporter.bound_address().rsplit(":", 1)[1])
    ca = pki.ca.cert
    assert _metrics(port, ca, _basic("alice", "old secret"))[0] == 200
    time.sleep(0.01)  # a different mtime even on coarse clocks
    _web_config(tmp_path, pki, {"alice": hashed("new secret"), "bob": hashed("bob's")})
    assert exporter.reload() == []  # what SIGHUP and /-/reload call
    assert _metrics(port, ca, _basic("alice", "old secret"))[0] == 401
    assert _metrics(port, ca, _basic("alice", "new secret"))[0] == 200
    assert _metrics(port, ca, _basic("bob", "bob's"))[0] == 200
    # A bad file: problems with key paths, no hash; the users in force stay.
    Path(web).write_text(yaml.safe_dump({"basic_auth_users": {"alice": "plain"},
                                         "tls_server_config": {"cert_file": "served.crt",
                                                               "key_file": "served.key"}}))
    problems = exporter.reload()
    assert problems == ["web config: basic_auth_users.alice: not a bcrypt hash "
                        "(htpasswd -nBC 10 \"\" | tr -d ':\\n')"]
    status, text = _metrics(port, ca, _basic("alice", "new secret"))
    assert status == 200 and value(text, GAUGE) == 0
    assert os.path.exists(web)
